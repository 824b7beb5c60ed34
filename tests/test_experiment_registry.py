"""The config reads names, argument lists, types and ranges from the library's
registries: a constructor registered once is usable from YAML, and its own
checks are reported under the YAML key."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from functional_nn import experiment as cfg
from functional_nn import layers as nn
from functional_nn import losses, optim
from functional_nn.data.datasets import DATASETS, STANDARDIZE_MODES
from functional_nn.experiment import ConfigError
from functional_nn.layers import LAYERS, Layer

RAW = {
    "name": "registry",
    "data": {"name": "spirals", "n": 30, "num_classes": 3},
    "model": {"layers": [{"dense": 4}, {"scale": 3.0}, {"dense": 3}]},
    "training": {"epochs": 1, "batch_size": 8},
}


PLAIN = {**RAW, "model": {"layers": [{"dense": 4}, "relu", {"dense": 3}]}}


def scale(factor: float, *, offset: float = 0.0) -> Layer:
    """y = factor * x + offset; a throwaway layer for the test."""
    if not factor > 0:
        raise ValueError(f"factor={factor!r}: must be in (0, inf)")

    def init(key, input_shape):
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, train, key=None):
        return factor * x + offset, state

    return Layer(init, apply)


@pytest.fixture
def registered_scale(monkeypatch):
    """``scale`` registered in ``LAYERS`` for one test (the registry is restored after)."""
    monkeypatch.setattr(LAYERS, "_entries", dict(LAYERS._entries))
    LAYERS.register(scale)
    return scale


def test_a_registered_layer_is_usable_from_yaml(registered_scale):
    config = cfg.parse_config(RAW, overrides=["model.layers.1.offset=0.5"])
    assert config.model.layers[1].type == "scale"
    assert config.model.layers[1].args == {"factor": 3.0, "offset": 0.5}
    model = cfg.build_model(config.model)
    x = np.linspace(-1.0, 1.0, 10, dtype=np.float32).reshape(5, 2)
    _, params, state = model.init(jax.random.key(0), x.shape)
    y, _ = model.apply(params, state, x, train=False)
    dense_in, dense_out = params[0], params[2]
    hidden = (x.astype(np.float64) @ np.asarray(dense_in["w"], np.float64) + np.asarray(dense_in["b"], np.float64)) * 3.0 + 0.5
    expected = hidden @ np.asarray(dense_out["w"], np.float64) + np.asarray(dense_out["b"], np.float64)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)


def test_a_registered_layers_own_checks_and_types_name_the_yaml_key(registered_scale):
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.factor=-1\.0: must be in \(0, inf\)"):
        cfg.parse_config(RAW, overrides=["model.layers.1.factor=-1"])
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.offset='x': must be a number"):
        cfg.parse_config(RAW, overrides=["model.layers.1.offset=x"])
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.facter: unknown key; did you mean 'factor'\?"):
        cfg.parse_config(RAW, overrides=["model.layers.1={scale: {facter: 2.0}}"])
    with pytest.raises(ConfigError, match=r"model\.layers\.1: scale needs 'factor'"):
        cfg.parse_config(RAW, overrides=["model.layers.1={type: scale}"])


def test_an_unregistered_layer_is_unknown():
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.type='scale': unknown layer"):
        cfg.parse_config(RAW)


def test_library_checks_are_the_configs_checks():
    """One rule per range: batch norm's eps may be 0 (layers.batchnorm accepts
    it), a negative eps is its own error under the key; a bad initializer names
    the argument that holds it."""
    raw = {**RAW, "model": {"layers": [{"dense": 4}, {"batchnorm": {"eps": 0.0}}, {"dense": 3}]}}
    assert cfg.parse_config(raw).model.layers[1].args == {"eps": 0.0}
    nn.batchnorm(eps=0.0)
    with pytest.raises(ValueError) as library:
        nn.batchnorm(eps=-1.0)
    with pytest.raises(ConfigError) as config:
        cfg.parse_config(raw, overrides=["model.layers.1.eps=-1"])
    assert str(config.value).endswith(f"model.layers.1.{library.value}")
    with pytest.raises(ConfigError, match=r"model\.layers\.0\.w_init: .*'nope'"):
        cfg.parse_config(raw, overrides=["model.layers.0.w_init=nope"])


@pytest.mark.parametrize(
    "key, registry",
    [("optimizer.name", optim.OPTIMIZERS), ("loss.name", losses.LOSSES), ("data.name", DATASETS)],
)
def test_accepted_names_are_the_registrys(key, registry):
    with pytest.raises(ConfigError) as error:
        cfg.parse_config(PLAIN, overrides=[f"{key}=no_such_name"])
    for name in registry.names():
        assert repr(name) in str(error.value)


def test_standardize_choices_are_the_data_modules():
    with pytest.raises(ConfigError) as error:
        cfg.parse_config(PLAIN, overrides=["data.standardize=bogus"])
    assert all(repr(mode) in str(error.value) for mode in STANDARDIZE_MODES)


def test_data_keys_come_from_the_loaders_signature(tmp_path):
    """Which data keys a data set takes is read from its loader's signature:
    digits takes no ``n``/``noise`` (they are not passed), the file loaders
    need ``data.path`` because their first argument is required."""
    from functional_nn.data import load_digits
    from functional_nn.experiment.builders import dataset_arguments, dataset_keys

    assert dataset_keys("digits") == {"name", "seed", "val_fraction", "test_fraction", "standardize"}
    assert dataset_keys("spirals") >= {"n", "num_classes", "noise"} and "path" not in dataset_keys("spirals")
    assert {"path", "n", "noise", "num_classes"} & dataset_keys("npz") == {"path"}
    with pytest.raises(ConfigError, match=r"data\.noise: does not apply to data\.name='digits'"):
        cfg.parse_config({**PLAIN, "data": {"name": "digits", "noise": 0.5, "n": 7}})
    digits = cfg.parse_config({**PLAIN, "data": {"name": "digits"}})
    assert dataset_arguments(digits.data) == {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.2, "standardize": "feature"}
    np.testing.assert_array_equal(cfg.build_data(digits.data).train.x, load_digits().train.x)
    with pytest.raises(ConfigError, match=r"data\.path: required for data\.name='idx'"):
        cfg.parse_config(PLAIN, overrides=["data={name: idx}"])


def test_build_data_calls_the_registered_loader_with_the_sections_values():
    from functional_nn.data import spirals

    config = cfg.parse_config(PLAIN, overrides=["data.n=30", "data.noise=0.1", "data.seed=3"])
    built = cfg.build_data(config.data)
    direct = spirals(10, 3, 0.1, seed=3, val_fraction=0.1, test_fraction=0.2, standardize="feature")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(built, split).x, getattr(direct, split).x)
        np.testing.assert_array_equal(getattr(built, split).y, getattr(direct, split).y)
