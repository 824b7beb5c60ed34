"""Layer/serial, dense and its initializers, activations, flatten."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers


def test_dense_shapes_and_affine_map_match_numpy():
    layer = layers.dense(5)
    out_shape, params, state = layer.init(jax.random.key(0), (3, 4, 7))
    assert out_shape == (3, 4, 5) and state == ()
    assert params["w"].shape == (7, 5) and params["b"].shape == (5,)
    params = {"w": params["w"], "b": jnp.arange(5.0)}
    x = np.random.default_rng(0).standard_normal((3, 4, 7)).astype(np.float32)
    y, _ = layer.apply(params, state, x, train=True)
    expected = x.astype(np.float64) @ np.asarray(params["w"], np.float64) + np.arange(5.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["lecun_normal", "lecun_uniform", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]
)
def test_named_initializers_are_jax_variance_scaling(name):
    reference = getattr(jax.nn.initializers, name)()
    _, params, _ = layers.dense(6, w_init=name).init(jax.random.key(1), (2, 4))
    w_key, _ = jax.random.split(jax.random.key(1))
    np.testing.assert_array_equal(params["w"], reference(w_key, (4, 6), jnp.float32))
    np.testing.assert_array_equal(params["b"], np.zeros(6))


def test_he_uniform_has_the_he_variance():
    _, params, _ = layers.dense(400, w_init="he_uniform").init(jax.random.key(2), (1, 300))
    np.testing.assert_allclose(np.var(np.asarray(params["w"])), 2.0 / 300, rtol=0.02)


def test_callable_initializer_and_errors():
    _, params, _ = layers.dense(3, w_init=jax.nn.initializers.ones, b_init="ones").init(jax.random.key(0), (1, 2))
    np.testing.assert_array_equal(params["w"], np.ones((2, 3)))
    np.testing.assert_array_equal(params["b"], np.ones(3))
    with pytest.raises(ValueError, match="initializer"):
        layers.dense(3, w_init="kaiming")
    with pytest.raises(ValueError, match="out_dim"):
        layers.dense(0)


ACTIVATIONS = {
    "relu": (layers.relu, lambda x: np.maximum(x, 0)),
    "sigmoid": (layers.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (layers.tanh, np.tanh),
    "softplus": (layers.softplus, lambda x: np.log1p(np.exp(x))),
    "softmax": (layers.softmax, lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    "log_softmax": (layers.log_softmax, lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
    "gelu": (layers.gelu, lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layers_match_formulas(name):
    layer, formula = ACTIVATIONS[name]
    assert isinstance(layer, layers.Layer) and layer() is layer  # usable as `relu` or `relu()`
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    out_shape, params, state = layer.init(None, x.shape)
    assert out_shape == x.shape and params == () and state == ()
    y, _ = layer.apply(params, state, jnp.asarray(x, jnp.float32), train=False)
    np.testing.assert_allclose(y, formula(x), rtol=1e-5, atol=1e-6)


def test_flatten():
    layer = layers.flatten()
    out_shape, _, _ = layer.init(None, (2, 3, 4, 5))
    x = jnp.arange(120.0).reshape(2, 3, 4, 5)
    y, _ = layer.apply((), (), x, train=False)
    assert out_shape == (2, 60) and y.shape == (2, 60)
    np.testing.assert_array_equal(y, np.arange(120.0).reshape(2, 60))


# ---------------------------------------------------------------- serial

MODEL = layers.serial(
    layers.dense(8), layers.batchnorm(), layers.relu, layers.dropout(0.5), layers.dense(8), layers.dropout(0.5), layers.dense(3)
)
SHAPE = (6, 4)
train_apply = jax.jit(functools.partial(MODEL.apply, train=True))
eval_apply = jax.jit(functools.partial(MODEL.apply, train=False))


@pytest.fixture(scope="module")
def model_init():
    return jax.jit(MODEL.init, static_argnums=1)(jax.random.key(0), SHAPE)


@functools.partial(jax.jit, static_argnums=3)
def manual_forward(params, state, x, train, key):
    """The same network written out layer by layer, with key k_i = split(key, 7)[i]."""
    keys = jax.random.split(key, 7) if key is not None else [None] * 7
    h = x @ params[0]["w"] + params[0]["b"]
    if train:
        h, mu, var = layers.batch_normalize(h, params[1]["gamma"], params[1]["beta"])
        b = h.shape[0]
        bn_state = state[1]._replace(
            mean=0.9 * state[1].mean + 0.1 * mu, var=0.9 * state[1].var + 0.1 * var * b / (b - 1), count=state[1].count + 1
        )
    else:
        h = layers.normalize(h, state[1].mean, state[1].var, params[1]["gamma"], params[1]["beta"])
        bn_state = state[1]
    h = jnp.maximum(h, 0)
    if train:
        h = jnp.where(layers.dropout.keep_mask(keys[3], 0.5, h.shape), h / 0.5, 0)
    h = h @ params[4]["w"] + params[4]["b"]
    if train:
        h = jnp.where(layers.dropout.keep_mask(keys[5], 0.5, h.shape), h / 0.5, 0)
    return h @ params[6]["w"] + params[6]["b"], bn_state


def test_serial_init_structure(model_init):
    out_shape, params, state = model_init
    assert out_shape == (6, 3)
    assert len(params) == len(state) == 7
    assert params[2] == params[3] == () and state[0] == state[2] == state[3] == ()
    assert isinstance(state[1], layers.BatchNormState)
    keys = jax.random.split(jax.random.key(0), 7)
    np.testing.assert_array_equal(params[0]["w"], layers.dense(8).init(keys[0], SHAPE)[1]["w"])


def test_serial_train_mode_under_jit_splits_keys_and_threads_state(model_init):
    _, params, state = model_init
    x = jax.random.normal(jax.random.key(1), SHAPE)
    key = jax.random.key(2)
    y, new_state = train_apply(params, state, x, key=key)
    y_manual, bn_state = manual_forward(params, state, x, True, key)
    np.testing.assert_allclose(y, y_manual, rtol=1e-5, atol=1e-5)
    for a, e in zip(new_state[1], bn_state):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    # the state is threaded: a second step folds in a second batch
    _, newer_state = train_apply(params, new_state, x, key=key)
    assert int(newer_state[1].count) == 2
    # different keys give different dropout masks
    y_other, _ = train_apply(params, state, x, key=jax.random.key(3))
    assert not np.allclose(y, y_other)


def test_serial_eval_mode_under_jit_needs_no_key(model_init):
    _, params, state = model_init
    x = jax.random.normal(jax.random.key(1), SHAPE)
    _, state = train_apply(params, state, x, key=jax.random.key(2))
    y, same_state = eval_apply(params, state, x)
    y_manual, _ = manual_forward(params, state, x, False, None)
    np.testing.assert_allclose(y, y_manual, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(same_state[1].mean, state[1].mean)


def test_serial_errors():
    with pytest.raises(TypeError, match="Layer"):
        layers.serial(layers.dense(2), jax.nn.relu)
    model = layers.serial(layers.dense(2), layers.relu)
    _, params, state = model.init(jax.random.key(0), (1, 3))
    with pytest.raises(ValueError, match="one entry per layer"):
        model.apply(params[:1], state, jnp.ones((1, 3)), train=False)


def test_serial_names_the_failing_layer_index_and_both_shapes():
    model = layers.serial(layers.dense(7), layers.relu, layers.dense(3))
    params = ({"w": jnp.ones((4, 7)), "b": jnp.zeros(7)}, (), {"w": jnp.ones((5, 3)), "b": jnp.zeros(3)})
    state = ((), (), ())
    with pytest.raises(ValueError, match=r"^serial layer 2 \(dense\): input has 7 features, params expect 5 "
                                         r"\(input shape \(2, 7\), w shape \(5, 3\)\)"):
        jax.eval_shape(lambda p, x: model.apply(p, state, x, train=False), params, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"^serial layer 1 \(conv\): input shape \(2, 64\) has rank 2; expected rank 4"):
        layers.serial(layers.dense(64), layers.conv(4, 3)).init(jax.random.key(0), (2, 3))
    nested = layers.serial(layers.reshape((4, 4, 1)), layers.serial(layers.flatten(), layers.max_pool(2)))
    with pytest.raises(ValueError, match=r"^serial layer 1 > layer 1 \(max_pool\): input shape \(2, 16\) has rank 2"):
        nested.init(None, (2, 16))


def test_dense_wrong_width_names_the_layer_and_both_shapes():
    params = {"w": jnp.ones((5, 3)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match=r"dense: input has 7 features, params expect 5 \(input shape \(2, 7\), "
                                         r"w shape \(5, 3\)\)"):
        layers.dense(3).apply(params, (), jnp.ones((2, 7)), train=False)


def test_reshape_per_example():
    layer = layers.reshape((8, 8, 1))
    x = jnp.arange(2 * 64.0).reshape(2, 64)
    out_shape, params, state = layer.init(None, x.shape)
    y, _ = layer.apply(params, state, x, train=False)
    assert out_shape == y.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(y, np.arange(128.0).reshape(2, 8, 8, 1))
    assert layers.reshape((-1, 2)).init(None, (3, 4, 5))[0] == (3, 10, 2)
    assert layers.reshape(12).init(None, (3, 4, 3))[0] == (3, 12)
    with pytest.raises(ValueError, match=r"reshape: input shape \(2, 63\) cannot be reshaped to \(batch, \*\(8, 8, 1\)\)"):
        layer.init(None, (2, 63))
    for bad in [(0, 2), (-1, -1), (), "8x8", (2.0, 3)]:
        with pytest.raises(ValueError, match="shape="):
            layers.reshape(bad)


# ---------------------------------------------------------------- every registered layer

#: (constructor arguments, input shape) per registered layer name; every name must be here.
EVERY_LAYER = {
    "dense": [((4,), {}, (3, 5))],
    "relu": [(None, None, (3, 5))], "sigmoid": [(None, None, (3, 5))], "tanh": [(None, None, (3, 5))],
    "gelu": [(None, None, (3, 5))], "softplus": [(None, None, (3, 5))], "softmax": [(None, None, (3, 5))],
    "log_softmax": [(None, None, (3, 5))],
    "flatten": [((), {}, (2, 3, 4, 5))],
    "reshape": [(((4, -1),), {}, (2, 3, 4))],
    "batchnorm": [((), {}, (4, 3, 3, 2))],
    "dropout": [((0.5,), {}, (4, 6))],
    "conv": [((3, 3), {"strides": 2}, (2, 5, 6, 2)), ((3, (3,)), {"padding": "VALID", "dilation": 2}, (2, 9, 2)),
             ((4, (2, 2, 2)), {"groups": 2, "padding": 1}, (1, 3, 4, 3, 2))],
    "layernorm": [((), {}, (2, 3, 5))],
    "residual": [(([layers.conv(2, 3), layers.relu],), {"shortcut": layers.conv(2, 1)}, (2, 5, 5, 3))],
    "max_pool": [((2,), {}, (2, 5, 5, 3)), ((3,), {"strides": 2, "padding": "SAME"}, (2, 6, 3))],
    "avg_pool": [(((2, 3),), {"padding": ((1, 0), (0, 2))}, (2, 5, 5, 3))],
    "global_avg_pool": [((), {}, (2, 4, 3, 5))],
}
LAYER_CASES = [(name, i) for name in sorted(EVERY_LAYER) for i in range(len(EVERY_LAYER[name]))]


def test_every_registered_layer_has_a_shape_case():
    assert set(layers.LAYERS.names()) == set(EVERY_LAYER)


@pytest.mark.parametrize("name, index", LAYER_CASES)
def test_init_shape_equals_apply_shape(name, index):
    args, kwargs, input_shape = EVERY_LAYER[name][index]
    entry = layers.LAYERS[name]
    layer = entry.value(*args, **kwargs) if entry.is_constructor else entry.value
    shapes = []

    def init(key):
        out_shape, params, state = layer.init(key, input_shape)
        shapes.append(out_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    for train in (True, False):
        y, new_state = jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, train=train, key=jax.random.key(1)),
                                      params, state, jax.ShapeDtypeStruct(input_shape, jnp.float32))
        assert tuple(shapes[0]) == y.shape
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_layer_names_used_in_errors():
    named = {"dense": layers.dense(2), "conv": layers.conv(2, 3), "max_pool": layers.max_pool(2),
             "avg_pool": layers.avg_pool(2), "relu": layers.relu, "identity": layers.identity,
             "layernorm": layers.layernorm(), "residual": layers.residual(layers.relu), "serial": layers.serial()}
    assert {name: layers.layer_name(layer) for name, layer in named.items()} == {name: name for name in named}
