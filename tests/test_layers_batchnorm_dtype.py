"""Batch norm's dtype policy (issue 13): parameter dtype, running statistics in it (at least
float32), float64 statistics equal to the float64 formula, bfloat16 compute with float32 statistics."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers

FEATURES = 6


def batches(dtype, count=3, size=32, mean=3.0, std=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return [(mean + std * rng.standard_normal((size, FEATURES))).astype(dtype) for _ in range(count)]


def ema_formula_float64(xs, decay=0.9):
    """The EMA of μ_B and of the unbiased B/(B−1) σ_B², in NumPy float64."""
    mean, var = np.zeros(FEATURES), np.ones(FEATURES)
    for x in xs:
        x = np.asarray(x, np.float64)
        b = len(x)
        mean = decay * mean + (1 - decay) * x.mean(0)
        var = decay * var + (1 - decay) * x.var(0) * b / (b - 1)
    return mean, var


def run_training(layer, xs):
    _, params, state = layer.init(jax.random.key(0), xs[0].shape)
    apply = jax.jit(functools.partial(layer.apply, train=True))
    for x in xs:
        y, state = apply(params, state, jnp.asarray(x))
    return params, state, y


def test_default_dtype_is_float32():
    _, params, state = layers.batchnorm().init(None, (4, FEATURES))
    assert params["gamma"].dtype == params["beta"].dtype == jnp.float32
    assert state.mean.dtype == state.var.dtype == jnp.float32


def test_float64_statistics_equal_the_float64_formula_under_x64():
    with jax.enable_x64(True):
        layer = layers.batchnorm()  # dtype=None: float64 under x64
        xs = batches(np.float64)
        params, state, y = run_training(layer, xs)
        assert params["gamma"].dtype == state.mean.dtype == state.var.dtype == y.dtype == jnp.float64
        mean, var = ema_formula_float64(xs)
        np.testing.assert_allclose(state.mean, mean, rtol=1e-12, atol=0)
        np.testing.assert_allclose(state.var, var, rtol=1e-12, atol=0)
        # eval output: the float64 formula with those statistics
        y_eval, _ = layer.apply(params, state, jnp.asarray(xs[0]), train=False)
        expected = (xs[0] - mean) / np.sqrt(var + 1e-5)
        np.testing.assert_allclose(y_eval, expected, rtol=1e-12, atol=1e-12)


def test_low_precision_parameter_dtype_keeps_float32_statistics():
    _, params, state = layers.batchnorm(dtype=jnp.bfloat16).init(None, (4, FEATURES))
    assert params["gamma"].dtype == jnp.bfloat16
    assert state.mean.dtype == state.var.dtype == jnp.float32


@pytest.mark.parametrize("input_dtype", [jnp.bfloat16, jnp.float32])
def test_bfloat16_compute_keeps_float32_statistics(input_dtype):
    layer = layers.batchnorm(compute_dtype=jnp.bfloat16)
    xs = [x.astype(input_dtype) for x in batches(np.float32, mean=100.0)]
    params, state, y = run_training(layer, xs)
    assert params["gamma"].dtype == state.mean.dtype == state.var.dtype == jnp.float32
    assert y.dtype == jnp.bfloat16
    # statistics of the (bfloat16-rounded) inputs, computed in float32: mean 100 would lose
    # every digit of σ² if the statistics ran in bfloat16 (8 bits of mantissa)
    mean, var = ema_formula_float64([np.asarray(x, np.float64) for x in xs])
    np.testing.assert_allclose(state.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(state.var, var, rtol=1e-5)
    # the output is the float32 normalisation, rounded once to bfloat16
    last = np.asarray(xs[-1], np.float64)
    expected = (last - last.mean(0)) / np.sqrt(last.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, rtol=2**-8, atol=2**-8)
    y_eval, _ = layer.apply(params, state, jnp.asarray(xs[-1]), train=False)
    assert y_eval.dtype == jnp.bfloat16


def test_bfloat16_gradients_flow_in_input_dtype():
    layer = layers.batchnorm(compute_dtype=jnp.bfloat16)
    x = jnp.asarray(batches(np.float32)[0], jnp.bfloat16)
    _, params, state = layer.init(None, x.shape)

    def loss(params, x):
        y, _ = layer.apply(params, state, x, train=True)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    grads, dx = jax.grad(loss, argnums=(0, 1))(params, x)
    assert dx.dtype == jnp.bfloat16 and grads["gamma"].dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(dx, np.float32)))


@pytest.mark.parametrize("name", ["dtype", "compute_dtype"])
@pytest.mark.parametrize("value", [jnp.int32, "not-a-dtype"])
def test_non_float_dtype_is_a_clear_error(name, value):
    with pytest.raises(ValueError, match=name):
        layers.batchnorm(**{name: value})
