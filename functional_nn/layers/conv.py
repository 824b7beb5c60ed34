"""Convolution over 1, 2 or 3 spatial dims, channels last.

The module is also the layer's constructor: ``layers.conv(16, 3)`` builds the
layer, ``layers.conv.convolve(params, x, ...)`` is the plain function.

For input x of shape (B, *spatial, C_in), kernel W of shape
(*k, C_in / G, C_out) and bias b, with stride s, dilation d and G groups
(cross-correlation, as PyTorch and ``lax.conv_general_dilated``):

    y[n, o, c] = b[c] + Σ_k Σ_i x_pad[n, o·s + k·d, g(c)·C_in/G + i] · W[k, i, c]

where g(c) = ⌊c / (C_out / G)⌋ is the group of output channel c; ``groups =
C_in`` is a depthwise convolution.

Backward pass. XLA:CPU runs the transposed convolutions that JAX derives for
the gradient very slowly (the kernel gradient 30–80× slower than the forward
convolution inside a ``lax.scan``), so ``convolve`` carries its own
``jax.custom_vjp`` (:func:`conv_with_fast_backward`) with, for output
gradient δ = ∂Div/∂y,

    ∂Div/∂x = δ ⊛ rot180(W)ᵀ      (a convolution of δ, dilated by the stride, with the
                                   spatially flipped kernel, in/out channels swapped per group)
    ∂Div/∂W[k, i, c] = Σ_{n,o} x_pad[n, o·s + k·d, g(c)·C_in/G + i] · δ[n, o, c]
                                  (one matmul of δ with the im2col patches of x)

Both equal JAX's own derivative (tested against ``jax.grad`` of
``lax.conv_general_dilated`` and finite differences in float64). Forward-mode
differentiation (``jax.jvp``, ``jax.jacfwd``) of ``convolve`` is not available
through a custom VJP: call it with ``fast_backward=False`` for that.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

from functional_nn._validation import check_dtype
from functional_nn.layers._checks import (
    cast_all,
    check_features,
    check_input_rank,
    check_padding,
    check_positive_int,
    computation_dtype,
    int_tuple,
    padding_pairs,
    param_dtype,
    spatial_rank,
    window_output_size,
)
from functional_nn.layers.base import LAYERS, Layer, callable_module
from functional_nn.layers.core import get_initializer

#: ``lax.conv_general_dilated`` dimension numbers per spatial rank:
#: channels-last input/output, kernel (*spatial, in, out), as flax uses them.
DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}

_LAYOUT = {1: "(batch, width, channels)", 2: "(batch, height, width, channels)",
           3: "(batch, depth, height, width, channels)"}


def convolve(params, x, *, strides=1, padding="SAME", dilation=1, groups: int = 1, compute_dtype=None,
             fast_backward: bool = True):
    """The convolution y = x ⋆ W + b (module docstring), channels last.

    Args:
      params: ``{"w": (*kernel, C_in // groups, C_out)}`` and optionally ``"b": (C_out,)``.
      x: input (B, *spatial, C_in) with as many spatial dims as the kernel.
      strides, dilation: an int or one int per spatial dim (dilation of the kernel).
      padding: "SAME" (XLA's rule), "VALID", an int, or (low, high) pairs.
      groups: feature groups G; C_in and C_out must be divisible by G.
      compute_dtype: dtype of the convolution (x, W, b cast to it); None
        promotes x's and the params' dtypes.
      fast_backward: use :func:`conv_with_fast_backward` (reverse mode only);
        False differentiates ``lax.conv_general_dilated`` as JAX does (forward
        mode works, the backward pass is slow on CPU).

    Returns:
      y of shape (B, *out_spatial, C_out).
    """
    w = params["w"]
    rank = w.ndim - 2
    strides, dilation = int_tuple("strides", strides, rank), int_tuple("dilation", dilation, rank)
    pads = padding_pairs(check_padding(padding), x.shape[1:-1], w.shape[:-2], strides, dilation)
    dtype = computation_dtype(compute_dtype, x, w)
    x, w = cast_all(dtype, x, w)
    if fast_backward:
        y = conv_with_fast_backward(x, w, strides, pads, dilation, groups)
    else:
        y = _conv(x, w, strides, pads, dilation, groups)
    if "b" in params:
        y = y + params["b"].astype(dtype)
    return y


def _conv(x, w, strides, pads, dilation, groups):
    """``lax.conv_general_dilated`` channels last (y = x ⋆ W, no bias)."""
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=pads, rhs_dilation=dilation,
                                    dimension_numbers=DIMENSION_NUMBERS[w.ndim - 2], feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_with_fast_backward(x, w, strides: tuple, pads: tuple, dilation: tuple, groups: int):
    """y = x ⋆ W as ``lax.conv_general_dilated`` (explicit ``pads``), with the
    backward pass of the module docstring: ∂Div/∂x a convolution of δ with the
    flipped kernel, ∂Div/∂W one matmul with the im2col patches of x.

    Args:
      x: (B, *spatial, C_in); w: (*kernel, C_in // groups, C_out).
      strides, dilation: one int per spatial dim; pads: one (low, high) pair per dim.
      groups: feature groups G.

    Returns:
      y of shape (B, *out_spatial, C_out). Reverse mode only (no ``jax.jvp``).
    """
    return _conv(x, w, strides, pads, dilation, groups)


def _conv_forward(x, w, strides, pads, dilation, groups):
    return _conv(x, w, strides, pads, dilation, groups), (x, w)


def _conv_backward(strides, pads, dilation, groups, residuals, dy):
    x, w = residuals
    return (input_gradient(dy, w, x.shape, strides, pads, dilation, groups),
            kernel_gradient(x, dy, w.shape, strides, pads, dilation, groups))


conv_with_fast_backward.defvjp(_conv_forward, _conv_backward)


def input_gradient(dy, w, x_shape, strides, pads, dilation, groups):
    """∂Div/∂x = δ ⊛ rot180(W)ᵀ: δ dilated by the stride (zeros between its
    elements), padded by (k_eff - 1 - low, the rest), convolved with the kernel
    flipped in space and with each group's in/out channels swapped.

    Args:
      dy: δ = ∂Div/∂y, (B, *out_spatial, C_out); w: (*kernel, C_in // G, C_out).
      x_shape: the input's shape; strides, pads, dilation, groups: the forward's.

    Returns:
      ∂Div/∂x of shape ``x_shape``.
    """
    rank = w.ndim - 2
    kernel, (c_in_group, c_out) = w.shape[:rank], w.shape[rank:]
    flipped = jnp.flip(w, tuple(range(rank))).reshape(*kernel, c_in_group, groups, c_out // groups)
    transposed = jnp.swapaxes(flipped, rank, rank + 2).reshape(*kernel, c_out // groups, groups * c_in_group)
    transposed_pads = []
    for n, m, k, s, d, (low, _) in zip(x_shape[1:-1], dy.shape[1:-1], kernel, strides, dilation, pads):
        k_eff = (k - 1) * d + 1
        new_low = k_eff - 1 - low
        transposed_pads.append((new_low, n + k_eff - 1 - new_low - ((m - 1) * s + 1)))
    return lax.conv_general_dilated(dy, transposed, window_strides=(1,) * rank, padding=transposed_pads,
                                    lhs_dilation=strides, rhs_dilation=dilation,
                                    dimension_numbers=DIMENSION_NUMBERS[rank], feature_group_count=groups)


def kernel_gradient(x, dy, w_shape, strides, pads, dilation, groups):
    """∂Div/∂W[k, i, c] = Σ_{n,o} x_pad[n, o·s + k·d, g(c)·C_in/G + i] · δ[n, o, c]:
    the im2col patches of x (:func:`image_patches`) contracted with δ over the
    batch and output positions, group by group.

    Returns:
      ∂Div/∂W of shape ``w_shape`` = (*kernel, C_in // G, C_out).
    """
    rank = len(w_shape) - 2
    kernel, (c_in_group, c_out) = w_shape[:rank], w_shape[rank:]
    patches = image_patches(x, kernel, strides, pads, dilation, dy.shape[1:-1])
    patches = patches.reshape(*patches.shape[:-1], groups, c_in_group)  # (B, *out, K, G, C_in/G)
    dy = dy.reshape(*dy.shape[:-1], groups, c_out // groups)  # (B, *out, G, C_out/G)
    summed = tuple(range(rank + 1))
    grad = lax.dot_general(patches, dy, ((summed, summed), ((rank + 2,), (rank + 1,))))  # (G, K, C_in/G, C_out/G)
    grad = jnp.moveaxis(grad, 0, 2)  # (K, C_in/G, G, C_out/G)
    return grad.reshape(w_shape).astype(dy.dtype)


def image_patches(x, kernel, strides, pads, dilation, out_spatial):
    """im2col: (B, *out_spatial, K, C_in), K = ∏ kernel, where
    patches[n, o, k, :] = x_pad[n, o·s + k·d, :] (kernel offsets k in row-major order).

    Built from strided slices of the padded input, which XLA:CPU fuses (its
    ``conv_general_dilated_patches`` is a slow convolution there).
    """
    rank = len(kernel)
    padded = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
    views = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        start = [0] + [k * d for k, d in zip(offset, dilation)] + [0]
        limit = [x.shape[0]] + [b + (m - 1) * s + 1 for b, m, s in zip(start[1:], out_spatial, strides)] + [x.shape[-1]]
        views.append(lax.slice(padded, start, limit, (1, *strides, 1)))
    return jnp.stack(views, axis=rank + 1)


@LAYERS.register
def conv(out_channels: int, kernel_size, *, strides=1, padding="SAME", dilation=1, groups: int = 1,
         use_bias: bool = True, w_init="lecun_normal", b_init="zeros", dtype=None, compute_dtype=None,
         fast_backward: bool = True) -> Layer:
    """Convolution layer, channels last: (B, *spatial, C_in) -> (B, *out_spatial, out_channels).

    The gradient is the hand-written backward pass of :func:`conv_with_fast_backward`
    (XLA:CPU runs JAX's derived transposed convolutions very slowly inside a
    compiled epoch); it is reverse mode only, so ``jax.jvp``/``jax.jacfwd``
    through a model with this layer raise unless ``fast_backward=False``.

    Args:
      out_channels: number of output channels C_out.
      kernel_size: an int (a square 2-D kernel) or a tuple whose length is the
        number of spatial dims (1, 2 or 3).
      strides: an int or one int per spatial dim.
      padding: "SAME" | "VALID" (any case) | an int (both sides of every dim)
        | a sequence of (low, high) pairs, one per spatial dim. "SAME" is
        XLA's rule, as in ``lax.conv_general_dilated``, flax and TensorFlow:
        output = ⌈in / stride⌉ and the total padding
        max((output - 1)·stride + (k - 1)·dilation + 1 - in, 0) is split
        low = total // 2, high = the rest (the extra element goes at the
        end). PyTorch's ``padding="same"`` exists only for stride 1 (where the
        sizes agree and PyTorch also puts the extra element at the end); at
        stride 2 use "SAME" here or an explicit pair there.
      dilation: kernel dilation, an int or one int per spatial dim.
      groups: feature groups G (C_in and out_channels divisible by G);
        ``groups = C_in`` is a depthwise convolution.
      use_bias: whether to add b (params then hold no "b" when False).
      w_init, b_init: name in ``INITIALIZERS`` or a callable
        ``(key, shape, dtype) -> array``; fan-in of W is k₁···k_n · C_in / G,
        as in flax and PyTorch.
      dtype: parameter dtype; None is JAX's default float (float32, float64
        under ``jax_enable_x64``).
      compute_dtype: dtype of the convolution and output (e.g. "bfloat16");
        params stay in ``dtype``.
      fast_backward: True: the custom VJP above (reverse mode only); False:
        JAX's own derivative of ``lax.conv_general_dilated`` (forward mode too).

    Params: ``{"w": (*kernel_size, C_in // groups, out_channels), "b": (out_channels,)}``; no state.

    Raises:
      ValueError: a bad argument (named); at init, an input of the wrong rank
        or with channels not divisible by ``groups``, or a kernel larger than
        the padded input; at apply, channels other than the params expect.
      TypeError: ``use_bias`` is not a bool; ``dtype``/``compute_dtype`` is not a float dtype.
    """
    out_channels = check_positive_int("out_channels", out_channels)
    rank = spatial_rank("kernel_size", kernel_size)
    kernel = int_tuple("kernel_size", kernel_size, rank)
    strides, dilation = int_tuple("strides", strides, rank), int_tuple("dilation", dilation, rank)
    padding, groups = check_padding(padding), check_positive_int("groups", groups)
    if out_channels % groups:
        raise ValueError(f"groups={groups}: must divide out_channels={out_channels}")
    if isinstance(padding, tuple) and len(padding) != rank:
        raise ValueError(f"padding={padding!r}: needs {rank} (low, high) pairs for kernel_size={kernel_size!r}")
    if not isinstance(use_bias, bool):
        raise TypeError(f"use_bias={use_bias!r}: must be True or False")
    if not isinstance(fast_backward, bool):
        raise TypeError(f"fast_backward={fast_backward!r}: must be True or False")
    w_initializer, b_initializer = get_initializer(w_init), get_initializer(b_init)
    dtype, compute_dtype = check_dtype("dtype", dtype), check_dtype("compute_dtype", compute_dtype)
    options = dict(strides=strides, padding=padding, dilation=dilation, groups=groups, compute_dtype=compute_dtype,
                   fast_backward=fast_backward)

    def init(key, input_shape):
        input_shape = tuple(input_shape)
        check_input_rank("conv", input_shape, rank + 2, _LAYOUT[rank])
        in_channels = input_shape[-1]
        if in_channels % groups:
            raise ValueError(f"conv: input shape {input_shape} has {in_channels} channels, "
                             f"not divisible by groups={groups}")
        out_spatial = _output_spatial(input_shape, kernel, strides, padding, dilation)
        w_key, b_key = jax.random.split(key)
        params = {"w": w_initializer(w_key, kernel + (in_channels // groups, out_channels), param_dtype(dtype))}
        if use_bias:
            params["b"] = b_initializer(b_key, (out_channels,), param_dtype(dtype))
        return (input_shape[0], *out_spatial, out_channels), params, ()

    def apply(params, state, x, *, train: bool, key=None):
        del train, key
        check_input_rank("conv", x.shape, rank + 2, _LAYOUT[rank])
        w_shape = params["w"].shape
        check_features("conv", x.shape, w_shape[-2] * groups, "w", w_shape, what="channels")
        return convolve(params, x, **options), state

    return Layer(init, apply)


def _output_spatial(input_shape, kernel, strides, padding, dilation) -> tuple:
    """The true output spatial size; ``ValueError`` when the dilated kernel exceeds the padded input."""
    in_spatial = input_shape[1:-1]
    pads = padding_pairs(padding, in_spatial, kernel, strides, dilation)
    out = window_output_size(in_spatial, kernel, strides, pads, dilation)
    if min(out) < 1:
        raise ValueError(f"conv: input shape {input_shape} is smaller than the kernel {kernel} "
                         f"(dilation {dilation}, padding {pads}): the output would be empty")
    return out


callable_module(__name__, conv)
