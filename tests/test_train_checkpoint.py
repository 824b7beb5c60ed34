"""Checkpoints: bit-exact round trip, atomic writes, clear errors on damaged files."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn.train import (
    CheckpointError,
    EarlyStoppingState,
    TrainingCheckpoint,
    TrainState,
    load_training_checkpoint,
    save_training_checkpoint,
)
from functional_nn.train import checkpoint as checkpoint_module


def _state(seed: int) -> TrainState:
    rng = np.random.default_rng(seed)
    params = ({"w": rng.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}, ())
    model_state = (
        (),
        {"mean": jnp.asarray(rng.standard_normal(4), jnp.bfloat16), "count": jnp.asarray(seed, jnp.int32)},
    )
    opt_state = (jnp.asarray(7 + seed, jnp.int32), jax.tree.map(jnp.asarray, params))
    return TrainState(
        jax.tree.map(jnp.asarray, params),
        model_state,
        opt_state,
        jnp.asarray(5 * seed, jnp.int32),
        jax.random.key(seed),
    )


def _bits(tree):
    def leaf_bits(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a = jax.random.key_data(a)
        a = np.asarray(a)
        return (a.dtype.name, a.shape, a.tobytes())

    return [leaf_bits(a) for a in jax.tree.leaves(tree)]


def _checkpoint(seed: int) -> TrainingCheckpoint:
    state = _state(seed)
    history = [{"epoch": 1, "train_loss": 0.1 + seed, "val_loss": float("nan")}]
    stopping = EarlyStoppingState(0.25, 1, 0, jax.device_get(state.params), jax.device_get(state.model_state))
    return TrainingCheckpoint(state, 3 + seed, history, stopping)


def _assert_same(loaded: TrainingCheckpoint, expected: TrainingCheckpoint):
    assert _bits(loaded.train_state) == _bits(expected.train_state)
    assert jax.tree.structure(loaded.train_state) == jax.tree.structure(expected.train_state)
    assert loaded.epoch == expected.epoch
    assert loaded.history[0]["train_loss"] == expected.history[0]["train_loss"]
    assert np.isnan(loaded.history[0]["val_loss"])
    assert _bits(loaded.early_stopping.best_params) == _bits(expected.early_stopping.best_params)
    assert loaded.early_stopping[:3] == expected.early_stopping[:3]


def test_round_trip_is_bit_exact(tmp_path):
    path = str(tmp_path / "ck.npz")
    expected = _checkpoint(0)
    save_training_checkpoint(path, expected)
    loaded = load_training_checkpoint(path, _state(1))
    _assert_same(loaded, expected)
    assert jax.random.key_impl(loaded.train_state.key) == jax.random.key_impl(expected.train_state.key)


def test_round_trip_without_best_parameters(tmp_path):
    path = str(tmp_path / "ck.npz")
    state = _state(2)
    save_training_checkpoint(path, TrainingCheckpoint(state, 1, [], EarlyStoppingState()))
    loaded = load_training_checkpoint(path, _state(0))
    assert loaded.early_stopping.best_params is None and np.isnan(loaded.early_stopping.best_value)
    assert _bits(loaded.train_state) == _bits(state)


def test_write_killed_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.npz")
    previous = _checkpoint(0)
    save_training_checkpoint(path, previous)

    def write_half_then_die(f, data, chunk=1 << 20):
        f.write(data[: len(data) // 2])
        raise OSError("simulated crash during the write")

    monkeypatch.setattr(checkpoint_module, "_write_all", write_half_then_die)
    with pytest.raises(OSError, match="simulated crash"):
        save_training_checkpoint(path, _checkpoint(1))
    _assert_same(load_training_checkpoint(path, _state(0)), previous)
    assert os.listdir(tmp_path) == ["ck.npz"]  # the temporary file is gone


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path):
    path = tmp_path / "ck.npz"
    save_training_checkpoint(str(path), _checkpoint(0))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.npz.*truncated or corrupt"):
        load_training_checkpoint(str(truncated), _state(0))
    corrupt = tmp_path / "corrupt.npz"
    flipped = bytearray(data)
    position = data.index(np.asarray(_state(0).params[0]["w"]).tobytes()) + 5  # inside a leaf's data
    flipped[position] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt.npz"):
        load_training_checkpoint(str(corrupt), _state(0))
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_training_checkpoint(str(tmp_path / "absent.npz"), _state(0))


def test_template_mismatch_names_the_file(tmp_path):
    path = str(tmp_path / "ck.npz")
    save_training_checkpoint(path, _checkpoint(0))
    other = _state(0)._replace(params=({"w": jnp.zeros((3, 5)), "b": jnp.zeros(5)}, ()))
    with pytest.raises(CheckpointError, match="ck.npz.*leaf 0 of 'train_state'"):
        load_training_checkpoint(path, other)
    fewer = _state(0)._replace(opt_state=())
    with pytest.raises(CheckpointError, match="ck.npz.*leaves"):
        load_training_checkpoint(path, fewer)
