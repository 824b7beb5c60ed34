"""The command line end to end: files written, eval, errors, NaN stop, and a
bit-exact resume in new processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import zipfile

import pytest
import yaml

from functional_nn.__main__ import main
from functional_nn.experiment.builders import build_experiment
from functional_nn.experiment import build_data, build_loss, build_model, load_config
from functional_nn.train import load_training_checkpoint, make_evaluate, restore_best
from functional_nn.train.checkpoint import load_pytrees

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "data", "tiny_digits.yaml")
RUN_FILES = {"config.yaml", "metrics.jsonl", "learning_curves.png", "checkpoint.npz", "summary.json"}
pytestmark = pytest.mark.usefixtures("shared_compilation_cache")  # the same config trains several times


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Six epochs in one go, in this process: (run directory, exit code)."""
    out = str(tmp_path_factory.mktemp("cli") / "straight")
    return out, main(["train", TINY, "--out", out, "--no-progress"])


def _metrics(directory):
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"} for line in f]


def _leaf_bytes(directory):
    """Every stored array's bytes (the metadata, which holds the history, is compared separately)."""
    load_pytrees(os.path.join(directory, "checkpoint.npz"), {})  # verifies the file
    with zipfile.ZipFile(os.path.join(directory, "checkpoint.npz")) as z:
        return {name: z.read(name) for name in z.namelist() if name != "__metadata__.npy"}


