"""Configs: validation errors name the key, value and what is accepted; overrides;
every shipped config loads; builders match optax / NumPy references."""

from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml

from functional_nn import experiment as cfg
from functional_nn.experiment import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {
    "name": "tiny",
    "data": {"name": "spirals", "n": 60, "num_classes": 3},
    "model": {"layers": [{"dense": 8}, "relu", {"dropout": 0.1}, {"dense": 3}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 2, "batch_size": 16},
}


def parse(overrides=(), raw=None):
    return cfg.parse_config(raw or TINY, overrides=overrides)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)))
def test_every_shipped_config_loads_and_validates(path):
    with open(path) as f:
        raw = yaml.safe_load(f)
    assert isinstance(raw, dict)
    if "model" not in raw:  # experiment 1's surfaces file, not a training config
        check_surfaces_config(raw)
        return
    # a config for the user's own files (mnist_cnn.yaml: IDX files) is checked with a path that exists
    overrides = [f"data.path={ROOT}"] if "path" in (raw.get("data") or {}) else []
    config = cfg.load_config(path, overrides=overrides)
    assert config.model.layers and config.training.epochs >= 1
    cfg.build_model(config.model)
    cfg.build_optimizer(config.optimizer)


def check_surfaces_config(raw):
    """The parameters experiments/exp1_surfaces.py reads: surfaces, a learning-rate
    grid and optimizers that are real aliases with valid arguments."""
    from functional_nn import optim

    assert set(raw) == {"surfaces", "starts", "learning_rates", "optimizers"}
    assert raw["starts"]["count"] >= 5 and isinstance(raw["starts"]["seed"], int)  # issue 15: >= 5 starting points
    for spec in raw["surfaces"].values():
        assert len(spec["start"]) == 2 and spec["steps"] >= 1 and min(spec["spread"]) >= 0
    for name, kwargs in raw["optimizers"].items():
        assert name in optim.__all__, name
        getattr(optim, name)(learning_rate=0.1, **kwargs)


def test_defaults_and_layer_forms():
    config = parse()
    assert config.loss.name == "softmax_cross_entropy" and config.training.devices == 1
    assert [(layer.type, layer.args) for layer in config.model.layers] == [
        ("dense", {"out_dim": 8}),
        ("relu", {}),
        ("dropout", {"rate": 0.1}),
        ("dense", {"out_dim": 3}),
    ]
    flat = parse(
        raw={**TINY, "model": {"layers": [{"type": "dense", "features": 4}, {"batchnorm": {"stats": "cumulative"}}]}}
    )
    assert flat.model.layers[0].args == {"out_dim": 4} and flat.model.layers[1].args == {"stats": "cumulative"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.learnig_rate=0.1", r"optimizer\.learnig_rate: unknown key; did you mean 'learning_rate'\?"),
        ("traning.epochs=3", r"traning: unknown key; did you mean 'training'\?"),
        ("model.layers.2.rat=0.5", r"model\.layers\.2\.rat: unknown key; did you mean 'rate'\?"),
        ("model.layers.0.type=dens", r"model\.layers\.0\.type='dens': unknown layer; did you mean 'dense'\?"),
        ("training.epochs=2.5", r"training\.epochs=2\.5: must be an integer"),
        ("training.batch_size=many", r"training\.batch_size='many': must be an integer"),
        ("training.early_stopping={patience: 2, restore_best: maybe}", r"restore_best='maybe': must be true or false"),
        ("optimizer.learning_rate=-0.1", r"optimizer\.learning_rate=-0\.1: must be in \[0, inf\)"),
        ("model.layers.2.rate=1.5", r"model\.layers\.2\.rate=1\.5: must be in \[0, 1\)"),
        ("optimizer.b1=1.5", r"optimizer\.b1=1\.5: must be in \[0, 1\)"),
        ("training.early_stopping.patience=0", r"training\.early_stopping\.patience=0: must be in \[1, inf\)"),
        ("data.val_fraction=1.2", r"data\.val_fraction=1\.2: must be in \[0, 1\)"),
        ("data.val_fraction=0.6 data.test_fraction=0.5", r"data\.val_fraction=0\.6 \+ data\.test_fraction=0\.5.*< 1"),
        ("search={data.val_fraction: [0.1, 0.9]}", r"search\.data\.val_fraction: value 0\.9 is invalid.*data\.test_fraction"),
        ("training.devices=0", r"training\.devices=0: must be 'all' or an integer >= 1"),
        ("loss.name=cross_entropy", r"loss\.name='cross_entropy': must be one of .*"),
        ("optimizer.schedule={name: cosine, decay_steps: 10}", r"did you mean 'cosine_decay'\?"),
        ("optimizer.schedule={name: cosine_decay}", r"optimizer\.schedule: schedule 'cosine_decay' needs decay_steps"),
        ("search={optimizer.learning_rate: [0.1, -1]}", r"search\.optimizer\.learning_rate: value -1 is invalid"),
        ("search={optimizer.learning_rate: 0.1}", r"must be a non-empty list"),
        ("search={learning_rate: [0.1]}", r"search keys are 'section\.key' paths"),
        ("model.layers.9.rate=0.5", r"model\.layers\.9: no such list item"),
        ("data.seed=-1", r"data\.seed=-1: must be an integer in \[0, 2\*\*32\)"),
        ("name=../elsewhere", r"name='\.\./elsewhere': must be a run name"),
    ],
)
def test_invalid_values_are_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        parse(override.split(" ") if " data." in override else [override])


