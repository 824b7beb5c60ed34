"""Every error a user can cause through the CLI is one ``error: ...`` line on
stderr and exit code 2 (never a traceback), naming the key, file or directory,
the value and what is accepted. Run in-process through ``main([...])``; almost
every case fails before anything is compiled."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import yaml

from functional_nn.__main__ import MAX_ERROR_CHARS, main
from functional_nn.experiment import dump_config, load_config
from functional_nn.experiment.commands import train as train_command_module
from tests.conftest import TINY_DIGITS

TINY = str(TINY_DIGITS)
LINEAR = ["--set", "model.layers=[{dense: 3}]", "--set", "training.batch_size=8", "--no-progress"]


def error_line(capsys, *argv) -> str:
    """The CLI's stderr for ``argv``, checked to be one ``error:`` line with exit code 2."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert len(lines[0]) <= len("error: ") + MAX_ERROR_CHARS
    return lines[0]


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------
# the config file


def test_duplicate_yaml_key_names_the_key_and_both_lines(tmp_path, capsys):
    config = write(tmp_path / "dup.yaml", "optimizer:\n  learning_rate: 0.001\n  name: sgd\n  learning_rate: 50.0\n")
    line = error_line(capsys, "train", config, "--out", str(tmp_path / "run"))
    assert "duplicate key 'learning_rate' at lines 2 and 4" in line and "dup.yaml" in line
    assert not os.path.exists(tmp_path / "run")
    line = error_line(capsys, "train", TINY, "--set", "search={optimizer.l2: [0.1], optimizer.l2: [0.2]}")
    assert "--set" in line and "duplicate key 'optimizer.l2'" in line


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    config = write(tmp_path / "merge.yaml", "model: {layers: [{dense: 10}]}\ntraining:\n  <<: {epochs: 3, batch_size: 16}\n  epochs: 2\n")
    loaded = load_config(config)
    assert (loaded.training.epochs, loaded.training.batch_size) == (2, 16)


def test_yaml_alias_bomb_gives_a_short_error(tmp_path, capsys):
    levels = ["[x, x, x, x, x, x, x, x, x]"] + [f"[{', '.join([f'*a{i}'] * 9)}]" for i in range(8)]
    anchors = ", ".join(f"&a{i} {level}" for i, level in enumerate(levels))  # 9**9 ≈ 4e8 leaves
    config = write(tmp_path / "bomb.yaml", f"name: [{anchors}]\n")
    line = error_line(capsys, "train", config)
    assert "name=" in line and "must be a string" in line and len(line) < 600


def test_binary_config_is_not_utf8(tmp_path, capsys):
    config = tmp_path / "image.yaml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    line = error_line(capsys, "train", str(config))
    assert "is not UTF-8 text (byte 0x89 at offset 0)" in line and "image.yaml" in line


def test_config_path_that_is_a_directory(tmp_path, capsys):
    line = error_line(capsys, "train", str(tmp_path))
    assert "is a directory" in line and "does not exist" not in line
    assert "does not exist" in error_line(capsys, "train", str(tmp_path / "missing.yaml"))


# --------------------------------------------------------------------------
# config values


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.seed=1180591620717411303424", "training.seed=1180591620717411303424: must be an integer in [0, 2**32)"),
        ("training.seed=-1", "training.seed=-1: must be an integer in [0, 2**32)"),
        ("training.eval_chunk_size=1000000000000", "training.eval_chunk_size=1000000000000: must be an integer in [1, 2**20]"),
        ("data.seed=4294967296", "data.seed=4294967296: must be an integer in [0, 2**32)"),
        ("model.layers=[{dnese: 5}]", "model.layers.0.type='dnese': unknown layer; did you mean 'dense'? (accepted: "),
        ("model.layers=[relu, dnese]", "model.layers.1.type='dnese': unknown layer"),
        ("model.layers=[{relu: 5}]", "layer 'relu' takes no main argument"),
        (
            "optimizer.schedule={name: cosine_decay, decay_steps: abc}",
            "optimizer.schedule.decay_steps='abc': must be an integer",
        ),
        (
            "optimizer.schedule={name: exponential_decay, transition_steps: 10, decay_rate: fast}",
            "optimizer.schedule.decay_rate='fast': must be a number",
        ),
        ("optimizer.mu_dtype=float99", "optimizer.mu_dtype='float99': must be a floating-point dtype"),
    ],
)
def test_bad_values_name_their_key(capsys, override, expected):
    assert expected in error_line(capsys, "train", TINY, "--set", override)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["data.path=digits.npz"], "data.path: does not apply to data.name='digits'"),
        (["data.n=100"], "data.n: does not apply to data.name='digits'"),
        (["data.num_classes=4"], "data.num_classes: does not apply to data.name='digits'"),
        (["data.noise=0.3"], "data.noise: does not apply to data.name='digits'"),
        (["data={name: noisy_function, num_classes: 3}"], "data.num_classes: does not apply to data.name='noisy_function'"),
        (["optimizer.name=sgd", "optimizer.b1=0.5"], "optimizer.b1: does not apply to optimizer.name='sgd'"),
        (["optimizer.name=adam", "optimizer.momentum=0.9"], "optimizer.momentum: does not apply to optimizer.name='adam'"),
    ],
)
def test_keys_that_do_not_apply_are_errors(capsys, overrides, expected):
    argv = ["train", TINY]
    for override in overrides:
        argv += ["--set", override]
    assert expected in error_line(capsys, *argv)


