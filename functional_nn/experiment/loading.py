"""Loading: YAML file or mapping (after ``--set`` overrides) to a validated
:class:`Config`, the cross-section checks, the search grid's validation,
and the plain-data form a run stores."""

from __future__ import annotations

import copy
import dataclasses
import os
import re

import yaml

from functional_nn.data.datasets import DATASETS
from functional_nn.losses import LOSSES
from functional_nn.experiment.builders import build_optimizer, build_schedule, check_flat_params, dataset_keys
from functional_nn.experiment.overrides import apply_overrides, set_path
from functional_nn.experiment.packaged_configs import resolve_config_path
from functional_nn.experiment.schema import (
    Config,
    ConfigError,
    DataConfig,
    keyed_error,
    LossConfig,
    parse_section,
    SECTIONS,
    short_repr,
    short_text,
    TrainingConfig,
    unknown_key_error,
    _as_mapping,
    _convert,
    _value_error,
)
from functional_nn.experiment.sections import model_to_dict, parse_model, parse_optimizer
from functional_nn.experiment.yaml_text import parse_yaml

MAX_SEARCH_SEEDS = 1024  # training seeds per setting of a grid search


def check_search_seeds(seeds, training_seed: int, where: str = "search.seeds") -> None:
    """``seeds`` training seeds per setting (seeds ``training_seed`` ..
    ``training_seed + seeds - 1``) must be an integer in [1, 1024] whose last
    seed is still a 32-bit seed (``training_seed + seeds <= 2**32``).

    Raises:
      ConfigError: naming ``where``, the value and what is accepted.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEARCH_SEEDS:
        raise _value_error(where, seeds, f"must be an integer in [1, {MAX_SEARCH_SEEDS}] (training seeds per setting)")
    if training_seed + seeds > 2**32:
        raise _value_error(
            where, seeds,
            f"with training.seed={training_seed} the last seed, training.seed + seeds - 1, must be below 2**32 "
            f"(at most {2**32 - training_seed} seeds)",
        )


def parse_search(raw, base: dict, source: str | None, path: str = "search", *, training_seed: int = 0) -> dict:
    """Validate the grid: each key a ``section.key`` path of the config, each value
    a non-empty list whose every entry makes a valid config; and the option
    ``seeds`` (training seeds per setting, :func:`check_search_seeds` with
    ``training_seed``, the config's ``training.seed``)."""
    raw = _as_mapping(raw, path)
    grid = {}
    for key, values in raw.items():
        where = f"{path}.{key}"
        if key == "seeds":  # an option of the search, not a grid key: train every setting with N seeds
            grid[key] = _convert(int, values, where)
            check_search_seeds(grid[key], training_seed, where)
            continue
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
                raise ConfigError(f"{where}: value {short_repr(value)} is invalid: {e}") from None
        grid[key] = list(values)
    return grid



# loading

DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}


def applicable_data_section(raw) -> dict:
    """The ``data`` mapping without the keys set to null that ``data.name``'s
    loader does not take; a key it does not take with a value is an error
    (``--set data.name=npz`` on a spirals config needs ``--set data.n=null``).

    Raises:
      ConfigError: naming the key, ``data.name`` and the keys that loader takes.
    """
    raw = _as_mapping(raw, "data")
    name = raw.get("name", DataConfig.name)
    if not isinstance(name, str) or name not in DATASETS:
        return raw  # parse_section names the bad data.name
    accepted = dataset_keys(name)
    section = {}
    for key, value in raw.items():
        if key in accepted or key not in DATA_FIELDS:
            section[key] = value  # unknown keys: parse_section's error
        elif value is not None:
            raise ConfigError(
                f"data.{key}: does not apply to data.name={name!r}, whose loader takes {', '.join(sorted(accepted))} "
                f"(remove data.{key}, or set it to null)"
            )
    return section


def _check_data_section(data: DataConfig) -> None:
    """A loader that reads a file (its signature has a required argument,
    :func:`~functional_nn.experiment.builders.dataset_file_argument`) needs an
    existing ``data.path``."""
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
    except (ValueError, TypeError) as e:  # e.g. mu_dtype: float99 is put under optimizer.mu_dtype
        optimizer = config.optimizer
        values = {f.name: getattr(optimizer, f.name) for f in dataclasses.fields(optimizer) if f.name != "hyperparameters"}
        raise keyed_error(e, "optimizer", {**values, **optimizer.hyperparameters}) from None


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
        data=parse_section(DataConfig, applicable_data_section(raw.get("data")), "data"),
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


def _training_output_shape(model, input_spec) -> tuple:
    """The model's output shape for a training batch ``input_spec`` (a
    ``jax.ShapeDtypeStruct``), traced abstractly (nothing is compiled or run), so
    that shape errors and a training batch of one reaching batch norm surface
    here, before any file is written."""
    import jax

    def forward(key, x):
        _, params, state = model.init(key, x.shape)
        return model.apply(params, state, x, train=True, key=key)[0]

    return tuple(jax.eval_shape(forward, jax.random.key(0), input_spec).shape)


