"""Divergences and metrics.

Each divergence is computed per example (summing over every axis but the
leading, minibatch axis) and averaged over the minibatch, as the notes'

    Div(MB) = (1/B) Σ_t Div(Y_t, d_t),

and returns a scalar.

Inputs are checked, raising ``ValueError`` with the function's name:

* shapes, always (they are static, so the check is free under ``jit``):
  prediction and target shapes must be equal (no broadcasting: a (4, 1)
  prediction against a (4,) target is an error, not a (4, 4) difference), and
  the batch must not be empty;
* values, only when concrete (not under ``jit``/``vmap``, where they are
  tracers): class indices must be integers in [0, K), KL targets must be
  non-negative. The message says how many values are bad and where the first is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functional_nn._validation import check_nonnegative, is_concrete
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


def _check_same_shape(name: str, y, d, y_name: str = "prediction", d_name: str = "target") -> None:
    """Raise ``ValueError`` unless ``y`` and ``d`` have the same shape (no broadcasting)."""
    y_shape, d_shape = tuple(jnp.shape(y)), tuple(jnp.shape(d))
    if y_shape != d_shape:
        raise ValueError(f"{name}: {y_name} shape {y_shape} and {d_name} shape {d_shape} differ; "
                         "they must be equal (no broadcasting)")


def _check_nonempty(name: str, x, what: str) -> None:
    """Raise ``ValueError`` for a batch of no examples (the mean would be 0/0)."""
    shape = tuple(jnp.shape(x))
    if shape and shape[0] == 0:
        raise ValueError(f"{name}: empty batch: {what} shape {shape} has no examples; "
                         "need at least one")


def _first_bad(bad: np.ndarray, values: np.ndarray) -> str:
    """``"3 of 6 (the first at index 4: -1)"`` for a boolean mask of bad values."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    shown = index[0] if len(index) == 1 else index
    return f"{int(bad.sum())} of {bad.size} (the first at index {shown}: {values[index].item()!r})"


def _check_class_indices(name: str, labels, num_classes: int) -> None:
    """Concrete class indices must be integers in ``[0, num_classes)``.

    A negative index would wrap to the last classes, one ≥ K would pick a
    clamped or NaN log-probability, a fractional one would be truncated.
    """
    if not is_concrete(labels):
        return
    values = np.asarray(labels)
    if values.dtype == np.bool_:
        return
    with np.errstate(invalid="ignore"):
        in_range = (values >= 0) & (values < num_classes)
        if not np.issubdtype(values.dtype, np.integer):
            in_range &= np.isfinite(values) & (values == np.round(values))
    bad = ~in_range
    if bad.any():
        raise ValueError(f"{name}: labels must be class indices, integers in [0, {num_classes}); "
                         f"{_first_bad(bad, values)} are not")


def _check_nonnegative_targets(name: str, d) -> None:
    """Concrete targets must be ≥ 0 (probabilities); NaN counts as bad."""
    if not is_concrete(d):
        return
    values = np.asarray(d)
    with np.errstate(invalid="ignore"):
        bad = ~(values >= 0)
    if bad.any():
        raise ValueError(f"{name}: targets must be probabilities (>= 0); {_first_bad(bad, values)} are not")


@LOSSES.register(constructor=False)
def l2_divergence(y, d):
    """Div = ½ Σ_i (y_i − d_i)², averaged over the minibatch.

    Its gradient w.r.t. a linear output layer's pre-activation z (y = z) is
    (y − d) per example (the error that backpropagation propagates), (y − d)/B
    for the minibatch average.

    Raises:
      ValueError: ``y`` and ``d`` differ in shape, or the batch is empty.
    """
    _check_same_shape("l2_divergence", y, d)
    _check_nonempty("l2_divergence", y, "prediction")
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

    Raises:
      ValueError: ``y`` and ``d`` differ in shape, the batch is empty, or a
        concrete ``d`` has negative entries.
    """
    _check_same_shape("kl_divergence", y, d)
    _check_nonempty("kl_divergence", y, "prediction")
    _check_nonnegative_targets("kl_divergence", d)
    positive = d > 0
    log_y = jnp.log(jnp.where(positive, y, 1.0))
    return minibatch_mean(_kl_terms(d, log_y))


@LOSSES.register(constructor=False)
def kl_divergence_with_logits(logits, d):
    """KL divergence of y = softmax(logits) from targets d, via log_softmax (stable).

    Raises:
      ValueError: as :func:`kl_divergence`.
    """
    _check_same_shape("kl_divergence_with_logits", logits, d, "logits")
    _check_nonempty("kl_divergence_with_logits", logits, "logits")
    _check_nonnegative_targets("kl_divergence_with_logits", d)
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
    _check_nonempty(name, logits, "logits")
    if labels_shape == logits_shape:
        return "targets", jnp.asarray(labels)
    if labels_shape == logits_shape[:-1]:
        _check_class_indices(name, labels, logits_shape[-1])
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

    Raises:
      ValueError: labels of another shape, an empty batch, or concrete class
        indices that are not integers in [0, K) (naming how many and the first).
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

    Raises:
      ValueError: as :func:`softmax_cross_entropy`.
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