def test_a_key_set_to_null_is_dropped_and_the_saved_config_holds_only_what_applies():
    spirals = load_config(TINY, ["data={name: spirals, n: 90, num_classes: 3, noise: 0.1}"])
    assert {"n", "num_classes", "noise"} <= set(yaml.safe_load(dump_config(spirals))["data"])
    digits = load_config(TINY, ["data={name: digits, n: null, noise: null}"])
    saved = yaml.safe_load(dump_config(digits))["data"]
    assert set(saved) == {"name", "seed", "val_fraction", "test_fraction", "standardize"}


# --------------------------------------------------------------------------
# the run directory


def test_out_that_is_a_file_or_below_one(tmp_path, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep")
    line = error_line(capsys, "train", TINY, "--out", str(a_file))
    assert f"run directory '{a_file}' is a file" in line
    line = error_line(capsys, "train", TINY, "--out", str(a_file / "run"))
    assert f"is below '{a_file}', which is a file" in line
    assert a_file.read_text() == "keep"


def test_unwritable_out_directory(tmp_path, capsys, monkeypatch):
    def refuse(path, *args, **kwargs):  # as root, chmod would not stop us
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "makedirs", refuse)
    line = error_line(capsys, "train", TINY, "--out", str(tmp_path / "run"))
    assert f"run directory '{tmp_path / 'run'}' cannot be created: Permission denied" in line


# --------------------------------------------------------------------------
# data against the model and the loss


def npz(tmp_path, name: str, x, y) -> list:
    path = tmp_path / f"{name}.npz"
    np.savez(path, x=x, y=y)
    return ["--set", f"data={{name: npz, path: {path}}}"]


def inputs(n: int = 60) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def test_batch_of_one_reaching_batch_norm(capsys):
    line = error_line(capsys, "train", TINY, "--set", "training.batch_size=1", "--no-progress")
    assert "training.batch_size=1" in line and "batch norm" in line and "(batchnorm)" in line
    assert "split sizes train " in line


def test_label_outside_the_model_outputs(tmp_path, capsys):
    labels = np.arange(60) % 3
    labels[[7, 9]] = 5  # 6 classes in the data, 3 model outputs
    line = error_line(capsys, "train", TINY, *LINEAR, *npz(tmp_path, "big", inputs(), labels), "--out", str(tmp_path / "r"))
    assert "the model has 3 outputs but the data set has 6 classes" in line
    assert "labels are outside [0, 3)" in line and "first: label 5 at index" in line


def test_negative_label(tmp_path, capsys):
    labels = np.arange(60) % 3
    labels[7] = -1
    line = error_line(capsys, "train", TINY, *LINEAR, *npz(tmp_path, "neg", inputs(), labels))
    assert "labels are outside [0, 3)" in line and "label -1" in line and "row 7 of the source arrays" in line


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs(tmp_path, capsys, bad):
    x = inputs()
    x[11, 2] = bad
    line = error_line(capsys, "train", TINY, *LINEAR, *npz(tmp_path, "nan", x, np.arange(60) % 3))
    assert "1 of" in line and "NaN or inf inputs" in line and "row 11 of the source arrays" in line


