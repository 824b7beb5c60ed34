"""Pooling over the spatial axes of channels-last input (B, *spatial, C).

Window, strides and padding follow ``conv``'s rules, except that an int
window or stride applies to every spatial axis of the input (1-3 of them):

- ``strides`` defaults to the window (non-overlapping windows, as PyTorch's
  and Keras' pools; flax's ``nn.max_pool``/``nn.avg_pool`` default to 1).
- ``padding``: "SAME" (XLA's rule: output = ⌈in / stride⌉), "VALID", an
  int, or (low, high) pairs per spatial dim; an explicit pad must be smaller
  than the window, so that every window holds an input element.
- ``max_pool`` takes the maximum over the in-bounds elements of each window.
- ``avg_pool`` divides each window's sum by its number of in-bounds
  elements (TensorFlow's and stax's rule, PyTorch's
  ``count_include_pad=False``). flax's ``nn.avg_pool`` and PyTorch's
  default (``count_include_pad=True``) divide by the full window size,
  counting the padding as zeros, so they differ at padded borders.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from functional_nn.layers._checks import check_padding, check_positive_int, padding_pairs, window_output_size
from functional_nn.layers.base import LAYERS, Layer

__all__ = ["max_pool", "avg_pool", "global_avg_pool", "max_pool_values", "avg_pool_values", "pool_geometry"]


def _per_dim(name: str, value, rank: int) -> tuple[int, ...]:
    """An int (every spatial dim) or a sequence of ``rank`` ints as a ``rank``-tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(f"{name}={value!r}: has {len(value)} entries, the input has {rank} spatial dims")
        return tuple(check_positive_int(name, v) for v in value)
    return (check_positive_int(name, value),) * rank


def _check_window_argument(name: str, value) -> None:
    """Eager check of a window/strides argument before the input rank is known."""
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= 3:
            raise ValueError(f"{name}={value!r}: must be an int or a sequence of 1, 2 or 3 ints")
        for v in value:
            check_positive_int(name, v)
    else:
        check_positive_int(name, value)


def pool_geometry(layer: str, input_shape, window, strides=None, padding="VALID"):
    """Window, strides and (low, high) pads per spatial dim of ``input_shape``, and the output shape.

    Raises:
      ValueError: the input is not (B, *spatial, C) with 1-3 spatial dims, the
        window/strides don't match its rank, a pad is not smaller than the
        window, or the window exceeds the padded input (naming ``layer``).
    """
    input_shape = tuple(input_shape)
    rank = len(input_shape) - 2
    if not 1 <= rank <= 3:
        raise ValueError(f"{layer}: input shape {input_shape} has rank {len(input_shape)}; "
                         f"expected (batch, *spatial, channels) with 1-3 spatial dims")
    window = _per_dim("window", window, rank)
    strides = window if strides is None else _per_dim("strides", strides, rank)
    pads = padding_pairs(check_padding(padding), input_shape[1:-1], window, strides)
    if any(lo >= k or hi >= k for (lo, hi), k in zip(pads, window)):
        raise ValueError(f"{layer}: padding {pads} must be smaller than the window {window} on each side")
    out_spatial = window_output_size(input_shape[1:-1], window, strides, pads)
    if min(out_spatial) < 1:
        raise ValueError(f"{layer}: input shape {input_shape} is smaller than the window {window}")
    return window, strides, pads, (input_shape[0], *out_spatial, input_shape[-1])


def _lowest(dtype):
    """-inf (or the integer minimum) as a Python scalar: with a concrete identity as init value
    ``lax.reduce_window`` uses its max/sum primitives, which are differentiable (also under jit)."""
    return -math.inf if jnp.issubdtype(dtype, jnp.inexact) else int(jnp.iinfo(dtype).min)


def max_pool_values(x, window, strides=None, padding="VALID"):
    """y[n, o, c] = max over the in-bounds window at o·stride (shapes: module docstring)."""
    window, strides, pads, _ = pool_geometry("max_pool", x.shape, window, strides, padding)
    return lax.reduce_window(x, _lowest(x.dtype), lax.max,
                             (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)))


def avg_pool_values(x, window, strides=None, padding="VALID"):
    """y[n, o, c] = (Σ of the in-bounds window at o·stride) / (its number of in-bounds elements)."""
    window, strides, pads, _ = pool_geometry("avg_pool", x.shape, window, strides, padding)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    dims, step, all_pads = (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
    sums = lax.reduce_window(x, 0.0, lax.add, dims, step, all_pads)
    if not any(lo or hi for lo, hi in pads):
        return sums / jnp.asarray(math.prod(window), x.dtype)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    counts = lax.reduce_window(ones, 0.0, lax.add, dims, step, all_pads)
    return sums / counts


def _pool_layer(name: str, values_fn, window, strides, padding) -> Layer:
    _check_window_argument("window", window)
    if strides is not None:
        _check_window_argument("strides", strides)
    padding = check_padding(padding)

    def init(key, input_shape):
        del key
        return pool_geometry(name, input_shape, window, strides, padding)[3], (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params, train, key
        return values_fn(x, window, strides, padding), state

    init.layer_name = name  # named in serial's errors
    return Layer(init, apply)


@LAYERS.register
def max_pool(window, *, strides=None, padding="VALID") -> Layer:
    """Max pooling: the maximum of each window, per channel (module docstring for the rules).

    Args:
      window: an int (every spatial dim) or one int per spatial dim.
      strides: the same; None (default) is the window.
      padding: "SAME" | "VALID" | an int | (low, high) pairs; padded
        positions never win the maximum.

    Raises:
      ValueError: a bad argument (named); at init/apply, an input that is not
        (B, *spatial, C) or whose rank doesn't match a tuple window.
    """
    return _pool_layer("max_pool", max_pool_values, window, strides, padding)


@LAYERS.register
def avg_pool(window, *, strides=None, padding="VALID") -> Layer:
    """Average pooling: each window's mean over its in-bounds elements (module docstring).

    Args:
      window: an int (every spatial dim) or one int per spatial dim.
      strides: the same; None (default) is the window (flax defaults to 1).
      padding: "SAME" | "VALID" | an int | (low, high) pairs; padding is not
        counted in the mean (PyTorch's ``count_include_pad=False``; flax and
        PyTorch's default count it).

    Raises:
      ValueError: as ``max_pool``.
    """
    return _pool_layer("avg_pool", avg_pool_values, window, strides, padding)


@LAYERS.register
def global_avg_pool() -> Layer:
    """Mean over every spatial axis: (B, *spatial, C) -> (B, C).

    Raises:
      ValueError: at init/apply, an input without spatial axes (rank < 3).
    """

    def output_shape(input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"global_avg_pool: input shape {input_shape} has rank {len(input_shape)}; "
                             f"expected (batch, *spatial, channels) with at least one spatial dim")
        return (input_shape[0], input_shape[-1])

    def init(key, input_shape):
        del key
        return output_shape(input_shape), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params, train, key
        output_shape(x.shape)
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1))), state

    return Layer(init, apply)
