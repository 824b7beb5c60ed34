"""Shared types and helpers of the gradient transformations.

Every transformation in :mod:`functional_nn.optim` is an
:class:`optax.GradientTransformation`: a NamedTuple ``(init, update)`` with

    init(params) -> state
    update(updates, state, params=None) -> (updates, state)

so ours and optax's mix freely in :func:`chain` / :func:`optax.chain`.
States are NamedTuples of arrays; step counters are ``int32`` scalars.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from functional_nn.registry import Registry

GradientTransformation = optax.GradientTransformation
GradientTransformationExtraArgs = optax.GradientTransformationExtraArgs
EmptyState = optax.EmptyState
Params = Any
Updates = Any
Schedule = Callable[[jax.Array], Any]
ScalarOrSchedule = Union[float, jax.Array, Schedule]

apply_updates = optax.apply_updates

#: Optimizer aliases ``(learning_rate, ...)`` by name, as configs name them.
OPTIMIZERS = Registry("optimizer")

__all__ = [
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "EmptyState",
    "ScalarOrSchedule",
    "ScheduleState",
    "apply_updates",
    "identity",
    "chain",
    "stateless",
    "zero_count",
    "increment_count",
    "cast_scalar",
    "canonical_dtype",
    "map_leaves",
    "value_at",
]


class ScheduleState(NamedTuple):
    """Step counter of a transformation whose coefficient is a schedule."""

    count: jax.Array  # int32 scalar: number of updates applied so far


def zero_count() -> jax.Array:
    """A fresh ``int32`` step counter."""
    return jnp.zeros([], jnp.int32)


def increment_count(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest ``int32`` instead of wrapping."""
    return optax.safe_increment(count)


def cast_scalar(value: Any, dtype: Any) -> Any:
    """A hyperparameter ready to combine with a leaf of ``dtype``.

    Python numbers are returned as they are: JAX treats them as weakly typed,
    so ``0.9 * g`` stays in ``g``'s dtype exactly as in optax. Arrays (concrete
    or traced, e.g. a learning rate under ``jax.vmap``) are cast to ``dtype``
    so that a float64 hyperparameter never promotes float32 parameters.
    """
    if isinstance(value, (int, float)):
        return value
    return jnp.asarray(value).astype(dtype)


def canonical_dtype(dtype: Any) -> Optional[jnp.dtype]:
    """``dtype`` as JAX will store it (float64 -> float32 without x64); None stays None."""
    if dtype is None:
        return None
    return jax.dtypes.canonicalize_dtype(dtype)


def value_at(coefficient: ScalarOrSchedule, count: jax.Array) -> Any:
    """The coefficient at step ``count``: ``coefficient(count)`` for a schedule."""
    return coefficient(count) if callable(coefficient) else coefficient


def map_leaves(fn: Callable[..., tuple], tree: Any, *rest: Any,
               num_outputs: int) -> tuple:
    """Apply ``fn`` leaf by leaf and return one tree per output of ``fn``.

    ``fn(leaf, *rest_leaves) -> (out_1, ..., out_k)`` computes everything a
    rule needs for one parameter at once (e.g. Adam's m, v and update), so the
    whole rule is one function per leaf and one pass over the tree. The trees
    in ``rest`` must have ``tree``'s structure (``None`` leaves in ``tree``
    are empty subtrees and are skipped).
    """
    leaves, treedef = jax.tree.flatten(tree)
    rest_leaves = [treedef.flatten_up_to(other) for other in rest]
    outputs = [fn(*args) for args in zip(leaves, *rest_leaves)]
    columns = list(zip(*outputs)) if outputs else [()] * num_outputs
    return tuple(treedef.unflatten(list(column)) for column in columns)


def identity() -> GradientTransformation:
    """The transformation that leaves updates unchanged (empty state)."""
    return optax.identity()


def stateless(update_leaf: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """A transformation with empty state applying ``update_leaf`` to each leaf."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(update_leaf, updates), state

    return GradientTransformation(init_fn, update_fn)


def chain(*transforms: GradientTransformation) -> GradientTransformationExtraArgs:
    """Apply ``transforms`` one after the other; the state is their tuple.

    The same object as :func:`optax.chain` builds, so chains mix freely:
    ours may contain optax's transformations and optax's chain may contain ours.
    """
    return optax.chain(*transforms)
