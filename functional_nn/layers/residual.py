"""Residual connection y = block(x) + shortcut(x).

The module is also the layer's constructor: ``layers.residual(block)``
builds the layer; ``layers.residual.add_branches`` is the plain function.
"""

from __future__ import annotations

from functional_nn.layers.base import LAYERS, Layer, as_layer, callable_module, split_key
from functional_nn.layers.core import identity

BRANCHES = ("block", "shortcut")


def add_branches(block_output, shortcut_output):
    """y = F(x) + S(x); the two branch outputs must have the same shape.

    Raises:
      ValueError: the shapes differ (no broadcasting), naming both.
    """
    if block_output.shape != shortcut_output.shape:
        raise ValueError(f"residual: block output shape {tuple(block_output.shape)} differs from "
                         f"shortcut output shape {tuple(shortcut_output.shape)}")
    return block_output + shortcut_output


@LAYERS.register
def residual(block, shortcut=None) -> Layer:
    """y = block(x) + shortcut(x), the shortcut being the identity when None.

    Args:
      block: a ``Layer``, or a list of layers (composed with ``serial``).
      shortcut: the same, or None for the identity (e.g. a 1×1 ``conv`` with
        strides to match a strided block).

    Params and state: ``{"block": ..., "shortcut": ...}``, each branch's own
    (``()`` for the identity); the new state of both branches is returned, so
    a batch norm inside the block updates its running statistics. ``init``'s
    and ``apply``'s keys are split into one key per branch.

    Raises:
      TypeError: ``block``/``shortcut`` is not a Layer or a list of Layers.
      ValueError: at init/apply, branch output shapes that differ.
    """
    branches = {"block": as_layer("block", block),
                "shortcut": identity if shortcut is None else as_layer("shortcut", shortcut)}

    def init(key, input_shape):
        shapes, params, states = {}, {}, {}
        for name, branch_key in zip(BRANCHES, split_key(key, len(BRANCHES))):
            shapes[name], params[name], states[name] = branches[name].init(branch_key, tuple(input_shape))
        if tuple(shapes["block"]) != tuple(shapes["shortcut"]):
            raise ValueError(f"residual: block output shape {tuple(shapes['block'])} differs from "
                             f"shortcut output shape {tuple(shapes['shortcut'])} (input shape {tuple(input_shape)})")
        return tuple(shapes["block"]), params, states

    def apply(params, state, x, *, train: bool, key=None):
        outputs, new_states = {}, {}
        for name, branch_key in zip(BRANCHES, split_key(key, len(BRANCHES))):
            outputs[name], new_states[name] = branches[name].apply(
                params[name], state[name], x, train=train, key=branch_key)
        return add_branches(outputs["block"], outputs["shortcut"]), new_states

    return Layer(init, apply)


callable_module(__name__, residual)
