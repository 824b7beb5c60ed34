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
import numpy as np
import optax

from functional_nn._validation import check_dtype
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
    "check_transformation",
    "check_same_tree",
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


def canonical_dtype(dtype: Any, name: str = "dtype") -> Optional[jnp.dtype]:
    """``dtype`` as JAX will store it (float64 -> float32 without x64); None stays None.

    Raises:
      HyperparameterTypeError: ``dtype`` (the argument ``name``) is not a
        floating-point or complex dtype (e.g. ``"float99"`` or ``int32``).
    """
    resolved = check_dtype(name, dtype)
    return None if resolved is None else jax.dtypes.canonicalize_dtype(resolved)


def check_transformation(where: str, value: Any) -> Any:
    """Raise ``TypeError`` unless ``value`` is an ``(init, update)`` transformation.

    Args:
      where: what ``value`` is, for the message (``"chain: argument 2"``).
      value: anything with callable ``init`` and ``update`` (ours, optax's).

    Raises:
      TypeError: naming ``where``, the value and what is accepted.
    """
    if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)):
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise TypeError(
        f"{where} is {shown} ({type(value).__name__}): must be a gradient transformation, "
        "an (init, update) pair such as optim.sgd(0.1) or optax.adam(1e-3)")


def _leaf_paths(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _structure_difference(updates: Any, reference: Any, reference_name: str) -> str:
    """The first leaf path (in the reference's order) that only one tree has."""
    update_paths, reference_paths = _leaf_paths(updates), _leaf_paths(reference)
    update_set, reference_set = set(update_paths), set(reference_paths)
    missing = [p for p in reference_paths if p not in update_set]
    if missing:
        return f"{reference_name} have a leaf at {missing[0]} that the updates lack"
    extra = [p for p in update_paths if p not in reference_set]
    if extra:
        return f"the updates have a leaf at {extra[0]} that the {reference_name} lack"
    # Same leaf paths, different node types (e.g. a list against a tuple).
    return f"{str(jax.tree.structure(updates))[:200]} vs {str(jax.tree.structure(reference))[:200]}"


def check_same_tree(updates: Any, reference: Any, reference_name: str) -> None:
    """Raise ``ValueError`` unless ``updates`` has ``reference``'s tree
    structure and leaf shapes, naming the first leaf path that differs.

    Only structures and shapes are compared: both are static, so under
    ``jit`` this runs once at trace time and costs nothing per step.

    Args:
      updates: the gradients / updates given to ``update``.
      reference: the params, or a state tree built from them.
      reference_name: how the message calls ``reference`` (``"params"``).

    Raises:
      ValueError: ``updates have shape (1, 2) at ['w'] but params have shape (3, 2)``.
    """
    update_def, reference_def = jax.tree.structure(updates), jax.tree.structure(reference)
    if update_def != reference_def:
        raise ValueError(f"update: updates and {reference_name} differ in tree structure "
                         f"({_structure_difference(updates, reference, reference_name)}); "
                         f"the updates must have the tree structure of the {reference_name}")
    leaves = jax.tree_util.tree_leaves_with_path(updates)
    for (path, leaf), other in zip(leaves, jax.tree.leaves(reference)):
        if np.shape(leaf) != np.shape(other):
            raise ValueError(
                f"update: updates have shape {np.shape(leaf)} at {jax.tree_util.keystr(path)} but "
                f"{reference_name} have shape {np.shape(other)} there; each update must have its "
                "parameter's shape (no broadcasting)")


def value_at(coefficient: ScalarOrSchedule, count: jax.Array) -> Any:
    """The coefficient at step ``count``: ``coefficient(count)`` for a schedule."""
    return coefficient(count) if callable(coefficient) else coefficient


def map_leaves(fn: Callable[..., tuple], tree: Any, *rest: Any,
               num_outputs: int) -> tuple:
    """Apply ``fn`` leaf by leaf and return one tree per output of ``fn``.

    ``fn(leaf, *rest_leaves) -> (out_1, ..., out_k)`` computes everything a
    rule needs for one parameter at once (e.g. Adam's m, v and update), so the
    whole rule is one function per leaf and one pass over the tree. The trees
    in ``rest`` (state built from the params) must have ``tree``'s structure
    and leaf shapes (``None`` leaves in ``tree`` are empty subtrees and are
    skipped); Python numbers in ``tree`` are read as arrays.

    Raises:
      ValueError: a tree in ``rest`` differs from ``tree`` in structure or in
        a leaf's shape (checked at trace time, see :func:`check_same_tree`).
    """
    for other in rest:
        check_same_tree(tree, other, "the optimizer state (built from the params)")
    leaves, treedef = jax.tree.flatten(tree)
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    rest_leaves = [treedef.flatten_up_to(other) for other in rest]
    outputs = [fn(*args) for args in zip(leaves, *rest_leaves)]
    columns = list(zip(*outputs)) if outputs else [()] * num_outputs
    return tuple(treedef.unflatten(list(column)) for column in columns)


def identity() -> GradientTransformation:
    """The transformation that leaves updates unchanged (empty state)."""
    return optax.identity()


def stateless(update_leaf: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """A transformation with empty state applying ``update_leaf`` to each leaf
    (:func:`optax.stateless_with_tree_map`; the params are not used)."""
    return optax.stateless_with_tree_map(lambda g, _: update_leaf(jnp.asarray(g)))


def chain(*transforms: GradientTransformation) -> GradientTransformationExtraArgs:
    """Apply ``transforms`` one after the other; the state is their tuple.

    :func:`optax.chain` with two checks: every argument must be a
    transformation, and an ``update`` given ``params`` checks that the updates
    have the params' tree structure and leaf shapes (at trace time, so a
    compiled step pays nothing). The state is optax's, so chains mix freely
    (ours may contain optax's transformations and optax's chain may contain
    ours), and extra keyword arguments of ``update`` (``value``, ``grad``,
    ``value_fn``, ...) reach every transformation that takes them, as in
    optax's ``GradientTransformationExtraArgs``.

    Raises:
      ValueError: no transformation is given.
      TypeError: an argument is not a transformation (naming its position).
    """
    if not transforms:
        raise ValueError("chain: needs at least one transformation, got none "
                         "(use optim.identity() for a transformation that does nothing)")
    for position, transform in enumerate(transforms, start=1):
        check_transformation(f"chain: argument {position}", transform)
    chained = optax.chain(*transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if params is not None:
            check_same_tree(updates, params, "params")
        return chained.update(updates, state, params, **extra_args)

    return GradientTransformationExtraArgs(chained.init, update_fn)
