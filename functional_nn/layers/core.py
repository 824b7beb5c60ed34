"""Dense layer, activations as layers, flatten, reshape.

Plain functions: ``linear(params, x) = x @ w + b``; the activations are
``jax.nn``'s (relu, sigmoid, tanh, softmax, log_softmax, gelu).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from functional_nn._validation import check_dtype
from functional_nn.layers._checks import cast_all, check_choice, check_features, param_dtype
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


def linear(params, x, compute_dtype=None):
    """The affine map z = x W + b, with ``params = {"w": (in, out), "b": (out,)}``.

    With ``compute_dtype`` (e.g. bfloat16) x, W and b are cast to it first, so
    the matmul runs, and z is returned, in that dtype; otherwise the usual
    promotion of x's and the params' dtypes applies.
    """
    w, b = params["w"], params["b"]
    if compute_dtype is not None:
        x, w, b = cast_all(compute_dtype, x, w, b)
    return x @ w + b


@LAYERS.register
def dense(out_dim: int, *, w_init="lecun_normal", b_init="zeros", dtype=None, compute_dtype=None) -> Layer:
    """Fully connected layer z = x W + b on the last axis.

    Args:
      out_dim: number of output features (``features`` in a YAML layer list).
      w_init: name in ``INITIALIZERS`` (lecun/glorot/he × normal/uniform,
        zeros, ones) or a callable ``(key, shape, dtype) -> array``.
      b_init: the same, for the bias (default zeros).
      dtype: parameter dtype; None is JAX's default float (float32, float64
        under ``jax_enable_x64``).
      compute_dtype: dtype of the matmul and the output (e.g. ``"bfloat16"``);
        the params stay in ``dtype``. None: promote x with the params.

    Params: ``{"w": (in_dim, out_dim), "b": (out_dim,)}``; no state.

    Raises:
      ValueError: ``out_dim`` is not a positive int; at apply, an input whose
        last axis is not ``in_dim`` (naming both shapes).
      TypeError: ``dtype``/``compute_dtype`` is not a float dtype.
    """
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim={out_dim!r} must be a positive integer")
    w_initializer, b_initializer = get_initializer(w_init), get_initializer(b_init)
    dtype, compute_dtype = check_dtype("dtype", dtype), check_dtype("compute_dtype", compute_dtype)

    def init(key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"dense: input shape {tuple(input_shape)} has no feature axis; expected (..., features)")
        in_dim, param_type = input_shape[-1], param_dtype(dtype)
        w_key, b_key = jax.random.split(key)
        params = {"w": w_initializer(w_key, (in_dim, out_dim), param_type),
                  "b": b_initializer(b_key, (out_dim,), param_type)}
        return tuple(input_shape[:-1]) + (out_dim,), params, ()

    def apply(params, state, x, *, train: bool, key=None):
        del train, key
        check_features("dense", jnp.shape(x), params["w"].shape[0], "w", params["w"].shape)
        return linear(params, x, compute_dtype), state

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

    name = getattr(fn, "__name__", "<lambda>")
    init.layer_name = "elementwise" if name == "<lambda>" else name  # named in serial's errors
    return Activation(init, apply)


identity = elementwise(lambda x: x)
identity.init.layer_name = "identity"
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


@LAYERS.register
def reshape(shape) -> Layer:
    """Reshape every example: (B, *in) -> (B, *shape), e.g. digits' (B, 64) -> (B, 8, 8, 1).

    Args:
      shape: the per-example shape (without the batch axis): a positive int or
        a sequence of positive ints, at most one of them -1 (inferred).

    Raises:
      ValueError: a bad ``shape``; at init/apply, an input whose examples do
        not have ``prod(shape)`` elements (naming both shapes).
    """
    target = _check_reshape_target(shape)

    def per_example_shape(input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in target if d != -1)
        fits = size % known == 0 if -1 in target else size == known
        if len(input_shape) < 1 or not fits:
            raise ValueError(f"reshape: input shape {tuple(input_shape)} cannot be reshaped to (batch, *{target}): "
                             f"each example has {size} elements")
        return tuple(size // known if d == -1 else d for d in target)

    def init(key, input_shape):
        del key
        return (input_shape[0],) + per_example_shape(tuple(input_shape)), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params, train, key
        return x.reshape((x.shape[0],) + per_example_shape(x.shape)), state

    return Layer(init, apply)


def _check_reshape_target(shape) -> tuple:
    dims = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
    valid = all(isinstance(d, int) and not isinstance(d, bool) and (d >= 1 or d == -1) for d in dims)
    if not dims or not valid or dims.count(-1) > 1:
        raise ValueError(f"shape={shape!r}: must be a positive int or a sequence of positive ints with at most one -1")
    return dims