def test_batch_size_larger_than_the_training_split_names_the_key():
    config = parse(["training.batch_size=5000"])
    data = cfg.build_data(config.data)
    with pytest.raises(ConfigError, match=rf"training\.batch_size=5000: .* {len(data.train.x)} examples"):
        cfg.check_batch_size(config.training, data)
    cfg.check_batch_size(parse([f"training.batch_size={len(data.train.x)}"]).training, data)


def test_missing_files_are_errors_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml.*does not exist"):
        cfg.load_config(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match=r"data\.path='.*nothing\.npz': no such file"):
        parse([f"data={{name: npz, path: {tmp_path / 'nothing.npz'}}}"])
    with pytest.raises(ConfigError, match=r"data\.path: required"):
        parse(["data={name: idx}"])


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "optimizer": {"name": "adam", "lerning_rate": 1}}))
    with pytest.raises(ConfigError, match=r"bad\.yaml: optimizer\.lerning_rate: unknown key"):
        cfg.load_config(str(path))


def test_overrides_are_parsed_as_yaml():
    config = parse(
        [
            "optimizer.learning_rate=3e-4",
            "training.epochs=7",
            "training.early_stopping={patience: 2}",
            "training.devices=all",
            "model.layers.2.rate=0.25",
            "optimizer.b2=0.99",
            "search.optimizer.learning_rate=[0.1, 0.01]",
            "name=renamed",
        ]
    )
    assert config.optimizer.learning_rate == 3e-4 and config.training.epochs == 7
    assert config.training.early_stopping.patience == 2 and config.training.devices == "all"
    assert config.model.layers[2].args == {"rate": 0.25} and config.optimizer.hyperparameters == {"b2": 0.99}
    assert config.search == {"optimizer.learning_rate": [0.1, 0.01]} and config.name == "renamed"
    assert (
        parse(["training.early_stopping={patience: 2}", "training.early_stopping=null"]).training.early_stopping is None
    )
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse(["training.epochs"])


def test_dumped_config_loads_back_identical(tmp_path):
    config = parse(
        [
            "optimizer.schedule={name: cosine_decay, decay_steps: 100}",
            "optimizer.b1=0.8",
            "search={model.layers.2.rate: [0.0, 0.5]}",
        ]
    )
    path = tmp_path / "resolved.yaml"
    path.write_text(cfg.dump_config(config))
    assert cfg.load_config(str(path)) == config


def test_config_name_defaults_to_the_file_name(tmp_path):
    raw = {k: v for k, v in TINY.items() if k != "name"}
    path = tmp_path / "my_run.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cfg.load_config(str(path)).name == "my_run"


# --------------------------------------------------------------------------
# builders


def _params():
    rng = np.random.default_rng(0)
    return (
        {
            "w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal(2), jnp.float32),
        },
    )


def _run(optimizer, grads_list):
    params = _params()
    state = optimizer.init(params)
    for grads in grads_list:
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _grads(steps=3):
    rng = np.random.default_rng(1)
    return [
        jax.tree.map(lambda p: jnp.asarray(5 * rng.standard_normal(p.shape), jnp.float32), _params())
        for _ in range(steps)
    ]


