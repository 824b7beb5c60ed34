"""Transformations that wrap another one: masking, skipping non-finite
steps, accumulating gradients over several minibatches."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_nn.optim.base import (
    GradientTransformation,
    canonical_dtype,
    check_transformation,
    increment_count,
    zero_count,
)

__all__ = [
    "MaskedState",
    "SkipNonfiniteState",
    "AccumulateGradientsState",
    "masked",
    "mask_by_name",
    "skip_nonfinite",
    "accumulate_gradients",
]

Mask = Union[Any, Callable[[Any], Any]]


# --------------------------------------------------------------------------
# masked
# --------------------------------------------------------------------------

#: optax's state of a masked transformation (``inner_state``, holding state for
#: the masked-in leaves only; masked-out leaves are ``optax.MaskedNode()``).
MaskedState = optax.MaskedState


def masked(inner: GradientTransformation, mask: Mask) -> optax.GradientTransformationExtraArgs:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the rest through.

    This is :func:`optax.masked` (after checking ``inner``), so its state is
    :class:`optax.MaskedState` with ``optax.MaskedNode()`` in place of
    masked-out leaves, ``optax.tree_map_params`` maps over it, extra keyword
    arguments of ``update`` reach ``inner``, and a callable pytree (an
    equinox-style module) is read as a mask tree, not as a mask function.

    Args:
      inner: the transformation to restrict.
      mask: a tree of Python booleans with the parameters' structure (or a
        prefix of it), or a function ``params -> such a tree`` (see
        :func:`mask_by_name`). The inner state holds only masked-in leaves.

    Raises:
      TypeError: ``inner`` is not a transformation.
    """
    check_transformation("masked: inner", inner)
    return optax.masked(inner, mask)


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def mask_by_name(predicate: Callable[[tuple[str, ...]], bool]) -> Callable[[Any], Any]:
    """A mask function from parameter names, for :func:`masked` and the
    ``mask`` arguments.

    ``predicate`` receives the path of each leaf as a tuple of strings (dict
    keys, sequence indices, attribute names) and returns whether the leaf is
    masked in. For example, decay weights but not biases of ``serial`` layers
    whose params are ``({"w": ..., "b": ...}, ...)``::

        mask = mask_by_name(lambda path: path[-1] != "b")
        adamw(1e-3, weight_decay=1e-2, mask=mask)
    """

    def mask_fn(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: bool(predicate(tuple(_key_name(k) for k in path))), params)

    return mask_fn


# --------------------------------------------------------------------------
# skip_nonfinite
# --------------------------------------------------------------------------

class SkipNonfiniteState(NamedTuple):
    """Inner state and the number of updates skipped so far."""

    inner_state: Any
    num_skipped: jax.Array  # int32 scalar


def _all_finite(tree: Any) -> jax.Array:
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def skip_nonfinite(inner: GradientTransformation) -> GradientTransformation:
    """Skip every update whose gradient holds a NaN or an Inf.

    On such a step the emitted updates are zeros (the parameters do not
    move), the inner state is returned unchanged, and ``num_skipped`` grows
    by one. The choice is a ``jnp.where``, not a branch: under ``jit`` it
    fuses into the update, and it works under ``jax.vmap``.

    Raises:
      TypeError: ``inner`` is not a transformation.
    """
    check_transformation("skip_nonfinite: inner", inner)

    def init_fn(params):
        return SkipNonfiniteState(inner_state=inner.init(params), num_skipped=zero_count())

    def update_fn(updates, state, params=None):
        finite = _all_finite(updates)
        new_updates, new_inner_state = inner.update(updates, state.inner_state, params)
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        inner_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_inner_state, state.inner_state)
        num_skipped = jnp.where(finite, state.num_skipped, increment_count(state.num_skipped))
        return new_updates, SkipNonfiniteState(inner_state, num_skipped)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# accumulate_gradients
# --------------------------------------------------------------------------

class AccumulateGradientsState(NamedTuple):
    """Position within the current group of ``every_k`` minibatches, the
    running mean of their gradients, and the inner state."""

    mini_step: jax.Array  # int32 scalar in [0, every_k)
    mean_grads: Any
    inner_state: Any


def accumulate_gradients(inner: GradientTransformation, every_k: int,
                         accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
    r"""Average the gradients of ``every_k`` minibatches, then apply ``inner``.

    With ``ḡ_j`` the running mean after ``j`` minibatches,
    ``ḡ_j = ḡ_{j-1} + (g_j - ḡ_{j-1}) / j`` (Welford, as ``optax.MultiSteps``);
    the updates are zero until ``j = every_k``, when ``inner`` sees ``ḡ`` and
    the mean restarts. Equivalent to training with a k-times larger batch.

    Raises:
      TypeError: ``inner`` is not a transformation.
      ValueError: ``every_k`` is not an integer >= 1.
    """
    check_transformation("accumulate_gradients: inner", inner)
    accumulator_dtype = canonical_dtype(accumulator_dtype, "accumulator_dtype")
    if isinstance(every_k, (bool, np.bool_)) or not isinstance(every_k, (int, np.integer)) or every_k < 1:
        # A float such as 2.5 would pass a range check and then never equal
        # the integer step count, so the updates would stay zero forever.
        raise ValueError(f"every_k={every_k!r}: must be an integer >= 1")

    def init_fn(params):
        return AccumulateGradientsState(
            mini_step=zero_count(),
            mean_grads=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=accumulator_dtype), params),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None):
        count = state.mini_step + 1
        mean = jax.tree.map(
            lambda g, m: (m + (g - m) / count.astype(m.dtype)).astype(m.dtype),
            updates, state.mean_grads)
        emit = count == every_k
        inner_updates, inner_state = inner.update(
            jax.tree.map(lambda m, g: m.astype(g.dtype), mean, updates), state.inner_state, params)
        new_state = AccumulateGradientsState(
            mini_step=jnp.where(emit, 0, count).astype(jnp.int32),
            mean_grads=jax.tree.map(lambda m: jnp.where(emit, jnp.zeros_like(m), m), mean),
            inner_state=jax.tree.map(
                lambda new, old: jnp.where(emit, new, old), inner_state, state.inner_state),
        )
        updates = jax.tree.map(lambda u: jnp.where(emit, u, jnp.zeros_like(u)), inner_updates)
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)
