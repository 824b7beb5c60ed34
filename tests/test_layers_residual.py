"""residual: y = block(x) + shortcut(x), params/state of both threaded, key split per branch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers

SHAPE = (4, 5, 5, 2)
BLOCK = [layers.conv(2, 3, w_init="he_uniform"), layers.batchnorm(), layers.relu, layers.dropout(0.5)]
SHORTCUT = [layers.conv(2, 1, w_init="he_uniform"), layers.dropout(0.5)]
MODEL = layers.residual(BLOCK, SHORTCUT)


@pytest.fixture(scope="module")
def initialised():
    shapes = []

    def init(key):
        out_shape, params, state = MODEL.init(key, SHAPE)
        shapes.append(out_shape)
        return params, state

    params, state = jax.jit(init)(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(SHAPE), jnp.float32)
    return shapes[0], params, state, x


def test_init_splits_the_key_per_branch(initialised):
    out_shape, params, state, _ = initialised
    assert out_shape == SHAPE and set(params) == set(state) == {"block", "shortcut"}

    @jax.jit
    def branch_params(key):
        block_key, shortcut_key = jax.random.split(key)
        return layers.serial(*BLOCK).init(block_key, SHAPE)[1], layers.serial(*SHORTCUT).init(shortcut_key, SHAPE)[1]

    block_params, shortcut_params = branch_params(jax.random.key(0))
    np.testing.assert_array_equal(params["block"][0]["w"], block_params[0]["w"])
    np.testing.assert_array_equal(params["shortcut"][0]["w"], shortcut_params[0]["w"])
    assert isinstance(state["block"][1], layers.BatchNormState)


def test_apply_is_the_sum_of_the_branches_and_threads_batchnorm_state(initialised):
    _, params, state, x = initialised
    key = jax.random.key(1)

    @jax.jit
    def both(params, state, x, key):
        y, new_state = MODEL.apply(params, state, x, train=True, key=key)
        block_key, shortcut_key = jax.random.split(key)
        y_block, block_state = layers.serial(*BLOCK).apply(params["block"], state["block"], x, train=True, key=block_key)
        y_short, _ = layers.serial(*SHORTCUT).apply(params["shortcut"], state["shortcut"], x, train=True,
                                                    key=shortcut_key)
        return y, new_state, y_block + y_short, block_state

    y, new_state, expected, block_state = both(params, state, x, key)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    bn_state = new_state["block"][1]
    assert int(bn_state.count) == 1
    for ours, reference in zip(bn_state, block_state[1]):
        np.testing.assert_array_equal(ours, reference)
    # the running mean moved towards the batch mean of the conv output that batch norm saw
    h = layers.conv.convolve(params["block"][0], x)
    np.testing.assert_allclose(bn_state.mean, 0.1 * np.asarray(h).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    # found by the model-level helpers
    counts = []
    layers.map_batchnorm_states(lambda s: counts.append(int(s.count)) or s, new_state)
    assert counts == [1]


def test_gradient_of_the_sum_is_the_sum_of_the_gradients(initialised):
    _, params, state, x = initialised
    cotangent = jnp.asarray(np.random.default_rng(2).standard_normal(SHAPE), jnp.float32)
    block, shortcut = layers.serial(*BLOCK[:3]), SHORTCUT[0]
    model = layers.residual(block, shortcut)
    params = {"block": params["block"][:3], "shortcut": params["shortcut"][0]}
    state = {"block": state["block"][:3], "shortcut": ()}

    def loss(params, x, layer, state):
        return jnp.sum(layer.apply(params, state, x, train=True)[0] * cotangent)

    @jax.jit
    def gradients(params, x):
        whole = jax.grad(loss, (0, 1))(params, x, model, state)
        of_block = jax.grad(loss, (0, 1))(params["block"], x, block, state["block"])
        of_shortcut = jax.grad(loss, (0, 1))(params["shortcut"], x, shortcut, ())
        return whole, of_block, of_shortcut

    (d_params, d_x), (d_block, d_x_block), (d_shortcut, d_x_shortcut) = gradients(params, x)
    np.testing.assert_allclose(d_x, d_x_block + d_x_shortcut, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), d_params["block"], d_block)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), d_params["shortcut"], d_shortcut)


def test_identity_shortcut_and_errors():
    layer = layers.residual(layers.dense(3))
    out_shape, params, state = layer.init(jax.random.key(0), (2, 3))
    assert out_shape == (2, 3) and params["shortcut"] == () and state == {"block": (), "shortcut": ()}
    x = jnp.arange(6.0).reshape(2, 3)
    y, _ = layer.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, x @ params["block"]["w"] + params["block"]["b"] + x, rtol=1e-6)
    with pytest.raises(ValueError, match=r"residual: block output shape \(2, 4\) differs from shortcut output shape \(2, 3\)"):
        layers.residual(layers.dense(4)).init(jax.random.key(0), (2, 3))
    with pytest.raises(TypeError, match="block="):
        layers.residual(jax.nn.relu)
    with pytest.raises(TypeError, match="shortcut="):
        layers.residual(layers.relu, shortcut=[])
