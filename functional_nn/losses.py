"""Divergences and metrics.

Each divergence is computed per example (summing over every axis but the
leading, minibatch axis) and averaged over the minibatch, as the notes'

    Div(MB) = (1/B) Σ_t Div(Y_t, d_t),

and returns a scalar.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_nn._validation import check_nonnegative
from functional_nn.optim.wrappers import mask_by_name
from functional_nn.registry import Registry

#: Divergences usable as a training loss, by name.
LOSSES = Registry("loss")


def minibatch_mean(per_value):
    """(1/B) Σ_t Σ_(non-batch axes) — the per-example sum averaged over the leading axis."""
    per_value = jnp.asarray(per_value)
    if per_value.ndim == 0:
        return per_value
    per_example = jnp.sum(per_value.reshape(per_value.shape[0], -1), axis=1)
    return jnp.mean(per_example)


@LOSSES.register(constructor=False)
def l2_divergence(y, d):
    """Div = ½ Σ_i (y_i − d_i)², averaged over the minibatch.

    Its gradient w.r.t. a linear output layer's pre-activation z (y = z) is
    (y − d) per example (the error that backpropagation propagates), (y − d)/B
    for the minibatch average.
    """
    return minibatch_mean(0.5 * jnp.square(y - d))


def _kl_terms(d, log_y):
    """d_i (log d_i − log y_i), with 0 · log 0 = 0 and finite gradients where d_i = 0."""
    positive = d > 0
    safe_d = jnp.where(positive, d, 1.0)
    safe_log_y = jnp.where(positive, log_y, 0.0)
    return jnp.where(positive, safe_d * (jnp.log(safe_d) - safe_log_y), 0.0)


@LOSSES.register(constructor=False)
def kl_divergence(y, d):
    """Div = Σ_i d_i log d_i − Σ_i d_i log y_i for probability vectors y, d (last axis).

    0 · log 0 = 0: a zero target contributes nothing (and no NaN gradient,
    even where y_i = 0). Averaged over the minibatch.
    """
    positive = d > 0
    log_y = jnp.log(jnp.where(positive, y, 1.0))
    return minibatch_mean(_kl_terms(d, log_y))


@LOSSES.register(constructor=False)
def kl_divergence_with_logits(logits, d):
    """KL divergence of y = softmax(logits) from targets d, via log_softmax (stable)."""
    return minibatch_mean(_kl_terms(d, jax.nn.log_softmax(logits, axis=-1)))


def _label_format(logits, labels, name: str):
    """``("indices", int32 labels)`` or ``("targets", labels)``, chosen by shape.

    ``labels.shape == logits.shape`` means one-hot / probability targets (any
    dtype); ``labels.shape == logits.shape[:-1]`` means class indices (cast to
    int32). The dtype is not consulted: integer one-hot rows with B == K, or
    class indices stored as floats, are read correctly.
    """
    logits_shape = tuple(jnp.shape(logits))
    labels_shape = tuple(jnp.shape(labels))
    if labels_shape == logits_shape:
        return "targets", jnp.asarray(labels)
    if labels_shape == logits_shape[:-1]:
        return "indices", jnp.asarray(labels).astype(jnp.int32)
    raise ValueError(
        f"{name}: labels shape {labels_shape} must equal logits shape {logits_shape} "
        f"(one-hot / probability targets) or logits shape without its last axis "
        f"{logits_shape[:-1]} (class indices)")


@LOSSES.register(constructor=False)
def softmax_cross_entropy(logits, labels):
    """Div = −Σ_i d_i log softmax(logits)_i, averaged over the minibatch.

    ``labels``: class indices (shape ``logits.shape[:-1]``, any dtype, cast to
    int32) or one-hot / probability targets (shape ``logits.shape``, any dtype);
    the format is chosen by shape, any other shape raises ``ValueError``.
    Computed with log_softmax, so large logits do not overflow.
    """
    kind, labels = _label_format(logits, labels, "softmax_cross_entropy")
    log_y = jax.nn.log_softmax(logits, axis=-1)
    if kind == "indices":
        picked = jnp.take_along_axis(log_y, labels[..., None], axis=-1)[..., 0]
        return minibatch_mean(-picked)
    return minibatch_mean(-labels.astype(log_y.dtype) * log_y)


def accuracy(logits, labels):
    """Fraction of examples whose argmax_k logits_k equals the label.

    ``labels`` as in :func:`softmax_cross_entropy`: class indices (shape
    ``logits.shape[:-1]``) or one-hot / probability targets (shape
    ``logits.shape``, compared through their argmax).
    """
    kind, labels = _label_format(logits, labels, "accuracy")
    if kind == "targets":
        labels = jnp.argmax(labels, axis=-1)
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def is_class_indices(logits, labels) -> bool:
    """Whether ``labels`` are class indices for ``logits`` (shape
    ``logits.shape[:-1]``), the format rule of :func:`softmax_cross_entropy`."""
    return tuple(jnp.shape(labels)) == tuple(jnp.shape(logits))[:-1]


def has_class_labels(logits, labels) -> bool:
    """Whether :func:`accuracy` applies: class indices, or one-hot / probability
    targets (shape ``logits.shape``) over K > 1 classes. Targets of a single
    output (regression, K = 1) are not class labels. Decided by shape alone, so
    the train step, evaluation and the config agree."""
    logits_shape = tuple(jnp.shape(logits))
    if is_class_indices(logits, labels):
        return True
    return tuple(jnp.shape(labels)) == logits_shape and logits_shape[-1] > 1


def weights_mask(params):
    """True for weight matrices (dict entries named ``"w"``), False for biases and batch norm's γ, β.

    :func:`functional_nn.optim.mask_by_name` on the leaf's last name: that is
    the one place parameter paths are walked for masks.
    """
    return _WEIGHTS_BY_NAME(params)


_WEIGHTS_BY_NAME = mask_by_name(lambda path: bool(path) and path[-1] == "w")


def l2_penalty(params, lam, mask=None):
    """½ λ Σ_k ‖W_k‖² over the leaves selected by ``mask``.

    Args:
      params: parameter pytree.
      lam: λ ≥ 0 (float or traced scalar).
      mask: None (every leaf), a pytree of bools with the structure of
        ``params``, or a callable ``params -> mask`` (e.g. ``weights_mask``).
    """
    check_nonnegative("lam", lam)
    leaves = jax.tree.leaves(params)
    if mask is None:
        selected = leaves
    else:
        keep = jax.tree.leaves(mask(params) if callable(mask) else mask)
        if len(keep) != len(leaves):
            raise ValueError(f"l2_penalty: mask has {len(keep)} leaves but params have {len(leaves)}; need one bool per leaf")
        selected = [leaf for leaf, kept in zip(leaves, keep) if kept]
    squared_norm = sum((jnp.sum(jnp.square(p)) for p in selected), jnp.zeros(()))
    return 0.5 * lam * squared_norm
