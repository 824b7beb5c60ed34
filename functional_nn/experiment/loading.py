"""Loading: YAML file or mapping (after ``--set`` overrides) to a validated
:class:`Config`, the cross-section checks, the search grid's validation,
and the plain-data form a run stores."""

from __future__ import annotations

import copy
import dataclasses
import os
import re

import yaml

from functional_nn.experiment.builders import build_optimizer, build_schedule, check_flat_params, dataset_keys
from functional_nn.experiment.overrides import apply_overrides, set_path
from functional_nn.experiment.schema import (
    Config,
    ConfigError,
    DataConfig,
    keyed_error,
    LossConfig,
    parse_section,
    SECTIONS,
    TrainingConfig,
    unknown_key_error,
    _as_mapping,
    _convert,
    _value_error,
)
from functional_nn.experiment.sections import model_to_dict, parse_model, parse_optimizer

def parse_search(raw, base: dict, source: str | None, path: str = "search") -> dict:
    """Validate the grid: each key a ``section.key`` path of the config, each value
    a non-empty list whose every entry makes a valid config."""
    raw = _as_mapping(raw, path)
    grid = {}
    for key, values in raw.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or "." not in key or key.split(".")[0] not in SECTIONS - {"search", "name"}:
            raise _value_error(where, values, "search keys are 'section.key' paths, e.g. 'optimizer.learning_rate'")
        if not isinstance(values, list) or not values:
            raise _value_error(where, values, "must be a non-empty list of values")
        for value in values:
            trial = copy.deepcopy(base)
            trial.pop("search", None)
            set_path(trial, key, value)
            try:
                _parse_sections(trial, source)
            except ConfigError as e:
                raise ConfigError(f"{where}: value {value!r} is invalid: {e}") from None
        grid[key] = list(values)
    return grid



# loading


def _check_data_section(data: DataConfig) -> None:
    """A loader that reads a file (its signature has a required argument,
    :func:`~functional_nn.experiment.builders.dataset_file_argument`) needs an
    existing ``data.path``. Keys the loader does not take are not passed to it
    (:func:`~functional_nn.experiment.builders.dataset_arguments`); they stay
    accepted, so ``--set data.name=npz`` works on a config written for spirals."""
    if "path" in dataset_keys(data.name):
        if data.path is None:
            raise ConfigError(f"data.path: required for data.name={data.name!r}")
        if not os.path.exists(data.path):
            raise _value_error("data.path", data.path, "no such file or directory")


def _check_optimizer_builds(config: Config) -> None:
    """Let the optimizer validate its hyperparameters; its messages start with
    ``name=value``, which becomes ``optimizer.name=value``."""
    try:
        build_schedule(config.optimizer.schedule, config.optimizer.learning_rate)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer.schedule: {e}") from None
    try:
        build_optimizer(config.optimizer)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise keyed_error(e, "optimizer") from None


def _parse_sections(raw: dict, source: str | None) -> Config:
    raw = _as_mapping(raw, "")
    for key in raw:
        if key not in SECTIONS:
            raise unknown_key_error("", key, SECTIONS)
    default_name = os.path.splitext(os.path.basename(source))[0] if source else Config.name
    name = _convert(str, raw.get("name", default_name), "name")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise _value_error("name", name, "must be a run name of letters, digits, '_', '.', '-' (it names runs/<name>)")
    config = Config(
        name=name,
        data=parse_section(DataConfig, raw.get("data"), "data"),
        model=parse_model(raw.get("model"), "model"),
        loss=parse_section(LossConfig, raw.get("loss"), "loss"),
        optimizer=parse_optimizer(raw.get("optimizer"), "optimizer"),
        training=parse_section(TrainingConfig, raw.get("training"), "training"),
    )
    _check_data_section(config.data)
    _check_split_fractions(config.data)
    _check_optimizer_builds(config)
    check_flat_params(config.model, config.optimizer)
    return config


def _check_split_fractions(data: DataConfig) -> None:
    """The validation and test splits must leave some training data."""
    if data.val_fraction + data.test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction={data.val_fraction!r} + data.test_fraction={data.test_fraction!r} "
            f"= {data.val_fraction + data.test_fraction:g}: must be < 1 (no training examples would be left)"
        )


def check_batch_size(training: TrainingConfig, data) -> None:
    """``training.batch_size`` must not exceed the training split of ``data`` (a ``DataSplits``)."""
    examples = len(data.train.x)
    if training.batch_size > examples:
        raise ConfigError(
            f"training.batch_size={training.batch_size!r}: larger than the training split, which has "
            f"{examples} examples (lower training.batch_size to at most {examples})"
        )


def parse_config(raw: dict, *, source: str | None = None, overrides=()) -> Config:
    """Validate a raw mapping (e.g. from YAML), after ``overrides``, into a :class:`Config`."""
    raw = apply_overrides(_as_mapping(raw, ""), overrides)
    try:
        config = _parse_sections(raw, source)
        return dataclasses.replace(config, search=parse_search(raw.get("search"), raw, source))
    except ConfigError as e:
        if source is None:
            raise
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str, overrides=()) -> Config:
    """Read and validate a YAML config file; ``overrides`` as for :func:`apply_overrides`."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    with open(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
    return parse_config(raw or {}, source=path, overrides=overrides)


def config_to_dict(config: Config) -> dict:
    """The plain-data form of a config (what ``load_config`` reads back to the same config)."""
    raw = dataclasses.asdict(config)
    raw["model"] = model_to_dict(config.model)
    optimizer = raw["optimizer"]
    optimizer.update(optimizer.pop("hyperparameters"))
    if config.optimizer.schedule is not None:
        optimizer["schedule"] = {"name": config.optimizer.schedule.name, **config.optimizer.schedule.args}
    return raw


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# --------------------------------------------------------------------------
