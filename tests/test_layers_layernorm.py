"""layernorm against its formula in float64, jax.grad of the naive form, finite differences; stability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers

EPS = 1e-5


def formula(x, gamma, beta, eps=EPS):
    """y = γ (x - μ) / √(σ² + ε) + β over the last axis, float64 NumPy."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def naive(x, gamma, beta, eps=EPS):
    """The same formula in jnp, differentiated by autodiff (the reference for the gradients)."""
    return gamma * (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + eps) + beta


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 5)) * 2 + 1
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    cotangent = rng.standard_normal(x.shape)
    return x, gamma, beta, cotangent


def test_init_and_float32_forward(data):
    x, gamma, beta, _ = data
    layer = layers.layernorm()
    out_shape, params, state = layer.init(None, x.shape)
    assert out_shape == x.shape and state == ()
    np.testing.assert_array_equal(params["gamma"], np.ones(5))
    np.testing.assert_array_equal(params["beta"], np.zeros(5))
    assert params["gamma"].dtype == jnp.float32
    params = {"gamma": jnp.asarray(gamma, jnp.float32), "beta": jnp.asarray(beta, jnp.float32)}
    y, _ = layer.apply(params, (), jnp.asarray(x, jnp.float32), train=True)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, formula(x.astype(np.float32).astype(np.float64), gamma, beta), rtol=1e-5, atol=1e-5)


def test_float64_forward_and_gradients_match_formula_autodiff_and_finite_differences(data):
    x, gamma, beta, cotangent = data
    layer = layers.layernorm()
    with jax.enable_x64(True):
        _, params, _ = layer.init(None, x.shape)
        assert params["gamma"].dtype == jnp.float64

        def loss(x, gamma, beta):
            return jnp.sum(layer.apply({"gamma": gamma, "beta": beta}, (), x, train=True)[0] * cotangent)

        def naive_loss(x, gamma, beta):
            return jnp.sum(naive(x, gamma, beta) * cotangent)

        @jax.jit
        def compute(x, gamma, beta):
            y = layer.apply({"gamma": gamma, "beta": beta}, (), x, train=False)[0]
            return y, jax.grad(loss, (0, 1, 2))(x, gamma, beta), jax.grad(naive_loss, (0, 1, 2))(x, gamma, beta)

        y, grads, naive_grads = compute(x, gamma, beta)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y, formula(x, gamma, beta), rtol=1e-12, atol=1e-12)
        for ours, reference in zip(grads, naive_grads):
            np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)

        # central differences of the layer itself, one coordinate of x, γ or β per step
        jitted_loss, h = jax.jit(loss), 1e-6
        for argnum, value in enumerate((x, gamma, beta)):
            fd = np.zeros(value.shape)
            for index in np.ndindex(*value.shape):
                step = np.zeros(value.shape)
                step[index] = h
                plus = [x, gamma, beta]
                minus = [x, gamma, beta]
                plus[argnum], minus[argnum] = value + step, value - step
                fd[index] = (float(jitted_loss(*plus)) - float(jitted_loss(*minus))) / (2 * h)
            np.testing.assert_allclose(grads[argnum], fd, rtol=1e-6, atol=1e-7)


def test_two_pass_statistics_are_stable_at_mean_1e4_in_float32():
    rng = np.random.default_rng(1)
    x32 = (1e4 + rng.standard_normal((8, 16))).astype(np.float32)
    x = x32.astype(np.float64)  # the reference sees exactly the float32 input
    params = {"gamma": jnp.ones(16), "beta": jnp.zeros(16)}
    y, _ = layers.layernorm().apply(params, (), jnp.asarray(x32), train=False)
    expected = formula(x, 1.0, 0.0)
    np.testing.assert_allclose(y, expected, atol=5e-3)
    # the one-pass form E[x²] - E[x]² in float32 fails here, which is what the test guards against
    one_pass_var = np.mean(x32 * x32, -1, keepdims=True) - np.mean(x32, -1, keepdims=True) ** 2
    one_pass = (x32 - x32.mean(-1, keepdims=True)) / np.sqrt(np.maximum(one_pass_var, 0) + np.float32(EPS))
    assert np.max(np.abs(one_pass - expected)) > 0.1


def test_errors_name_the_argument_or_the_layer():
    with pytest.raises(ValueError, match="eps=-1"):
        layers.layernorm(eps=-1.0)
    with pytest.raises(TypeError, match="dtype='int32'"):
        layers.layernorm(dtype="int32")
    params = {"gamma": jnp.ones(5), "beta": jnp.zeros(5)}
    with pytest.raises(ValueError, match=r"layernorm: input has 4 features, params expect 5 \(input shape \(2, 4\)"):
        layers.layernorm().apply(params, (), jnp.ones((2, 4)), train=False)