def test_train_writes_every_file(straight_run, capsys):
    out, code = straight_run
    assert code == 0 and RUN_FILES <= set(os.listdir(out))
    assert load_config(os.path.join(out, "config.yaml")) == load_config(TINY)
    with open(os.path.join(out, "config.yaml")) as f:  # only the keys the digits loader takes
        assert set(yaml.safe_load(f)["data"]) == {"name", "seed", "val_fraction", "test_fraction", "standardize"}
    history = _metrics(out)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "is_best"} <= set(history[0])
    with open(os.path.join(out, "learning_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "ok" and summary["epochs_run"] == 6 and summary["wall_time_s"] > 0
    assert summary["best_epoch"] == max(r["epoch"] for r in history if r["is_best"])
    assert summary["test_accuracy"] > 0.8

    # the summary's test accuracy is that of the checkpoint's best parameters
    config = load_config(TINY)
    data, model, loss = build_data(config.data), build_model(config.model), build_loss(config.loss)
    _, _, _, _, template = build_experiment(config)
    loaded = load_training_checkpoint(os.path.join(out, "checkpoint.npz"), template)
    metrics = make_evaluate(model, loss)(
        restore_best(loaded.early_stopping, loaded.train_state), data.test.x, data.test.y
    )
    assert metrics["accuracy"] == pytest.approx(summary["test_accuracy"])
    capsys.readouterr()
    assert main(["eval", TINY, "--out", out]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(summary["test_accuracy"]) and evaluated["epoch"] == 6


def test_default_run_directory_is_runs_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", TINY, "--set", "training.epochs=1", "--set", "name=one", "--no-progress"]) == 0
    assert RUN_FILES <= set(os.listdir(tmp_path / "runs" / "one"))


def test_config_errors_exit_with_a_message(tmp_path, capsys):
    assert main(["train", TINY, "--out", str(tmp_path), "--set", "optimizer.learnig_rate=1"]) == 2
    assert "optimizer.learnig_rate: unknown key; did you mean 'learning_rate'?" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_non_finite_loss_exits_naming_epoch_and_step(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(
        [
            "train",
            TINY,
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "optimizer.name=sgd",
            "--set",
            "optimizer.learning_rate=1e30",
        ]
    )
    assert code == 1
    assert "non-finite (NaN/Inf) at epoch 1, step" in capsys.readouterr().err
    with open(out / "summary.json") as f:
        assert json.load(f)["status"] == "non_finite_loss"


def test_resume_in_a_new_process_is_bit_identical(straight_run, tmp_path, shared_compilation_cache):
    out = str(tmp_path / "resumed")
    assert main(["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=3"]) == 0
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(  # the new process loads this module's compiled programs
        JAX_COMPILATION_CACHE_DIR=shared_compilation_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    command = [sys.executable, "-m", "functional_nn", "train", TINY, "--out", out, "--no-progress", "--resume"]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "after epoch 3" in resumed.stderr
    straight, _ = straight_run
    assert _metrics(out) == _metrics(straight)
    assert _leaf_bytes(out) == _leaf_bytes(straight)


def _read(path):
    with open(path) as f:
        return f.read()


def test_fresh_run_never_mixes_with_an_earlier_checkpoint(tmp_path, capsys):
    """A fresh run into a directory holding an earlier run leaves it alone until
    it writes its own first checkpoint: a run that dies first changes no file
    (its own are staged, then dropped), and --resume checks the config stored
    in the checkpoint."""
    out = str(tmp_path / "run")
    assert main(["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=1"]) == 0
    checkpoint_before = _leaf_bytes(out)
    files_before = {name: _read(os.path.join(out, name)) for name in RUN_FILES - {"checkpoint.npz", "learning_curves.png"}}
    other = ["--set", "optimizer.name=sgd", "--set", "optimizer.learning_rate=1e30"]  # dies with NaN in epoch 1
    capsys.readouterr()
    assert main(["train", TINY, "--out", out, "--no-progress", *other]) == 1
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "no checkpoint was written" in err and "last good checkpoint" not in err
    assert _leaf_bytes(out) == checkpoint_before
    assert {name: _read(os.path.join(out, name)) for name in files_before} == files_before
    assert not os.path.exists(os.path.join(out, ".staging"))
    assert main(["train", TINY, "--out", out, "--no-progress", "--resume", *other]) == 2
    err = capsys.readouterr().err
    assert "--resume: the config differs" in err and "checkpoint.npz" in err
    assert "optimizer.learning_rate" in err and "optimizer.name" in err
    assert _leaf_bytes(out) == checkpoint_before
    # a fresh run that trains replaces the earlier checkpoint; its metrics start at epoch 1
    assert main(["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=1", "--set", "training.seed=1"]) == 0
    assert _leaf_bytes(out) != checkpoint_before and [r["epoch"] for r in _metrics(out)] == [1]


def test_resume_compares_keys_missing_on_either_side(tmp_path, capsys):
    out = str(tmp_path / "b1")
    assert main(["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=1", "--set", "optimizer.b1=0.5"]) == 0
    capsys.readouterr()
    assert main(["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=2", "--resume"]) == 2
    assert "optimizer.b1" in capsys.readouterr().err
    # the epoch budget may change
    args = ["train", TINY, "--out", out, "--no-progress", "--set", "training.epochs=2", "--set", "optimizer.b1=0.5"]
    assert main([*args, "--resume"]) == 0
    assert [r["epoch"] for r in _metrics(out)] == [1, 2]


@pytest.mark.parametrize("command", ["train", "search"])
def test_split_fractions_and_batch_size_errors_name_the_key(tmp_path, capsys, command):
    grid = ["--set", "search={optimizer.learning_rate: [0.01, 0.1]}"] if command == "search" else []
    base = [command, TINY, "--out", str(tmp_path / command), "--set", "training.epochs=1", *grid]
    if command == "train":
        base.append("--no-progress")
    assert main([*base, "--set", "data.val_fraction=0.6", "--set", "data.test_fraction=0.5"]) == 2
    err = capsys.readouterr().err
    assert "data.val_fraction=0.6" in err and "data.test_fraction=0.5" in err
    assert main([*base, "--set", "training.batch_size=5000"]) == 2
    examples = len(build_data(load_config(TINY).data).train.x)
    assert f"training.batch_size=5000: larger than the training split, which has {examples} examples" in (
        capsys.readouterr().err
    )
    assert not os.path.exists(tmp_path / command / "checkpoint.npz")