def test_float_labels_with_a_classification_loss(tmp_path, capsys):
    labels = (np.arange(60) % 3) + 0.5
    line = error_line(capsys, "train", TINY, *LINEAR, *npz(tmp_path, "float", inputs(), labels))
    assert "loss.name='softmax_cross_entropy'" in line and "regression targets (float32 of shape (" in line


def test_regression_data_with_a_classification_loss(capsys):
    line = error_line(capsys, "train", TINY, *LINEAR, "--set", "data={name: noisy_function}")
    assert "loss.name='softmax_cross_entropy'" in line and "regression targets" in line and ", 1))" in line


def test_corrupt_data_file(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive" * 10)
    line = error_line(capsys, "train", TINY, *LINEAR, "--set", f"data={{name: npz, path: {garbage}}}")
    assert str(garbage) in line and "not a .npz file" in line


def test_unexpected_internal_errors_keep_their_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(train_command_module, "train_command", broken)
    with pytest.raises(KeyError):
        main(["train", TINY, "--no-progress", "--out", str(tmp_path / "run")])
    assert not os.path.exists(tmp_path / "run")  # the directory it created, left empty, is gone


# --------------------------------------------------------------------------
# search


def test_search_where_every_setting_diverged_exits_1_and_writes_its_results(tmp_path, capsys):
    out = tmp_path / "search"
    # an earlier search's selection (its files' content does not matter) and a killed write's temporary file
    (out / "best").mkdir(parents=True)
    for name in ("best/config.yaml", "best/checkpoint.npz", "best_params.npz", "heatmap.png", ".results.csv.x1.tmp"):
        (out / name).write_text("earlier")
    argv = ["search", TINY, "--out", str(out), "--set", "model.layers=[{dense: 10}]"]
    argv += ["--set", "training.epochs=1", "--set", "optimizer.name=sgd"]
    argv += ["--set", "search={optimizer.learning_rate: [1.0e+38, 3.0e+38]}"]  # float32 overflows
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: grid search: none of the 2 settings produced a finite val_loss (status: diverged)" in err
    assert "note: removed 1 stale temporary file(s)" in err
    assert not {"best", "best_params.npz", "heatmap.png", ".results.csv.x1.tmp"} & set(os.listdir(out))
    assert "search directory without best/" in error_line(capsys, "eval", str(out))  # nothing earlier is evaluated
    assert {"results.csv", "results.md", "summary.json", "history.jsonl", "config.yaml"} <= set(os.listdir(out))
    with open(out / "summary.json") as f:
        assert json.load(f)["status"] == "no_finite_setting"
    assert (out / "results.csv").read_text().count("diverged") == 2


def test_an_unwritable_compile_cache_folder_turns_the_cache_off_with_a_note(tmp_path, capsys, monkeypatch):
    import jax

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    folder = str(blocker / "cache")
    monkeypatch.setenv("FUNCTIONAL_NN_COMPILE_CACHE", "1")
    monkeypatch.setenv("FUNCTIONAL_NN_CACHE_DIR", folder)
    chosen = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)  # a folder set for JAX would win over ours
    try:
        assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    finally:
        jax.config.update("jax_compilation_cache_dir", chosen)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(notes) == 1 and "compile cache is off" in notes[0] and repr(folder) in notes[0], err
    assert len(errors) == 1 and "missing.yaml" in errors[0], err  # the command went on past the cache


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["search.seeds=1000000000"], "search.seeds=1000000000: must be an integer in [1, 1024]"),
        (["search.seeds=1025"], "search.seeds=1025: must be an integer in [1, 1024]"),
        (["search.seeds=2", "training.seed=4294967295"], "search.seeds=2: with training.seed=4294967295 the last seed"),
    ],
)
def test_search_seeds_are_bounded(capsys, overrides, expected):
    argv = ["search", TINY, "--set", "search={optimizer.learning_rate: [0.01]}"]
    for override in overrides:
        argv += ["--set", override]
    assert expected in error_line(capsys, *argv)


def test_grid_search_checks_seeds_given_in_python():
    from functional_nn.experiment import ConfigError
    from functional_nn.experiment.search import grid_search

    config = load_config(TINY, ["search={optimizer.learning_rate: [0.01]}", "training.seed=4294967295"])
    for seeds, expected in ((10**9, r"search\.seeds=1000000000: must be an integer in \[1, 1024\]"), (2, "last seed")):
        with pytest.raises(ConfigError, match=expected):
            grid_search(config, seeds=seeds)