def _loss_parameters(loss_name: str) -> list:
    """The parameter names of registered loss ``loss_name``, in order."""
    import inspect

    return list(inspect.signature(LOSSES.lookup(loss_name).value).parameters)


def takes_class_labels(loss_name: str) -> bool:
    """Whether loss ``loss_name`` needs integer class labels: its target
    argument is named ``labels`` (``softmax_cross_entropy(logits, labels)``),
    not ``d`` (a target distribution or vector)."""
    parameters = _loss_parameters(loss_name)
    return len(parameters) > 1 and parameters[1] == "labels"


def takes_logits(loss_name: str) -> bool:
    """Whether loss ``loss_name`` takes the model's outputs as logits (its
    first argument is named ``logits``, as ``softmax_cross_entropy(logits,
    labels)``): class probabilities are then softmax(outputs)."""
    parameters = _loss_parameters(loss_name)
    return bool(parameters) and parameters[0] == "logits"


def check_experiment(config: Config, data, model) -> None:
    """Whether ``model`` can be trained on ``data`` (a ``DataSplits``) as the
    config says: ``training.batch_size`` fits the training split
    (:func:`check_batch_size`), the model accepts batches of that size in
    training mode (a batch of one reaching batch norm is an error), and the
    targets suit the loss and the model's output width K
    (:func:`functional_nn.data.check_targets`: class labels in [0, K), a
    classification loss on class labels only).

    Raises:
      ConfigError: naming ``training.batch_size``, ``loss.name`` or the model.
    """
    import jax

    from functional_nn.data import check_targets, DataError

    training = config.training
    check_batch_size(training, data)
    input_spec = jax.ShapeDtypeStruct((training.batch_size, *data.train.x.shape[1:]), data.train.x.dtype)
    try:
        output_shape = _training_output_shape(model, input_spec)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"model: {short_text(e)} (for a training batch of shape {input_spec.shape}: training.batch_size="
            f"{training.batch_size}, split sizes train {len(data.train.x)}, val {len(data.val.x)}, "
            f"test {len(data.test.x)})"
        ) from None
    classification = takes_class_labels(config.loss.name)
    try:
        check_targets(
            data, classification=classification or data.num_classes is not None, num_outputs=output_shape[-1]
        )
    except DataError as e:
        key = f"loss.name={config.loss.name!r}" if classification and data.num_classes is None else "model"
        raise ConfigError(f"{key}: {e} (data.name={config.data.name!r})") from None


def parse_config(raw: dict, *, source: str | None = None, overrides=()) -> Config:
    """Validate a raw mapping (e.g. from YAML), after ``overrides``, into a :class:`Config`."""
    raw = apply_overrides(_as_mapping(raw, ""), overrides)
    try:
        config = _parse_sections(raw, source)
        return dataclasses.replace(config, search=parse_search(raw.get("search"), raw, source, training_seed=config.training.seed))
    except ConfigError as e:
        if source is None:
            raise
        raise ConfigError(f"{source}: {e}") from None


def read_config_text(path: str) -> str:
    """The text of config file ``path``.

    Raises:
      ConfigError: naming ``path``: it does not exist, is a directory, cannot
        be read, or is not UTF-8 text (a binary file).
    """
    if os.path.isdir(path):
        raise ConfigError(f"config file {path!r} is a directory; give a YAML file (e.g. configs/digits_mlp.yaml)")
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"config file {path!r} cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path!r} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "a config is a YAML text file"
        ) from None


def load_config(path: str, overrides=()) -> Config:
    """Read and validate a YAML config file or a packaged config by NAME
    (:func:`~functional_nn.experiment.packaged_configs.resolve_config_path`); ``overrides`` as for :func:`apply_overrides`.

    Raises:
      ConfigError: naming the file: not a file nor a packaged config name, unreadable (:func:`read_config_text`), not
        valid YAML, a key written twice in one mapping (naming the key and both
        lines), or an invalid config (naming the key).
    """
    path = resolve_config_path(path)
    text = read_config_text(path)
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({short_text(e)})") from None
    return parse_config(raw or {}, source=path, overrides=overrides)


def config_to_dict(config: Config) -> dict:
    """The plain-data form of a config (what ``load_config`` reads back to the
    same config); the data section holds only the keys its loader takes."""
    raw = dataclasses.asdict(config)
    applicable = dataset_keys(config.data.name)
    raw["data"] = {key: value for key, value in raw["data"].items() if key in applicable}
    raw["model"] = model_to_dict(config.model)
    optimizer = raw["optimizer"]
    optimizer.update(optimizer.pop("hyperparameters"))
    if config.optimizer.schedule is not None:
        optimizer["schedule"] = {"name": config.optimizer.schedule.name, **config.optimizer.schedule.args}
    return raw


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# --------------------------------------------------------------------------
