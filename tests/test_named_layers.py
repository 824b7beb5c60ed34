"""YAML model section: named layers (``model.<name>.<arg>`` in --set and search),
nested residual paths, duplicate names, ``model.compute_dtype`` and ``model.flat_params``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers
from functional_nn.experiment import build_model, ConfigError, parse_config
from functional_nn.experiment.loading import config_to_dict
from functional_nn.experiment.search import split_keys

LAYERS = [
    {"dense": {"out_dim": 16, "name": "hidden"}},
    "relu",
    {"residual": {"name": "res", "block": [{"dense": 16}, {"batchnorm": {"name": "bn"}}, "relu"]}},
    {"dropout": {"rate": 0.2, "name": "drop1"}},
    {"dense": 10},
]


def config(*overrides, model_layers=None, **model_keys):
    raw = {"model": {"layers": model_layers or LAYERS, **model_keys}, "training": {"batch_size": 8}}
    return parse_config(raw, overrides=list(overrides))


def test_named_and_positional_overrides_set_the_same_argument():
    by_name = config("model.drop1.rate=0.5")
    assert by_name == config("model.layers.3.rate=0.5")
    assert by_name.model.layers[3].args == {"rate": 0.5} and by_name.model.layers[3].name == "drop1"
    nested = config("model.bn.ema_decay=0.5")
    assert nested == config("model.layers.2.block.1.ema_decay=0.5")
    assert nested.model.layers[2].args["block"][1].args == {"ema_decay": 0.5}


def test_duplicate_and_invalid_names_are_errors_naming_the_key():
    twice = [*LAYERS[:4], {"dense": {"out_dim": 10, "name": "drop1"}}]
    with pytest.raises(ConfigError, match=r"model\.layers\.4\.name='drop1': duplicate layer name \(also model\.layers\.3\)"):
        config(model_layers=twice)
    with pytest.raises(ConfigError, match=r"model\.layers\.0\.name='layers': .*model key"):
        config(model_layers=[{"dense": {"out_dim": 3, "name": "layers"}}])
    with pytest.raises(ConfigError, match=r"model\.layers\.0\.name='a b': .*identifier"):
        config(model_layers=[{"dense": {"out_dim": 3, "name": "a b"}}])


def test_errors_name_a_named_layer_by_name_and_others_by_position():
    with pytest.raises(ConfigError, match=r"^model\.drop1\.rate=1\.5: "):
        config("model.drop1.rate=1.5")
    with pytest.raises(ConfigError, match=r"^model\.layers\.2\.block\.0\.out_dim=0 "):
        config("model.layers.2.block.0.out_dim=0")
    with pytest.raises(ConfigError, match=r"model\.bn\.momentum: unknown key"):
        config("model.bn.momentum=0.5")
    model = build_model(config(model_layers=[{"conv": {"out_channels": 4, "kernel_size": 3, "name": "c1"}}]).model)
    with pytest.raises(ValueError, match=r"serial layer 0 \(c1\): conv: input shape \(8, 5\)"):
        model.init(jax.random.key(0), (8, 5))


def test_search_keys_by_name_are_traced_like_positions():
    cfg = config()
    traced, structural = split_keys({"model.drop1.rate": [0.1, 0.3], "model.res.block.0.out_dim": [8, 16],
                                     "model.layers.2.block.1.eps": [1e-5, 1e-3]}, cfg.model)
    assert traced == {"model.drop1.rate": ("model", "layers.3.rate"),
                      "model.layers.2.block.1.eps": ("model", "layers.2.block.1.eps")}
    assert structural == ["model.res.block.0.out_dim"]
    grid = parse_config({**config_to_dict(cfg), "search": {"model.drop1.rate": [0.1, 0.3]}}).search
    assert grid == {"model.drop1.rate": [0.1, 0.3]}


def test_hparams_by_name_build_the_same_model_as_by_position():
    cfg = config()
    x = jax.random.normal(jax.random.key(0), (8, 5))
    outputs = []
    for hparams in ({"drop1.rate": 0.5, "bn.eps": 1e-2}, {"layers.3.rate": 0.5, "layers.2.block.1.eps": 1e-2}):
        model = build_model(cfg.model, hparams)
        _, params, state = model.init(jax.random.key(1), x.shape)
        outputs.append(model.apply(params, state, x, train=True, key=jax.random.key(2))[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    unchanged = build_model(cfg.model)
    _, params, state = unchanged.init(jax.random.key(1), x.shape)
    assert not np.array_equal(unchanged.apply(params, state, x, train=True, key=jax.random.key(2))[0], outputs[0])
    with pytest.raises(ConfigError, match=r"model\.drop2\.rate: unknown key"):
        build_model(cfg.model, {"drop2.rate": 0.1})


def test_resolved_config_round_trips_names_nesting_and_model_keys():
    cfg = config(compute_dtype="bfloat16", flat_params=True)
    assert parse_config(config_to_dict(cfg)) == cfg


def test_compute_dtype_reaches_every_layer_that_takes_it_and_outputs_are_float32():
    """The built model equals the Python composition with compute_dtype on dense and batchnorm."""
    cfg = config(compute_dtype="bfloat16")
    bf16 = "bfloat16"
    reference = layers.serial(
        layers.dense(16, compute_dtype=bf16), layers.relu,
        layers.residual([layers.dense(16, compute_dtype=bf16), layers.batchnorm(compute_dtype=bf16), layers.relu]),
        layers.dropout(0.2), layers.dense(10, compute_dtype=bf16))
    model = build_model(cfg.model)
    x = jax.random.normal(jax.random.key(0), (8, 5))
    _, params, state = model.init(jax.random.key(1), x.shape)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    y, _ = model.apply(params, state, x, train=False)
    y_ref, _ = reference.apply(params, state, x, train=False)
    assert y.dtype == jnp.float32 and y_ref.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, y_ref.astype(jnp.float32))
    with pytest.raises(ConfigError, match=r"model\.compute_dtype='int8'"):
        config(compute_dtype="int8")


def test_flat_params_wraps_the_model_and_refuses_per_name_rules():
    cfg, flat = config(), config(flat_params=True)
    x = jax.random.normal(jax.random.key(0), (8, 5))
    _, params, state = build_model(cfg.model).init(jax.random.key(1), x.shape)
    _, flat_params, flat_state = build_model(flat.model).init(jax.random.key(1), x.shape)
    assert isinstance(flat_params, layers.FlatParams) and len(jax.tree.leaves(flat_params)) == 1
    np.testing.assert_array_equal(build_model(cfg.model).apply(params, state, x, train=False)[0],
                                  build_model(flat.model).apply(flat_params, flat_state, x, train=False)[0])
    with pytest.raises(ConfigError, match=r"model\.flat_params=True: optimizer\.decay_mask='weights'"):
        config("optimizer.l2=1e-4", flat_params=True)
    with pytest.raises(ConfigError, match=r"model\.flat_params=True: optimizer\.clip_by_norm"):
        config("optimizer.clip_by_norm=1.0", flat_params=True)
    config("optimizer.l2=1e-4", "optimizer.decay_mask=all", flat_params=True)  # every leaf: fine
