"""dtype policy: dtype=None is JAX's default float; compute_dtype runs inputs and matmul/conv in low precision."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers

PARAM_LAYERS = {
    "dense": (lambda **kw: layers.dense(3, **kw), (2, 4)),
    "conv": (lambda **kw: layers.conv(3, 2, padding="VALID", **kw), (2, 4, 4, 2)),
    "layernorm": (lambda **kw: layers.layernorm(**kw), (2, 5)),
}


def traced_params(layer, input_shape):
    return jax.eval_shape(lambda key: layer.init(key, input_shape)[1], jax.random.key(0))


def equations(jaxpr):
    """Every equation of a jaxpr, including those of nested jaxprs (pjit, custom_jvp, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from equations(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from equations(sub)


def operand_dtypes(fn, *args, primitive: str):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [tuple(v.aval.dtype for v in eqn.invars) for eqn in equations(jaxpr) if eqn.primitive.name == primitive]


@pytest.mark.parametrize("name", sorted(PARAM_LAYERS))
def test_default_dtype_is_float32_and_float64_under_x64(name):
    build, shape = PARAM_LAYERS[name]
    layer = build()  # constructed outside: the default is read at init
    assert {p.dtype for p in jax.tree.leaves(traced_params(layer, shape))} == {jnp.dtype("float32")}
    with jax.enable_x64(True):
        assert {p.dtype for p in jax.tree.leaves(traced_params(layer, shape))} == {jnp.dtype("float64")}
    assert {p.dtype for p in jax.tree.leaves(traced_params(build(dtype="bfloat16"), shape))} == {jnp.dtype("bfloat16")}


def test_float64_network_matches_a_float64_numpy_reference():
    """reshape → conv (2×2 VALID) → layernorm → flatten → dense, every step written out in NumPy."""
    model = layers.serial(layers.reshape((3, 3, 2)), layers.conv(4, 2, padding="VALID"), layers.layernorm(),
                          layers.flatten(), layers.dense(3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 18))
    with jax.enable_x64(True):
        params, state = jax.eval_shape(lambda key: model.init(key, x.shape)[1:], jax.random.key(0))
        assert all(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
        params = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
        y, _ = jax.jit(lambda p, x: model.apply(p, state, x, train=False))(params, jnp.asarray(x))
    assert y.dtype == jnp.float64
    p = jax.tree.map(np.asarray, params)
    h = x.reshape(2, 3, 3, 2)
    conv = np.zeros((2, 2, 2, 4))
    for i in range(2):
        for j in range(2):
            conv[:, i, j] = np.einsum("bhwc,hwco->bo", h[:, i:i + 2, j:j + 2], p[1]["w"]) + p[1]["b"]
    mean, var = conv.mean(-1, keepdims=True), conv.var(-1, keepdims=True)
    normed = p[2]["gamma"] * (conv - mean) / np.sqrt(var + 1e-5) + p[2]["beta"]
    expected = normed.reshape(2, -1) @ p[4]["w"] + p[4]["b"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, primitive", [("dense", "dot_general"), ("conv", "conv_general_dilated")])
def test_bfloat16_compute_runs_the_matmul_in_bfloat16_with_float32_params(name, primitive):
    build, shape = PARAM_LAYERS[name]
    layer = build(compute_dtype="bfloat16")
    params = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(1).standard_normal(p.shape), p.dtype),
                          traced_params(layer, shape))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    x = jnp.asarray(np.random.default_rng(2).standard_normal(shape), jnp.float32)

    def forward(params, x):
        return layer.apply(params, (), x, train=True)[0]

    assert operand_dtypes(forward, params, x, primitive=primitive) == [(jnp.bfloat16, jnp.bfloat16)]
    y = forward(params, x)
    y32 = build().apply(params, (), x, train=True)[0]
    assert y.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float32), y32, rtol=3e-2, atol=3e-2)
    # gradients reach the float32 params in float32
    grads = jax.grad(lambda p: jnp.sum(forward(p, x).astype(jnp.float32)))(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_bfloat16_layernorm_keeps_its_statistics_in_float32():
    layer = layers.layernorm(compute_dtype="bfloat16")
    params = {"gamma": jnp.full(6, 2.0), "beta": jnp.full(6, 0.5)}
    x = jnp.asarray(100 + np.random.default_rng(3).standard_normal((4, 6)), jnp.float32)

    def forward(x):
        return layer.apply(params, (), x, train=False)[0]

    sums = operand_dtypes(forward, x, primitive="reduce_sum")
    assert sums and all(dtypes == (jnp.float32,) for dtypes in sums)
    y = forward(x)
    assert y.dtype == jnp.bfloat16 and params["gamma"].dtype == jnp.float32
    x_bf16 = np.asarray(x.astype(jnp.bfloat16), np.float64)  # what the layer sees
    mean, var = x_bf16.mean(-1, keepdims=True), x_bf16.var(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(y, np.float32), 2 * (x_bf16 - mean) / np.sqrt(var + 1e-5) + 0.5,
                               rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("name", sorted(PARAM_LAYERS))
def test_dtype_arguments_are_checked(name):
    build, _ = PARAM_LAYERS[name]
    with pytest.raises(TypeError, match="dtype='float99'"):
        build(dtype="float99")
    with pytest.raises(TypeError, match="compute_dtype='int32'"):
        build(compute_dtype="int32")
