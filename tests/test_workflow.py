"""From a trained model to its use: ``eval`` on a run directory, its
``config.yaml`` and a search directory; ``search`` → ``best/`` → ``eval`` /
``predict`` / ``train --resume``; ``predict`` against ``model.apply`` on the
same standardised inputs; the ``load_run`` round trip; clear errors."""

from __future__ import annotations

import copy
import json
import os

import jax
import numpy as np
import pytest
import yaml

import functional_nn
from functional_nn.__main__ import main
from functional_nn.data import digits_arrays, split_indices
from functional_nn.experiment import build_data, ConfigError, load_config
from functional_nn.experiment.builders import build_experiment
from functional_nn.experiment.load import Preprocessing
from functional_nn.train import load_training_checkpoint, restore_best
from tests.conftest import read_run, TINY_DIGITS

SEARCH = {
    "name": "tiny_search",
    "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "model": {"layers": [{"dense": 16}, "batchnorm", "relu", {"dense": 10}]},
    "optimizer": {"name": "adam"},
    "training": {"epochs": 2, "batch_size": 64, "seed": 1, "early_stopping": {"patience": 5}},
    "search": {"optimizer.learning_rate": [1.0e-3, 1.0e-2]},
}


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-epoch tiny_digits run and a 2-setting search, trained in this process."""
    root = tmp_path_factory.mktemp("workflow")
    run = str(root / "run")
    assert main(["train", str(TINY_DIGITS), "--out", run, "--no-progress", "--set", "training.epochs=2"]) == 0
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump(SEARCH))
    search = str(root / "search")
    assert main(["search", str(config), "--out", search]) == 0
    return root, run, search


def _raw_test_inputs(config):
    """The test split's raw (unstandardised) digits, chosen by the loader's own split."""
    x, y = digits_arrays()
    _, _, test = split_indices(len(x), config.data.seed, config.data.val_fraction, config.data.test_fraction)
    return x[test], y[test]


def test_eval_takes_a_run_directory_its_config_and_a_config_file(runs, capsys):
    _, run, _ = runs
    _, summary = read_run(run)
    capsys.readouterr()
    for target in ([run], [os.path.join(run, "config.yaml"), "--split", "test"]):  # a config file: test_cli.py
        assert main(["eval", *target]) == 0
        evaluated = _json_out(capsys)
        assert evaluated["test_accuracy"] == pytest.approx(summary["test_accuracy"]), target
        assert evaluated["epoch"] == 2 and evaluated["best_epoch"] == summary["best_epoch"]


def test_eval_of_a_search_directory_evaluates_its_chosen_setting(runs, capsys):
    _, _, search = runs
    with open(os.path.join(search, "summary.json")) as f:
        summary = json.load(f)
    capsys.readouterr()
    assert main(["eval", search]) == 0
    evaluated = _json_out(capsys)
    assert evaluated["run"] == os.path.join(search, "best")
    assert evaluated["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert evaluated["test_loss"] == pytest.approx(summary["test_loss"])


def test_best_is_a_complete_run_of_the_chosen_setting(runs):
    _, _, search = runs
    best = os.path.join(search, "best")
    assert {"config.yaml", "checkpoint.npz", "metrics.jsonl", "summary.json", "learning_curves.png", "preprocessing.npz"} <= set(os.listdir(best))
    with open(os.path.join(search, "summary.json")) as f:
        chosen = json.load(f)["best_setting"]["optimizer.learning_rate"]
    config = load_config(os.path.join(best, "config.yaml"))
    assert config.optimizer.learning_rate == chosen and config.search == {}
    # everything but the chosen value and the name is the search's config
    reference = copy.deepcopy(SEARCH)
    reference.pop("search")
    reference["optimizer"]["learning_rate"] = chosen
    assert config.model == load_config_from(reference).model and config.training == load_config_from(reference).training
    history, summary = read_run(best)
    with open(os.path.join(search, "history.jsonl")) as f:
        search_history = [json.loads(line) for line in f]
    index = json.load(open(os.path.join(search, "summary.json")))["best_index"]
    chosen_history = [r for r in search_history if r["setting"] == index]
    assert [r["val_loss"] for r in history] == [r["val_loss"] for r in chosen_history]
    assert summary["best_epoch"] == max(r["epoch"] for r in history if r["is_best"])


def load_config_from(raw):
    from functional_nn.experiment import parse_config

    return parse_config(raw)


def test_load_run_round_trip_gives_the_checkpoints_weights_and_metrics(runs):
    _, run, _ = runs
    loaded = functional_nn.load_run(run)
    config = load_config(os.path.join(run, "config.yaml"))
    assert loaded.config == config and loaded.epoch == 2
    # the weights: the checkpoint's best epoch, restored independently
    template = build_experiment(config)[-1]
    checkpoint = load_training_checkpoint(os.path.join(run, "checkpoint.npz"), template)
    expected = restore_best(checkpoint.early_stopping, checkpoint.train_state)
    for a, b in zip(jax.tree.leaves((loaded.params, loaded.state)), jax.tree.leaves((expected.params, expected.model_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the preprocessing: the statistics of the training split the loader standardised with
    data = build_data(config.data)
    raw_x, raw_y = _raw_test_inputs(config)
    np.testing.assert_allclose(loaded.preprocessing.apply(raw_x), data.test.x, rtol=1e-6, atol=1e-6)
    _, summary = read_run(run)
    assert loaded.evaluate("test")["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert loaded.evaluate((raw_x, raw_y))["accuracy"] == pytest.approx(summary["test_accuracy"])


@pytest.mark.parametrize("kind", ["run", "search"])
def test_predict_equals_model_apply_on_the_standardised_inputs(runs, capsys, kind):
    root, run, search = runs
    target = run if kind == "run" else search
    loaded = functional_nn.load_run(target)
    raw_x, raw_y = _raw_test_inputs(loaded.config)
    data = build_data(loaded.config.data)
    apply = jax.jit(lambda p, s, x: loaded.model.apply(p, s, x, train=False)[0])
    logits = apply(loaded.params, loaded.state, data.test.x)
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    np.savez(root / f"inputs_{kind}.npz", x=raw_x)
    output = str(root / f"predictions_{kind}.npz")
    assert main(["predict", target, "--input", str(root / f"inputs_{kind}.npz"), "--output", output]) == 0
    with np.load(output) as f:
        np.testing.assert_allclose(f["probabilities"], probabilities, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(f["class"], np.argmax(logits, axis=-1))
        accuracy = float(np.mean(f["class"] == raw_y))
    with open(os.path.join(target, "summary.json")) as f:
        assert json.load(f)["test_accuracy"] == pytest.approx(accuracy)


def test_predict_reads_csv_and_npy_and_writes_csv_next_to_the_input(runs, capsys):
    root, run, _ = runs
    loaded = functional_nn.load_run(run)
    raw_x = _raw_test_inputs(loaded.config)[0][:5]
    np.savetxt(root / "five.csv", raw_x, delimiter=",", header=",".join(f"f{i}" for i in range(64)), comments="")
    np.save(root / "five.npy", raw_x)
    assert main(["predict", run, "--input", str(root / "five.csv")]) == 0
    assert _json_out(capsys)["output"] == str(root / "five.predictions.csv")
    table = np.loadtxt(root / "five.predictions.csv", delimiter=",", skiprows=1)
    expected = loaded.predict(raw_x)
    np.testing.assert_array_equal(table[:, 0], expected.classes)
    np.testing.assert_allclose(table[:, 1:], expected.probabilities, rtol=1e-5, atol=1e-6)
    assert main(["predict", run, "--input", str(root / "five.npy"), "--output", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "class," + ",".join(f"p{i}" for i in range(10))


def test_search_best_resumes_with_train(runs, capsys):
    root, _, search = runs
    best = os.path.join(search, "best")
    before, _ = read_run(best)
    assert main(["train", os.path.join(best, "config.yaml"), "--resume", "--set", "training.epochs=3", "--no-progress"]) == 0
    after, summary = read_run(best)
    assert [r["epoch"] for r in after] == [1, 2, 3] and after[:2] == before
    assert summary["epochs_run"] == 3


@pytest.mark.parametrize(
    "make_input,message",
    [
        (lambda p: np.save(p / "bad.npy", np.zeros((3, 10))), r"--input .*bad\.npy.*shape \(10,\).*\(64,\)"),
        (lambda p: np.savez(p / "bad.npz", inputs=np.zeros((3, 64))), r"--input .*bad\.npz.*no array named 'x'"),
        (lambda p: (p / "bad.txt").write_text("1,2"), r"--input .*bad\.txt.*unknown format '\.txt'"),
        (lambda p: np.save(p / "nan.npy", np.full((2, 64), np.nan)), r"--input .*nan\.npy.*not finite"),
    ],
)
def test_predict_input_errors_are_one_line_naming_the_file(runs, tmp_path, capsys, make_input, message):
    _, run, _ = runs
    make_input(tmp_path)
    name = next(iter(os.listdir(tmp_path)))
    capsys.readouterr()
    assert main(["predict", run, "--input", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err


def test_eval_and_predict_of_a_directory_that_is_no_run_say_so(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for argv in (["eval", str(tmp_path)], ["predict", str(tmp_path), "--input", "x.npz"], ["eval", str(tmp_path / "missing")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "run directory" in err, err


def test_preprocessing_reshapes_flat_rows_and_single_examples():
    pre = Preprocessing(np.zeros(()), np.full((), 2.0), (2, 2), 3)
    np.testing.assert_array_equal(pre.apply(np.arange(8).reshape(2, 4)), np.arange(8).reshape(2, 2, 2) / 2)
    assert pre.apply(np.ones((2, 2))).shape == (1, 2, 2)


def test_eval_of_an_empty_split_names_split_and_its_fraction(runs, capsys):
    _, run, _ = runs
    capsys.readouterr()
    assert main(["eval", run, "--split", "val", "--set", "data.val_fraction=0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --split='val'") and len(err.strip().splitlines()) == 1, err
    assert "data.val_fraction=0.0" in err and "empty" in err
    config = load_config(os.path.join(run, "config.yaml"), ["data.val_fraction=0.0"])
    with pytest.raises(ConfigError, match=r"split='val'.*data\.val_fraction=0\.0"):
        functional_nn.load_run(run, config=config).evaluate("val")


def test_training_a_runs_config_without_resume_leaves_that_run_alone(runs, tmp_path, monkeypatch, capsys):
    _, _, search = runs
    best = os.path.join(search, "best")
    before = {name: open(os.path.join(best, name), "rb").read() for name in sorted(os.listdir(best)) if name != ".lock"}
    monkeypatch.chdir(tmp_path)
    argv = ["train", os.path.join(best, "config.yaml"), "--set", "training.epochs=1", "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    after = {name: open(os.path.join(best, name), "rb").read() for name in sorted(os.listdir(best)) if name != ".lock"}
    assert after == before
    history, _ = read_run(tmp_path / "runs" / "tiny_search.best")  # runs/<name>/, the config's name
    assert [r["epoch"] for r in history] == [1]


def test_load_run_with_a_config_resolves_its_path_as_without(runs):
    _, run, search = runs
    best = os.path.join(search, "best")
    for path, directory in ((search, best), (os.path.join(run, "config.yaml"), run)):
        config = load_config(os.path.join(directory, "config.yaml"))
        loaded, plain = functional_nn.load_run(path, config=config), functional_nn.load_run(path)
        assert loaded.directory == plain.directory == directory
        assert loaded.preprocessing.input_shape == plain.preprocessing.input_shape
        for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(plain.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_eval_of_a_searchs_best_params_says_to_evaluate_the_search(runs, capsys):
    _, _, search = runs
    params = os.path.join(search, "best_params.npz")
    capsys.readouterr()
    assert main(["eval", search, "--checkpoint", params]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint '{params}' is a grid search's chosen parameters") and len(err.splitlines()) == 1, err
    assert f"eval {os.path.abspath(search)} " in err and "incomplete training metadata" not in err



def test_the_losses_taking_logits_are_those_a_constant_shift_of_the_outputs_leaves_unchanged():
    """Logits are defined up to a constant (softmax(y + c) = softmax(y)): a loss of
    logits is invariant to it, a loss of probabilities or values is not."""
    from functional_nn.experiment.loading import takes_class_labels, takes_logits
    from functional_nn.losses import LOSSES

    rng = np.random.default_rng(0)
    outputs = rng.uniform(0.1, 0.9, (4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    for name in LOSSES.names():
        loss = LOSSES.lookup(name).value
        target = labels if takes_class_labels(name) else np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.2 / 3
        shifted = float(loss(outputs + 1.5, target)) - float(loss(outputs, target))
        assert takes_logits(name) == (abs(shifted) < 1e-5), (name, shifted)
