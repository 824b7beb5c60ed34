"""Packaged configs and the config reference: ``configs`` lists and prints the
YAML files shipped in the package, a bare NAME runs one from any directory,
the wheel carries them, and ``docs/config_reference.md`` is the reference the
schema and the registries generate, with a meaning for every key."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import typing

import pytest
import yaml

from functional_nn.__main__ import main
from functional_nn.data import DATASETS
from functional_nn.experiment import Config, ConfigError, load_config
from functional_nn.experiment import reference, schema
from functional_nn.experiment.sections import alias_hyperparameters
from functional_nn.layers import LAYERS
from functional_nn.losses import LOSSES
from functional_nn.optim import OPTIMIZERS
from tests.conftest import REPO_ROOT

PACKAGED = REPO_ROOT / "functional_nn" / "configs"
REFERENCE_FILE = REPO_ROOT / "docs" / "config_reference.md"


def _yaml_files():
    return sorted(p for p in PACKAGED.iterdir() if p.suffix == ".yaml")


def _first_comment(path) -> str:
    first = path.read_text().splitlines()[0]
    return first.lstrip("#").strip() if first.startswith("#") else ""


def test_the_package_holds_the_configs_and_the_repository_folder_is_the_same():
    assert [p.name for p in _yaml_files()], "no packaged configs"
    assert sorted(os.listdir(REPO_ROOT / "configs")) == sorted(os.listdir(PACKAGED))
    assert os.path.samefile(REPO_ROOT / "configs", PACKAGED)


def test_configs_lists_every_packaged_config_with_its_first_comment_line(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1] if len(line.split()) > 1 else "" for line in lines if line and not line.startswith("run ")}
    assert listed == {p.stem: _first_comment(p) for p in _yaml_files()}


def test_configs_name_prints_the_file_unchanged(capsys):
    assert main(["configs", "digits_mlp"]) == 0
    assert capsys.readouterr().out == (PACKAGED / "digits_mlp.yaml").read_text()


def test_an_unknown_name_is_one_error_line_listing_the_names(capsys):
    assert main(["configs", "digits_mpl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: config 'digits_mpl'") and "digits_mlp" in err


def test_a_bare_name_loads_the_packaged_config_and_a_path_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = load_config("search_digits_lr", ["training.epochs=2"])
    by_path = load_config(str(PACKAGED / "search_digits_lr.yaml"), ["training.epochs=2"])
    assert by_name == by_path
    local = tmp_path / "search_digits_lr"  # a file of that name in the directory wins
    local.write_text(yaml.safe_dump({"name": "local", "model": {"layers": ["relu"]}}))
    assert load_config("search_digits_lr").name == "local"
    with pytest.raises(ConfigError, match="'absent.yaml' does not exist.*packaged configs: .*digits_mlp"):
        load_config("absent.yaml")


def test_train_by_name_from_an_empty_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = "model.layers=[{dense: 16}, relu, {dense: 10}]"  # a smaller network: the test is about finding the file
    code = main(["train", "digits_mlp", "--set", "training.epochs=1", "--set", small, "--no-progress", "--no-compile-cache"])
    assert code == 0, capsys.readouterr().err
    assert {"config.yaml", "summary.json", "checkpoint.npz"} <= set(os.listdir(tmp_path / "runs" / "digits_mlp"))
    stored = yaml.safe_load((tmp_path / "runs" / "digits_mlp" / "config.yaml").read_text())
    packaged = yaml.safe_load((PACKAGED / "digits_mlp.yaml").read_text())
    assert stored["training"]["augmentation"]["noise_std"] == packaged["training"]["augmentation"]["noise_std"]
    assert stored["training"]["early_stopping"]["patience"] == packaged["training"]["early_stopping"]["patience"]


def test_the_package_data_declaration_covers_every_config():
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    matched = {p.name for pattern in declared["functional_nn"] for p in (REPO_ROOT / "functional_nn").glob(pattern)}
    assert {p.name for p in _yaml_files()} <= matched


def test_a_non_editable_build_ships_every_packaged_config(tmp_path):
    """setuptools' ``build_py`` (what a wheel, so ``pip install .``, is made of)
    copies the YAML files into the built package."""
    pytest.importorskip("setuptools")  # not in a fresh Python >= 3.12 venv, where pip builds in isolation
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info", "--egg-base", str(tmp_path),
         "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    built = sorted(p.name for p in (tmp_path / "lib" / "functional_nn" / "configs").glob("*.yaml"))
    assert built == [p.name for p in _yaml_files()]


# --------------------------------------------------------------------------
# the reference


def test_the_committed_reference_is_current(capsys):
    """Regenerate with: python -m functional_nn configs --reference > docs/config_reference.md"""
    assert main(["configs", "--reference"]) == 0
    printed = capsys.readouterr().out
    assert printed == reference.config_reference()
    assert REFERENCE_FILE.read_text() == printed, (
        "docs/config_reference.md is stale: python -m functional_nn configs --reference > docs/config_reference.md"
    )


def _dataclass_paths(cls=Config, prefix=""):
    """Every field path of the schema's dataclasses, walked independently of the generator."""
    paths, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, tp = prefix + f.name, hints[f.name]
        nested = [a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)]
        if nested and path != "optimizer.schedule":
            if prefix:
                paths.append(path)
            paths += _dataclass_paths(nested[0], path + ".")
        else:
            paths.append(path)
    return paths


def test_every_schema_key_has_a_meaning():
    expected = set(_dataclass_paths()) - {"optimizer.hyperparameters"}
    assert {k.path for k in reference.schema_keys()} == expected
    assert reference.missing_meanings() == []
    assert all(schema.KEY_MEANINGS[path].strip() for path in expected)


def test_a_key_without_a_meaning_is_reported(monkeypatch):
    monkeypatch.delitem(schema.KEY_MEANINGS, "training.unroll")
    monkeypatch.setattr(reference, "KEY_MEANINGS", schema.KEY_MEANINGS)
    assert reference.missing_meanings() == ["training.unroll"]


def _row(text: str, first_cell: str) -> list:
    line = next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_reference_rows_hold_the_schema_defaults_and_ranges():
    text = reference.config_reference()
    assert _row(text, "`training.batch_size`")[1:4] == ["an integer", f"`{schema.TrainingConfig.batch_size}`", "[1, inf)"]
    assert _row(text, "`optimizer.clip`")[3] == "(0, inf)"
    assert _row(text, "`data.name`")[3] == " \\| ".join(DATASETS)
    assert _row(text, "`training.early_stopping.monitor`")[3] == " \\| ".join(schema.MONITORS)


def test_reference_lists_every_registered_name_with_its_arguments():
    text = reference.config_reference()
    for name in OPTIMIZERS:
        row = _row(text, f"`{name}`")
        for argument, default in alias_hyperparameters(name).items():
            assert f"`{argument}` (" in row[1] and f"= {reference.yaml_text(default)})" in row[1]
    for name in LAYERS:
        row = _row(text, f"`{name}`")
        for argument, parameter in LAYERS.arguments(name).items():
            assert f"`{argument}` (" in row[1]
            if parameter.default is inspect.Parameter.empty:
                assert f"`{argument}` (" in row[1] and "required" in row[1]
    for name in (*LOSSES, *DATASETS):
        _row(text, f"`{name}`")
