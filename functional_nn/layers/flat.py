"""Parameters as one flat buffer per dtype: a model wrapper for many small leaves.

An optimizer maps its update over the leaves of the parameter tree; with
hundreds of small leaves every leaf is a separate kernel (read g, m, v, w and
write m, v, w per leaf), and the per-kernel overhead dominates. ``flat_params``
wraps a model so that its parameters are one 1-D buffer per dtype:

    buffer_k = concat(ravel(w) for every leaf w of dtype k)     (tree order)

and ``apply`` slices the leaves back out of the buffers inside the (jitted)
function, where the slices are free views for XLA. Any optimizer then sees
one leaf per dtype and runs one fused update over each buffer. The update is
elementwise for every per-leaf rule (SGD, momentum, RMSProp, Adam, …), so
the trajectory equals the per-leaf one up to float32 rounding. Rules that
look at a whole leaf (``clip_by_norm`` per leaf, masks by parameter name)
see the buffer instead: use them on the unwrapped model.

The buffers live in a ``FlatParams`` pytree whose children are the buffers
and whose static auxiliary data is the ``FlatLayout`` (tree structure, and
per leaf its buffer, offset and shape), so ``jit``, ``scan``, optimizer
states and checkpoints carry it like any other pytree.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from functional_nn.layers.base import Layer

__all__ = ["FlatLayout", "FlatParams", "ravel_by_dtype", "unravel", "flat_params"]


class LeafSlot(NamedTuple):
    """Where one leaf lives: buffer index, offset into it, and the leaf's shape."""

    buffer: int
    offset: int
    shape: tuple


class FlatLayout(NamedTuple):
    """The static layout of a ``FlatParams``: the original tree structure, the
    buffers' dtypes (names, in order of first appearance) and one ``LeafSlot`` per leaf."""

    treedef: Any
    dtypes: tuple
    slots: tuple


@jax.tree_util.register_pytree_node_class
class FlatParams:
    """One 1-D buffer per dtype (the pytree's children) plus its ``FlatLayout`` (static)."""

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers, layout: FlatLayout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout, buffers):
        return cls(buffers, layout)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}[{getattr(b, 'size', '?')}]" for d, b in zip(self.layout.dtypes, self.buffers))
        return f"FlatParams({sizes}; {len(self.layout.slots)} leaves)"


def ravel_by_dtype(tree) -> FlatParams:
    """The leaves of ``tree`` concatenated into one 1-D buffer per dtype (tree order within a dtype).

    Args:
      tree: a pytree of arrays (e.g. a model's params).

    Returns:
      ``FlatParams`` whose ``unravel`` gives ``tree`` back exactly.
    """
    leaves, treedef = jax.tree.flatten(tree)
    dtypes: list[str] = []
    parts: list[list] = []
    sizes: list[int] = []
    slots = []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        name = jnp.dtype(leaf.dtype).name
        if name not in dtypes:
            dtypes.append(name)
            parts.append([])
            sizes.append(0)
        index = dtypes.index(name)
        slots.append(LeafSlot(index, sizes[index], tuple(leaf.shape)))
        parts[index].append(leaf.reshape(-1))
        sizes[index] += leaf.size
    buffers = [jnp.concatenate(p) if len(p) > 1 else p[0] for p in parts]
    return FlatParams(buffers, FlatLayout(treedef, tuple(dtypes), tuple(slots)))


def unravel(flat: FlatParams):
    """The original tree: each buffer split at the leaves' offsets, each piece reshaped.

    ``jnp.split`` (not one slice per leaf) so that the gradient w.r.t. a
    buffer is one concatenation of the leaves' gradients rather than a sum of
    zero-padded copies.
    """
    if not isinstance(flat, FlatParams):
        raise TypeError(f"unravel: expected FlatParams (from ravel_by_dtype / flat_params), got {type(flat).__name__}")
    pieces = []
    for index, buffer in enumerate(flat.buffers):
        ends = [slot.offset + math.prod(slot.shape) for slot in flat.layout.slots if slot.buffer == index]
        pieces.append(iter(jnp.split(buffer, ends[:-1])))
    leaves = [next(pieces[slot.buffer]).reshape(slot.shape) for slot in flat.layout.slots]
    return jax.tree.unflatten(flat.layout.treedef, leaves)


def flat_params(model: Layer) -> Layer:
    """``model`` with its parameters kept as one flat buffer per dtype (``FlatParams``).

    ``init`` returns ``ravel_by_dtype`` of the model's params (state
    unchanged); ``apply`` unravels them and calls the model's ``apply``, so
    outputs, state and gradients (w.r.t. the buffers: the per-leaf gradients,
    concatenated) are the model's own. Use it to speed up optimizers on models
    with many small parameter arrays.

    Args:
      model: a ``Layer``.

    Raises:
      TypeError: ``model`` is not a ``Layer``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"flat_params: model={model!r} must be a Layer (init, apply)")

    def init(key, input_shape):
        output_shape, params, state = model.init(key, input_shape)
        return output_shape, ravel_by_dtype(params), state

    def apply(params, state, x, *, train: bool, key=None):
        return model.apply(unravel(params), state, x, train=train, key=key)

    return Layer(init, apply)

