"""Layers as ``(init, apply)`` pairs over parameter pytrees (stax's shape, explicit state).

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, train: bool, key=None) -> (y, new_state)

``input_shape`` includes the batch axis; features are the last axis. A layer
without parameters has ``params == ()``, one without state ``state == ()``.
"""

from __future__ import annotations

import contextlib
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
        for index, (layer, layer_key) in enumerate(zip(layers, split_key(key, len(layers)))):
            with _naming_layer(index, layer):
                shape, layer_params, layer_state = layer.init(layer_key, shape)
            params.append(layer_params)
            states.append(layer_state)
        return shape, tuple(params), tuple(states)

    def apply(params, state, x, *, train: bool, key=None):
        _check_one_entry_per_layer("params", params, len(layers))
        _check_one_entry_per_layer("state", state, len(layers))
        new_states = []
        keys = split_key(key, len(layers))
        for index, (layer, layer_params, layer_state, layer_key) in enumerate(zip(layers, params, state, keys)):
            with _naming_layer(index, layer):
                x, layer_state = layer.apply(layer_params, layer_state, x, train=train, key=layer_key)
            new_states.append(layer_state)
        return x, tuple(new_states)

    return Layer(init, apply)


def layer_name(layer: Layer) -> str:
    """The name of the constructor that built ``layer`` (``"dense"`` for ``dense(8)``).

    Read from ``init.layer_name`` when a shared factory set it (pools,
    activations), else from the qualified name of the ``init`` closure
    (``dense.<locals>.init``); ``"layer"`` when there is none.
    """
    explicit = getattr(layer.init, "layer_name", None)
    if explicit:
        return explicit
    qualname = getattr(layer.init, "__qualname__", "")
    parts = qualname.split(".<locals>.")
    return parts[-2] if len(parts) >= 2 else "layer"


@contextlib.contextmanager
def _naming_layer(index: int, layer: Layer):
    """Re-raise a ``ValueError``/``TypeError`` from layer ``index`` prefixed
    ``serial layer <index> (<name>): `` (nested serials: ``serial layer 3 > layer 1 (dense): ``)."""
    try:
        yield
    except (ValueError, TypeError) as error:
        if type(error) not in (ValueError, TypeError):
            raise
        raise type(error)(_prefixed_message(index, layer_name(layer), str(error))) from error


def _prefixed_message(index: int, name: str, message: str) -> str:
    if message.startswith("serial layer "):
        return f"serial layer {index} > {message[len('serial '):]}"
    if message.startswith(f"{name}: "):
        message = message[len(name) + 2:]
    return f"serial layer {index} ({name}): {message}"


def as_layer(name: str, value) -> Layer:
    """``value`` as a ``Layer``: a ``Layer`` as it is, a list/tuple of layers as their ``serial``.

    Raises:
      TypeError: ``value`` is neither, naming ``name``.
    """
    if isinstance(value, Layer):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
        return serial(*value)
    raise TypeError(f"{name}={value!r}: must be a Layer (init, apply) or a non-empty list of Layers")


def _check_one_entry_per_layer(name: str, tree, num_layers: int):
    if not isinstance(tree, (tuple, list)) or len(tree) != num_layers:
        kind = type(tree).__name__
        size = len(tree) if isinstance(tree, (tuple, list)) else "?"
        raise ValueError(f"serial of {num_layers} layers needs {name} with one entry per layer; got a {kind} of length {size}")
