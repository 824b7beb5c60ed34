"""The CNN configs: digits_cnn trains in the CLI (tiny setting, in-process); its
nested residual YAML builds the same network as the Python composition;
mnist_cnn reads IDX files and builds on 28×28 images."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from functional_nn import layers
from functional_nn.__main__ import main
from functional_nn.experiment import build_data, build_model, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS_CNN = os.path.join(ROOT, "configs", "digits_cnn.yaml")
MNIST_CNN = os.path.join(ROOT, "configs", "mnist_cnn.yaml")
SMALL = ["--set", "model.conv1.out_channels=8", "--set", "model.layers.4.block.0.out_channels=8",
         "--set", "model.layers.4.block.3.out_channels=8", "--set", "model.conv2.out_channels=8"]


def python_digits_cnn(c1=32, c2=64):
    """configs/digits_cnn.yaml written with the library's Python API."""
    block = [layers.conv(c1, 3), layers.batchnorm(), layers.relu, layers.conv(c1, 3), layers.batchnorm()]
    return layers.serial(
        layers.reshape((8, 8, 1)), layers.conv(c1, 3), layers.batchnorm(), layers.relu,
        layers.residual(block), layers.relu, layers.max_pool(2),
        layers.conv(c2, 3), layers.batchnorm(), layers.relu, layers.global_avg_pool(),
        layers.dropout(0.3), layers.dense(10))


def test_digits_cnn_trains_end_to_end_in_the_cli(tmp_path, capsys):
    out = str(tmp_path / "run")
    code = main(["train", DIGITS_CNN, "--out", out, "--no-progress", "--set", "training.epochs=3", *SMALL])
    assert code == 0, capsys.readouterr().err
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "ok" and summary["epochs_run"] == 3
    assert summary["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert load_config(os.path.join(out, "config.yaml")).model == load_config(DIGITS_CNN, overrides=SMALL[1::2]).model


def test_nested_residual_yaml_builds_the_python_composition():
    config = load_config(DIGITS_CNN, overrides=SMALL[1::2])
    ours, reference = build_model(config.model), python_digits_cnn(8, 8)
    key, x = jax.random.key(0), jax.random.normal(jax.random.key(1), (4, 64))
    shape, params, state = ours.init(key, x.shape)
    ref_shape, ref_params, ref_state = reference.init(key, x.shape)
    assert shape == ref_shape == (4, 10)
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    jax.tree.map(np.testing.assert_array_equal, (params, state), (ref_params, ref_state))
    for train in (True, False):
        y, new_state = ours.apply(params, state, x, train=train, key=jax.random.key(2))
        y_ref, new_ref_state = reference.apply(params, state, x, train=train, key=jax.random.key(2))
        np.testing.assert_array_equal(y, y_ref)
        jax.tree.map(np.testing.assert_array_equal, new_state, new_ref_state)


def write_idx(path, array, code=0x08):
    """An IDX file: magic (0, 0, type code, ndim), big-endian int32 dims, then the bytes."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(np.asarray(array.shape, ">i4").tobytes())
        f.write(np.asarray(array, np.uint8).tobytes())


def test_mnist_cnn_reads_idx_files_and_builds_on_28x28_images(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (50, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(50) % 10)
    config = load_config(MNIST_CNN, overrides=[f"data.path={tmp_path}"])
    data = build_data(config.data)
    model = build_model(config.model)
    input_shape = (config.training.batch_size, *data.train.x.shape[1:])
    shapes = []

    def init(key):  # traced only: no arrays are made
        shape, params, state = model.init(key, input_shape)
        shapes.append(shape)
        return params, state

    jax.eval_shape(init, jax.random.key(0))
    assert data.train.x.shape[1:] == (28, 28) and shapes == [(config.training.batch_size, 10)]
    with pytest.raises(Exception, match="data.path"):
        load_config(MNIST_CNN, overrides=[f"data.path={tmp_path / 'missing'}"])
