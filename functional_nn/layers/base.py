"""Layers as ``(init, apply)`` pairs over parameter pytrees (stax's shape, explicit state).

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, train: bool, key=None) -> (y, new_state)

``input_shape`` includes the batch axis; features are the last axis. A layer
without parameters has ``params == ()``, one without state ``state == ()``.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, NamedTuple

import jax

from functional_nn.registry import Registry

#: Layer constructors (and ready-made layers) by name, as configs name them.
LAYERS = Registry("layer")

Shape = tuple
InitFn = Callable[[Any, Shape], tuple]  # (key, input_shape) -> (output_shape, params, state)
ApplyFn = Callable[..., tuple]  # (params, state, x, *, train, key=None) -> (y, new_state)


class Layer(NamedTuple):
    """A layer: ``init(key, input_shape) -> (output_shape, params, state)`` and
    ``apply(params, state, x, *, train, key=None) -> (y, new_state)``."""

    init: InitFn
    apply: ApplyFn


class _ConstructorModule(types.ModuleType):
    """A layer module that is also its layer's constructor (see :func:`callable_module`)."""

    def __call__(self, *args, **kwargs):
        return self.__constructor__(*args, **kwargs)


def callable_module(module_name: str, constructor: Callable) -> None:
    """Make the module ``module_name`` callable as ``constructor``.

    A module named after its layer (``layers/batchnorm.py`` defines
    ``batchnorm``) stays a module, with its plain functions as attributes
    (``layers.batchnorm.normalize``), and calling it builds the layer
    (``layers.batchnorm(eps=1e-3)``), so ``import functional_nn.layers.batchnorm
    as bn`` and ``layers.batchnorm()`` both mean what they say.
    Call it at the end of the module: ``callable_module(__name__, batchnorm)``.
    """
    module = sys.modules[module_name]
    module.__constructor__ = constructor
    module.__class__ = _ConstructorModule


def split_key(key, num: int) -> tuple:
    """``num`` independent keys from ``key``, or ``num`` Nones when ``key`` is None."""
    if key is None:
        return (None,) * num
    return tuple(jax.random.split(key, num))


def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence: y = f_K(... f_2(f_1(x))).

    ``params`` and ``state`` are tuples with one entry per layer (``()`` for a
    layer that has none). ``init``'s key and ``apply``'s key are split into one
    key per layer; ``apply`` accepts ``key=None`` when no layer needs a key
    (every layer then receives ``key=None``). Each layer's new state is threaded
    into the returned state tuple.
    """
    layers = tuple(layers)
    for index, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: argument {index} is {layer!r}, expected a Layer (init, apply)")

    def init(key, input_shape):
        shape = tuple(input_shape)
        params, states = [], []
        for layer, layer_key in zip(layers, split_key(key, len(layers))):
            shape, layer_params, layer_state = layer.init(layer_key, shape)
            params.append(layer_params)
            states.append(layer_state)
        return shape, tuple(params), tuple(states)

    def apply(params, state, x, *, train: bool, key=None):
        _check_one_entry_per_layer("params", params, len(layers))
        _check_one_entry_per_layer("state", state, len(layers))
        new_states = []
        for layer, layer_params, layer_state, layer_key in zip(layers, params, state, split_key(key, len(layers))):
            x, layer_state = layer.apply(layer_params, layer_state, x, train=train, key=layer_key)
            new_states.append(layer_state)
        return x, tuple(new_states)

    return Layer(init, apply)


def _check_one_entry_per_layer(name: str, tree, num_layers: int):
    if not isinstance(tree, (tuple, list)) or len(tree) != num_layers:
        kind = type(tree).__name__
        size = len(tree) if isinstance(tree, (tuple, list)) else "?"
        raise ValueError(f"serial of {num_layers} layers needs {name} with one entry per layer; got a {kind} of length {size}")
