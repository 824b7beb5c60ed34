"""Dense layer, activations as layers, flatten.

Plain functions: ``linear(params, x) = x @ w + b``; the activations are
``jax.nn``'s (relu, sigmoid, tanh, softmax, log_softmax, gelu).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from functional_nn.layers._checks import check_choice
from functional_nn.layers.base import LAYERS, Layer

#: Initializers selectable by name in ``dense(w_init=..., b_init=...)``;
#: the variance-scaling ones are ``jax.nn.initializers``' (fan_in for lecun/he,
#: fan_avg for glorot; "normal" is a truncated normal, as in flax).
INITIALIZERS: dict[str, Callable] = {
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "lecun_uniform": jax.nn.initializers.lecun_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "he_normal": jax.nn.initializers.he_normal(),
    "he_uniform": jax.nn.initializers.he_uniform(),
    "zeros": jax.nn.initializers.zeros,
    "ones": jax.nn.initializers.ones,
}


def get_initializer(init) -> Callable:
    """An initializer ``(key, shape, dtype) -> array`` from a name in ``INITIALIZERS`` or a callable."""
    if callable(init):
        return init
    check_choice("initializer", init, INITIALIZERS)
    return INITIALIZERS[init]


def linear(params, x):
    """The affine map z = x W + b, with ``params = {"w": (in, out), "b": (out,)}``."""
    return x @ params["w"] + params["b"]


@LAYERS.register
def dense(out_dim: int, *, w_init="lecun_normal", b_init="zeros", dtype=jnp.float32) -> Layer:
    """Fully connected layer z = x W + b on the last axis.

    Args:
      out_dim: number of output features (``features`` in a YAML layer list).
      w_init: name in ``INITIALIZERS`` (lecun/glorot/he × normal/uniform,
        zeros, ones) or a callable ``(key, shape, dtype) -> array``.
      b_init: the same, for the bias (default zeros).
      dtype: parameter dtype.

    Params: ``{"w": (in_dim, out_dim), "b": (out_dim,)}``; no state.
    """
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim={out_dim!r} must be a positive integer")
    w_initializer, b_initializer = get_initializer(w_init), get_initializer(b_init)

    def init(key, input_shape):
        in_dim = input_shape[-1]
        w_key, b_key = jax.random.split(key)
        params = {"w": w_initializer(w_key, (in_dim, out_dim), dtype), "b": b_initializer(b_key, (out_dim,), dtype)}
        return tuple(input_shape[:-1]) + (out_dim,), params, ()

    def apply(params, state, x, *, train: bool, key=None):
        del train, key
        return linear(params, x), state

    return Layer(init, apply)


class Activation(Layer):
    """A parameter-free elementwise layer. It is itself a ``Layer`` and calling
    it returns itself, so ``serial(dense(8), relu)`` and ``serial(dense(8), relu())``
    both work."""

    __slots__ = ()

    def __call__(self) -> "Activation":
        return self


def elementwise(fn: Callable, **fn_kwargs) -> Activation:
    """A layer applying ``fn(x, **fn_kwargs)``; shapes unchanged, no params, no state."""

    def init(key, input_shape):
        del key
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params, train, key
        return fn(x, **fn_kwargs), state

    return Activation(init, apply)


identity = elementwise(lambda x: x)
relu = elementwise(jax.nn.relu)
sigmoid = elementwise(jax.nn.sigmoid)
tanh = elementwise(jnp.tanh)
gelu = elementwise(jax.nn.gelu)
softplus = elementwise(jax.nn.softplus)
softmax = elementwise(jax.nn.softmax, axis=-1)
log_softmax = elementwise(jax.nn.log_softmax, axis=-1)


for _name, _layer in (("relu", relu), ("sigmoid", sigmoid), ("tanh", tanh), ("gelu", gelu),
                     ("softplus", softplus), ("softmax", softmax), ("log_softmax", log_softmax)):
    LAYERS.register(_layer, name=_name)


@LAYERS.register
def flatten() -> Layer:
    """Flatten every axis but the batch axis: (B, d1, d2, ...) -> (B, d1·d2·...)."""

    def init(key, input_shape):
        del key
        return (input_shape[0], math.prod(input_shape[1:])), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params, train, key
        return x.reshape(x.shape[0], -1), state

    return Layer(init, apply)
