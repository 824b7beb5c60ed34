"""Layer normalization over the last axis.

The module is also the layer's constructor: ``layers.layernorm()`` builds the
layer, ``layers.layernorm.layer_normalize(x, gamma, beta)`` is the plain function.

For each example (every index but the last axis), over its C features:

    μ = (1/C) Σ_i x_i,   σ² = (1/C) Σ_i (x_i - μ)²   (two passes: stable at large |μ|)
    y_i = γ_i (x_i - μ) / √(σ² + ε) + β_i

The statistics are computed in float32 at least (float64 for float64 input),
whatever the input or compute dtype.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from functional_nn._validation import check_dtype, check_nonnegative
from functional_nn.layers._checks import check_features, param_dtype
from functional_nn.layers.base import LAYERS, Layer, callable_module


def statistics_dtype(dtype):
    """The dtype of μ and σ²: ``dtype`` promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def layer_statistics(x):
    """(μ, σ²) over the last axis, two-pass, in ``statistics_dtype(x.dtype)``, keeping that axis."""
    x = x.astype(statistics_dtype(x.dtype))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return mean, var


def layer_normalize(x, gamma, beta, eps=1e-5, *, out_dtype=None):
    """y = γ (x - μ) / √(σ² + ε) + β over the last axis (module docstring).

    Args:
      x: input (..., C).
      gamma, beta: scale and shift, shape (C,).
      eps: ε ≥ 0.
      out_dtype: dtype of y; None: the promoted dtype of x, γ and β.

    Returns:
      y, shaped like x.
    """
    out_dtype = out_dtype if out_dtype is not None else jnp.result_type(x, gamma, beta)
    mean, var = layer_statistics(x)
    z_hat = (x.astype(mean.dtype) - mean) * lax.rsqrt(var + jnp.asarray(eps, mean.dtype))
    return (z_hat * gamma.astype(mean.dtype) + beta.astype(mean.dtype)).astype(out_dtype)


@LAYERS.register
def layernorm(*, eps=1e-5, dtype=None, compute_dtype=None) -> Layer:
    """Layer normalization over the last axis (features), per example.

    Args:
      eps: ε in √(σ² + ε); a float ≥ 0 or a traced scalar.
      dtype: dtype of γ and β; None is JAX's default float (float32, float64
        under ``jax_enable_x64``).
      compute_dtype: dtype the input is cast to and the output is returned in
        (e.g. "bfloat16"); μ and σ² are still computed in float32 at least.

    Params: ``{"gamma": ones (C,), "beta": zeros (C,)}``; no state.

    Raises:
      ValueError: ``eps`` < 0; at apply, an input whose last axis is not C.
      TypeError: ``dtype``/``compute_dtype`` is not a floating dtype.
    """
    check_nonnegative("eps", eps)
    dtype = check_dtype("dtype", dtype, jnp.floating)
    compute_dtype = check_dtype("compute_dtype", compute_dtype, jnp.floating)

    def init(key, input_shape):
        del key
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise ValueError(f"layernorm: input shape {input_shape} has no feature axis; expected (..., features)")
        features = input_shape[-1]
        params = {"gamma": jnp.ones((features,), param_dtype(dtype)), "beta": jnp.zeros((features,), param_dtype(dtype))}
        return input_shape, params, ()

    def apply(params, state, x, *, train: bool, key=None):
        del train, key
        gamma, beta = params["gamma"], params["beta"]
        check_features("layernorm", jnp.shape(x), gamma.shape[0], "gamma", gamma.shape)
        if compute_dtype is not None:
            return layer_normalize(x.astype(compute_dtype), gamma, beta, eps, out_dtype=compute_dtype), state
        return layer_normalize(x, gamma, beta, eps), state

    return Layer(init, apply)


callable_module(__name__, layernorm)
