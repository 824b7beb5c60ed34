"""flat_params: one buffer per dtype, exact round trip, same outputs/gradients, and the same
Adam trajectory as the per-leaf model (to float32 rounding)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers, optim
from functional_nn.layers import FlatParams, flat_params, ravel_by_dtype, unravel
from functional_nn.losses import softmax_cross_entropy
from functional_nn.train import init_train_state, make_train_epoch
from functional_nn.train.checkpoint import load_pytrees, save_pytrees

BATCH, FEATURES, CLASSES = 16, 12, 4


def mlp():
    # batch norm after the ReLU: a bias right before batch norm has gradient 0 up to rounding
    # noise, which Adam's m/√v amplifies to ±lr (chaotic, in either form)
    return layers.serial(
        layers.dense(32), layers.relu, layers.batchnorm(), layers.dropout(0.25),
        layers.dense(16), layers.relu, layers.dense(CLASSES),
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4 * BATCH, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, len(x)).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def test_round_trip_is_exact_with_one_buffer_per_dtype():
    tree = {
        "a": jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
        "b": (jnp.ones((4,), jnp.bfloat16), jnp.arange(3, dtype=jnp.int32)),
        "c": jnp.full((2, 2, 2), 7.0, jnp.float32),
        "d": jnp.float32(3.5),
    }
    flat = ravel_by_dtype(tree)
    assert flat.layout.dtypes == ("float32", "bfloat16", "int32")
    assert [b.shape for b in flat.buffers] == [(6 + 8 + 1,), (4,), (3,)]
    back = unravel(flat)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, e in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)
    # a pytree with one leaf per buffer: what an optimizer maps over
    assert len(jax.tree.leaves(flat)) == 3


def test_outputs_state_and_gradients_equal_the_per_leaf_model(data):
    x, _ = data
    model, flat_model = mlp(), flat_params(mlp())
    key = jax.random.key(0)
    _, params, state = model.init(key, x.shape)
    _, flat, flat_state = flat_model.init(key, x.shape)
    assert isinstance(flat, FlatParams) and len(flat.buffers) == 1
    jax.tree.map(np.testing.assert_array_equal, unravel(flat), params)

    def loss(model, params):
        y, new_state = model.apply(params, state, x, train=True, key=jax.random.key(1))
        return jnp.sum(jnp.tanh(y)), new_state

    (value, new_state), grads = jax.jit(jax.value_and_grad(functools.partial(loss, model), has_aux=True))(params)
    (flat_value, flat_new_state), flat_grads = jax.jit(
        jax.value_and_grad(functools.partial(loss, flat_model), has_aux=True))(flat)
    np.testing.assert_allclose(flat_value, value, rtol=1e-6)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7), flat_new_state, new_state)
    assert isinstance(flat_grads, FlatParams)
    # ∂/∂buffer is the per-leaf gradients, concatenated in tree order
    np.testing.assert_allclose(flat_grads.buffers[0], ravel_by_dtype(grads).buffers[0], rtol=1e-5, atol=1e-7)


def test_adam_trajectory_equals_per_leaf_to_float32_rounding(data):
    x, y = data
    optimizer = optim.adam(1e-2)
    results = []
    for model in (mlp(), flat_params(mlp())):
        state = init_train_state(model, optimizer, jax.random.key(3), (BATCH, FEATURES))
        epoch = make_train_epoch(model, softmax_cross_entropy, optimizer, BATCH)
        for _ in range(2):  # 2 epochs x 4 steps, jitted scan with donation
            state, metrics = epoch(state, x, y)
        results.append((state, metrics))
    (per_leaf, per_leaf_metrics), (flat, flat_metrics) = results
    assert len(jax.tree.leaves(flat.opt_state)) < len(jax.tree.leaves(per_leaf.opt_state))
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), unravel(flat.params), per_leaf.params)
    # the optimizer state holds FlatParams too (μ and ν of Adam): compare them leaf by leaf
    is_flat = lambda node: isinstance(node, FlatParams)  # noqa: E731
    flat_moments = [unravel(n) for n in jax.tree.leaves(flat.opt_state, is_leaf=is_flat) if is_flat(n)]
    assert len(flat_moments) == 2
    per_leaf_leaves = jax.tree.leaves(per_leaf.opt_state)
    flat_leaves = jax.tree.leaves(jax.tree.map(lambda n: unravel(n) if is_flat(n) else n, flat.opt_state, is_leaf=is_flat))
    for a, e in zip(flat_leaves, per_leaf_leaves, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-8)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7), flat.model_state, per_leaf.model_state)
    np.testing.assert_allclose(flat_metrics["loss"], per_leaf_metrics["loss"], rtol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    flat = ravel_by_dtype({"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)})
    path = tmp_path / "flat.ckpt"
    save_pytrees(str(path), {"params": flat})
    trees, _ = load_pytrees(str(path), {"params": flat})
    restored = trees["params"]
    assert isinstance(restored, FlatParams) and restored.layout == flat.layout
    np.testing.assert_array_equal(restored.buffers[0], flat.buffers[0])


def test_not_a_layer_list_entry_and_rejects_a_non_layer():
    # a wrapper of a whole model (the config's model.flat_params switch), not a layer of a list
    assert "flat_params" not in layers.LAYERS
    with pytest.raises(TypeError, match="model"):
        flat_params("dense")
    with pytest.raises(TypeError, match="FlatParams"):
        unravel({"w": jnp.ones(2)})
