"""What a run says while it runs and what it writes without the plotting extra:
one line per epoch when stderr is not a terminal (train and search), a bar
that an early stop completes, and a run without matplotlib that writes
everything but the plots and says so in one line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import jax
import numpy as np
import pytest

from functional_nn import layers, losses, optim
from functional_nn.__main__ import main
from functional_nn.data import Split
from functional_nn.train import run_grid
from functional_nn.train.progress import EpochProgress, epoch_line, progress_mode
from tests.conftest import TINY_DIGITS, read_run

EPOCHS = 3


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _hide_matplotlib(monkeypatch):
    """Make ``import matplotlib`` (and its submodules) fail, as when it is not installed."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """A train run with stderr a pipe-like stream (not a terminal) and matplotlib
    unimportable: (run directory, exit code, stderr text)."""
    out = str(tmp_path_factory.mktemp("progress") / "run")
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stderr(stderr):
        _hide_matplotlib(monkeypatch)
        code = main(["train", str(TINY_DIGITS), "--out", out, "--set", f"training.epochs={EPOCHS}", "--no-compile-cache"])
    return out, code, stderr.getvalue()


def test_without_a_terminal_each_epoch_is_one_line_with_its_metrics(piped_run):
    out, code, stderr = piped_run
    assert code == 0, stderr
    history, _ = read_run(out)
    lines = [line for line in stderr.splitlines() if line.startswith("epochs ")]
    assert len(lines) == len(history) == EPOCHS
    for line, record in zip(lines, history):
        assert line.startswith(f"epochs {record['epoch']}/{EPOCHS}: ")
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert f"{key}={record[key]:.4g}" in line
        assert line.endswith(" s)")


def test_without_matplotlib_the_run_writes_everything_else_and_says_so_once(piped_run):
    out, code, stderr = piped_run
    assert code == 0
    assert {"config.yaml", "metrics.jsonl", "checkpoint.npz", "summary.json"} <= set(os.listdir(out))
    assert "learning_curves.png" not in os.listdir(out)
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["status"] == "ok"
    skipped = [line for line in stderr.splitlines() if "plots skipped" in line]
    assert len(skipped) == 1 and 'pip install "functional_nn[experiments]"' in skipped[0]


def test_progress_off_prints_nothing(capsys):
    with EpochProgress(False, 3) as progress:
        progress.epoch_done({"train_loss": 1.0})
    assert capsys.readouterr().err == ""


def test_grid_search_without_a_terminal_prints_a_line_per_grid_epoch(capsys):
    """``run_grid`` (the engine of ``search``): settings still training and the best value so far."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    build = lambda h: (layers.dense(2), losses.softmax_cross_entropy, optim.sgd(h["lr"]))  # noqa: E731
    run = run_grid(
        build, {"lr": [0.01, 0.1]}, Split(x[:48], y[:48]), Split(x[48:], y[48:]),
        batch_size=16, epochs=2, key=jax.random.key(0), progress=None,
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("grid epochs ")]
    assert [line.split(":")[0] for line in lines] == ["grid epochs 1/2", "grid epochs 2/2"]
    assert all("settings_training=2/2" in line for line in lines)
    assert f"best_val_loss={float(np.min(run.best_value)):.4g}" in lines[-1]


def test_progress_mode_follows_the_stream():
    assert progress_mode(None, Terminal()) == "bar"
    assert progress_mode(None, io.StringIO()) == "lines"
    assert progress_mode(True, io.StringIO()) == "bar"
    assert progress_mode(False, Terminal()) == "off"


def test_epoch_line_formats_metrics_to_four_digits():
    assert epoch_line("epochs", 3, 40, {"train_loss": 0.123456, "val_accuracy": 0.98765}, 0.5) == (
        "epochs 3/40: train_loss=0.1235 val_accuracy=0.9877 (0.50 s)"
    )


def _bar_text(stream: io.StringIO) -> str:
    return stream.getvalue().split("\r")[-1]


def test_an_early_stop_completes_the_bar(monkeypatch):
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with EpochProgress(True, 10) as progress:
        for _ in range(3):
            progress.epoch_done({"train_loss": 1.0})
    assert "100%" in _bar_text(stream) and "3/3" in _bar_text(stream)


def test_a_failure_leaves_the_bar_where_it_stopped(monkeypatch):
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with pytest.raises(RuntimeError), EpochProgress(True, 10) as progress:
        progress.epoch_done({"train_loss": 1.0})
        raise RuntimeError("diverged")
    assert "1/10" in _bar_text(stream) and "100%" not in stream.getvalue()


def test_a_search_without_matplotlib_writes_its_best_run_and_says_so_once(tmp_path):
    out = str(tmp_path / "search")
    stderr = io.StringIO()
    argv = [
        "search", str(TINY_DIGITS), "--out", out, "--no-compile-cache", "--set", "training.epochs=1",
        "--set", "model.layers=[{dense: 10}]", "--set", "search={optimizer.learning_rate: [0.001, 0.01]}",
    ]
    # an earlier search's plot, a symlink to a file outside: removed, never written through
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep")
    os.makedirs(out)
    os.symlink(outside, os.path.join(out, "learning_curves.png"))
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stderr(stderr):
        _hide_matplotlib(monkeypatch)
        code = main(argv)
    assert code == 0, stderr.getvalue()
    assert outside.read_bytes() == b"keep"
    best = os.path.join(out, "best")
    assert {"config.yaml", "checkpoint.npz", "metrics.jsonl", "summary.json"} <= set(os.listdir(best))
    assert not any(name.endswith(".png") for name in os.listdir(out) + os.listdir(best))
    with open(os.path.join(best, "summary.json")) as f:
        assert json.load(f)["status"] == "ok"
    assert sum("plots skipped" in line for line in stderr.getvalue().splitlines()) == 1