def test_build_optimizer_matches_the_optax_chain():
    config = parse(["optimizer.clip_by_global_norm=1.0", "optimizer.l2=0.01", "optimizer.b1=0.8"])
    ours = cfg.build_optimizer(config.optimizer)
    weights_only = ({"w": True, "b": False},)
    reference = optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(0.01, mask=weights_only), optax.adam(0.01, b1=0.8)
    )
    grads = _grads()
    for got, want in zip(jax.tree.leaves(_run(ours, grads)), jax.tree.leaves(_run(reference, grads))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_build_optimizer_with_a_schedule_and_adamw_mask():
    config = parse(
        [
            "optimizer.name=adamw",
            "optimizer.weight_decay=0.1",
            "optimizer.schedule={name: cosine_decay, decay_steps: 3}",
        ]
    )
    ours = cfg.build_optimizer(config.optimizer)
    reference = optax.adamw(optax.cosine_decay_schedule(0.01, 3), weight_decay=0.1, mask=({"w": True, "b": False},))
    grads = _grads()
    for got, want in zip(jax.tree.leaves(_run(ours, grads)), jax.tree.leaves(_run(reference, grads))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_build_optimizer_with_traced_hyperparameters_under_vmap():
    config = parse(["optimizer.l2=0.01"])
    grads = _grads(2)

    def final_params(learning_rate, b1, l2):
        return _run(cfg.build_optimizer(config.optimizer, {"learning_rate": learning_rate, "b1": b1, "l2": l2}), grads)

    settings = [(0.01, 0.9, 0.0), (0.1, 0.5, 0.1)]
    batched = jax.jit(jax.vmap(final_params))(*map(jnp.asarray, zip(*settings)))
    for i, (lr, b1, l2) in enumerate(settings):
        concrete = parse([f"optimizer.learning_rate={lr}", f"optimizer.b1={b1}", f"optimizer.l2={l2}"])
        expected = _run(cfg.build_optimizer(concrete.optimizer), grads)
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(expected)):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="optimizer.momentum: unknown key"):
        cfg.build_optimizer(config.optimizer, {"momentum": 0.9})


def test_build_model_with_a_traced_dropout_rate():
    config = parse()
    x = jnp.ones((4, 2))
    model = cfg.build_model(config.model)
    _, params, state = model.init(jax.random.key(0), x.shape)

    def train_output(rate):
        out, _ = cfg.build_model(config.model, {"layers.2.rate": rate}).apply(
            params, state, x, train=True, key=jax.random.key(1)
        )
        return out

    outputs = jax.vmap(train_output)(jnp.array([0.0, 0.5]))
    no_dropout, _ = model.apply(params, state, x, train=False)
    np.testing.assert_allclose(outputs[0], no_dropout, rtol=1e-6)
    assert not np.allclose(outputs[1], no_dropout)
    with pytest.raises(ConfigError, match="model.layers.0.rate: unknown key"):
        cfg.build_model(config.model, {"layers.0.rate": 0.1})


def test_build_loss_one_hot_encodes_labels_for_distribution_losses():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = jnp.array([1, 2])
    kl = cfg.build_loss(cfg.LossConfig("kl_divergence_with_logits"))(logits, labels)
    log_softmax = np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(1, keepdims=True))
    assert float(kl) == pytest.approx(-log_softmax[[0, 1], [1, 2]].mean(), rel=1e-5)
    l2 = cfg.build_loss(cfg.LossConfig("l2_divergence"))(logits, labels)
    assert float(l2) == pytest.approx(np.mean(0.5 * ((np.asarray(logits) - np.eye(3)[[1, 2]]) ** 2).sum(1)), rel=1e-6)


def test_build_data_sections(tmp_path):
    assert len(cfg.build_data(parse().data).train.x) == 42  # 60 − 6 val − 12 test
    regression = cfg.build_data(parse(["data={name: noisy_function, n: 50}"]).data)
    assert regression.num_classes is None and regression.train.y.shape == (35, 1)
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4)), y=np.arange(20) % 2)
    from_file = cfg.build_data(parse([f"data={{name: npz, path: {tmp_path / 'd.npz'}}}"]).data)
    assert from_file.num_classes == 2 and from_file.train.x.shape[1] == 4
    augmentation = parse(["training.augmentation={shift: 1}"]).training
    with pytest.raises(ConfigError, match="shift/flip need image data"):
        cfg.build_augment(augmentation, None)
    assert cfg.build_augment(augmentation, (8, 8)) is not None
