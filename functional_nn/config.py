"""Experiment configs: YAML files loaded into typed, validated dataclasses.

A config has the sections ``data``, ``model``, ``loss``, ``optimizer``,
``training`` and ``search`` (and a ``name``). Loading checks every key: an
unknown key (with the closest valid name suggested), a wrong type, an
out-of-range value or a missing file raises :class:`ConfigError` naming the key
path, the value and what is accepted. ``--set section.key=value`` overrides
(the value parsed as YAML) are applied before validation, so they are checked
the same way.

Builders turn sections into library objects: :func:`build_data`,
:func:`build_model`, :func:`build_loss`, :func:`build_optimizer`,
:func:`build_augment`, :func:`build_early_stopping`. ``build_model`` and
``build_optimizer`` take ``hparams``, a dict overriding numeric
hyperparameters by name with values that may be traced (grid search builds
them inside ``jax.vmap``): ``{"learning_rate": lr, "b1": b1, "l2": lam}`` for
the optimizer, ``{"layers.3.rate": p}`` for the model.

Model layers are written ``- relu``, ``- dense: 256`` (the main argument),
``- dropout: {rate: 0.2}`` or ``- {type: dropout, rate: 0.2}``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

import yaml

from functional_nn._validation import check_in_range
from functional_nn.layers.core import INITIALIZERS as _LAYER_INITIALIZERS

# --------------------------------------------------------------------------
# errors


class ConfigError(ValueError):
    """An invalid config: the message names the key path, the value and what is accepted."""


def _closest(name: str, candidates) -> str:
    match = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def unknown_key_error(path: str, key: str, accepted) -> ConfigError:
    where = f"{path}.{key}" if path else str(key)
    return ConfigError(f"{where}: unknown key{_closest(key, accepted)} (accepted keys: {', '.join(sorted(accepted))})")


def _value_error(path: str, value, accepted: str) -> ConfigError:
    return ConfigError(f"{path}={value!r}: {accepted}")


# --------------------------------------------------------------------------
# value checks (used as field metadata)


def in_range(low=-math.inf, high=math.inf, *, low_inclusive=True, high_inclusive=False):
    """A check that a number lies in the interval (message from ``_validation``)."""

    def check(path, value):
        try:
            check_in_range(path, value, low, high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    return check


def one_of(*choices):
    def check(path, value):
        if value not in choices:
            raise _value_error(path, value, f"must be one of {', '.join(map(repr, choices))}{_closest(value, choices)}")

    return check


POSITIVE = in_range(0.0, low_inclusive=False)
NONNEGATIVE = in_range(0.0)
AT_LEAST_ONE = in_range(1)
FRACTION = in_range(0.0, 1.0)


def _checked(default, check=None, **kwargs):
    return field(default=default, metadata={"check": check}, **kwargs)


# --------------------------------------------------------------------------
# schema

DATASETS = ("digits", "spirals", "noisy_function", "npz", "idx")
LOSSES = ("softmax_cross_entropy", "kl_divergence_with_logits", "kl_divergence", "l2_divergence")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "rprop", "sign_sgd")
MONITORS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")

INITIALIZERS = tuple(_LAYER_INITIALIZERS)

# name -> {argument: check}; the first argument is the one ``- name: value`` sets.
LAYERS = {
    "dense": {"out_dim": AT_LEAST_ONE, "w_init": one_of(*INITIALIZERS), "b_init": one_of(*INITIALIZERS)},
    "relu": {},
    "sigmoid": {},
    "tanh": {},
    "softmax": {},
    "log_softmax": {},
    "gelu": {},
    "flatten": {},
    "batchnorm": {
        "eps": POSITIVE,
        "stats": one_of("ema", "cumulative"),
        "ema_decay": in_range(0.0, 1.0, high_inclusive=True),
        "axis_name": None,
    },
    "dropout": {"rate": FRACTION, "mode": one_of("inverted", "scale_at_test")},
}
LAYER_ARG_ALIASES = {"features": "out_dim"}  # dense's argument as flax names it
LAYER_ARG_TYPES = {
    "w_init": str,
    "b_init": str,
    "out_dim": int,
    "eps": float,
    "ema_decay": float,
    "rate": float,
    "stats": str,
    "mode": str,
    "axis_name": (str, type(None)),
}

MASK_ARGUMENTS = ("mask", "weight_decay_mask")  # set from optimizer.decay_mask

# schedule name -> (optax function name, argument the learning rate fills)
SCHEDULES = {
    "constant": ("constant_schedule", "value"),
    "cosine_decay": ("cosine_decay_schedule", "init_value"),
    "exponential_decay": ("exponential_decay", "init_value"),
    "linear": ("linear_schedule", "init_value"),
    "polynomial": ("polynomial_schedule", "init_value"),
    "piecewise_constant": ("piecewise_constant_schedule", "init_value"),
    "warmup_cosine_decay": ("warmup_cosine_decay_schedule", "peak_value"),
    "warmup_exponential_decay": ("warmup_exponential_decay_schedule", "peak_value"),
}


@dataclass(frozen=True)
class DataConfig:
    """``name``: digits | spirals | noisy_function | npz (``path`` to a .npz) |
    idx (``path`` to a directory of MNIST-style IDX files). ``n``, ``num_classes``,
    ``noise``: sizes of the synthetic sets."""

    name: str = _checked("digits", one_of(*DATASETS))
    path: str | None = None
    seed: int = _checked(0, NONNEGATIVE)
    val_fraction: float = _checked(0.1, FRACTION)
    test_fraction: float = _checked(0.2, FRACTION)
    standardize: str = _checked("feature", one_of("feature", "global", "none"))
    n: int = _checked(600, AT_LEAST_ONE)
    num_classes: int = _checked(3, in_range(2))
    noise: float = _checked(0.2, NONNEGATIVE)


@dataclass(frozen=True)
class LayerConfig:
    type: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    layers: tuple = ()


@dataclass(frozen=True)
class LossConfig:
    name: str = _checked("softmax_cross_entropy", one_of(*LOSSES))


@dataclass(frozen=True)
class ScheduleConfig:
    name: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    """An alias of ``functional_nn.optim`` with its learning rate (or a schedule
    whose peak/initial value it is), clipping applied to the gradient first
    (``clip`` by value, ``clip_by_norm`` per leaf, ``clip_by_global_norm``),
    the coupled L2 penalty g + λw (``l2`` = λ) on the leaves ``decay_mask``
    selects (``weights``: leaves named ``w``; ``all``), and the alias's own
    hyperparameters (``b1``, ``momentum``, ``weight_decay`` for adamw, ...) as
    further keys, stored in ``hyperparameters``."""

    name: str = _checked("adam", one_of(*OPTIMIZERS))
    learning_rate: float = _checked(1e-3, NONNEGATIVE)
    schedule: ScheduleConfig | None = None
    clip: float | None = _checked(None, POSITIVE)
    clip_by_norm: float | None = _checked(None, POSITIVE)
    clip_by_global_norm: float | None = _checked(None, POSITIVE)
    l2: float = _checked(0.0, NONNEGATIVE)
    decay_mask: str = _checked("weights", one_of("weights", "all"))
    hyperparameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EarlyStoppingConfig:
    patience: int | None = _checked(5, AT_LEAST_ONE)
    min_delta: float = _checked(0.0, NONNEGATIVE)
    monitor: str = _checked("val_loss", one_of(*MONITORS))
    mode: str = _checked("auto", one_of("auto", "min", "max"))
    restore_best: bool = True


@dataclass(frozen=True)
class AugmentationConfig:
    shift: int = _checked(0, NONNEGATIVE)
    noise_std: float = _checked(0.0, NONNEGATIVE)
    flip: bool = False


def _check_devices(path, value):
    if value != "all" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise _value_error(path, value, "must be 'all' or an integer >= 1")


@dataclass(frozen=True)
class TrainingConfig:
    """``devices``: ``all`` or a number of devices for data parallelism (1: none).
    ``progress``: show a progress bar (null: when stderr is a terminal).
    ``unroll``: steps per iteration of the epoch's ``lax.scan``."""

    epochs: int = _checked(10, AT_LEAST_ONE)
    batch_size: int = _checked(64, AT_LEAST_ONE)
    seed: int = _checked(0, NONNEGATIVE)
    early_stopping: EarlyStoppingConfig | None = None
    augmentation: AugmentationConfig | None = None
    checkpoint_every: int = _checked(1, AT_LEAST_ONE)
    eval_chunk_size: int = _checked(1024, AT_LEAST_ONE)
    devices: Union[int, str] = _checked(1, _check_devices)
    progress: bool | None = None
    unroll: int = _checked(1, AT_LEAST_ONE)


@dataclass(frozen=True)
class Config:
    """A whole experiment. ``search`` maps ``section.key`` paths to lists of
    values (the grid; read by ``functional_nn.train.grid_search``)."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: dict = field(default_factory=dict)


SECTIONS = {f.name for f in dataclasses.fields(Config)}

# --------------------------------------------------------------------------
# generic parsing of a mapping into a dataclass


def _type_name(tp) -> str:
    names = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        dict: "a mapping",
        type(None): "null",
    }
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(tp, value, path: str):
    """``value`` converted to type ``tp`` or a ConfigError naming ``path``."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        section = next((o for o in options if dataclasses.is_dataclass(o)), None)
        if section is not None and isinstance(value, dict):
            return parse_section(section, value, path)
        for option in options:
            try:
                return _convert(option, value, path)
            except ConfigError:
                continue
        raise _value_error(path, value, f"must be {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, path)
    if tp is type(None) and value is None:
        return None
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (str, dict) and isinstance(value, tp):
        return value
    raise _value_error(path, value, f"must be {_type_name(tp)}")


def _as_mapping(value, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _value_error(path or "config", value, "must be a mapping of keys to values")
    return value


def parse_section(cls, raw, path: str):
    """Build dataclass ``cls`` from mapping ``raw``: unknown keys, types and checks."""
    raw = _as_mapping(raw, path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise unknown_key_error(path, key, fields)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        where = f"{path}.{name}" if path else name
        values[name] = _convert(hints[name], value, where)
        check = fields[name].metadata.get("check")
        if check is not None and values[name] is not None:
            check(where, values[name])
    return cls(**values)


# --------------------------------------------------------------------------
# the special sections: model layers, optimizer hyperparameters, search grid


def normalize_layer(entry, path: str) -> dict:
    """One layer entry in its flat form ``{"type": name, arg: value, ...}``."""
    if isinstance(entry, str):
        entry = {"type": entry}
    elif isinstance(entry, dict) and "type" not in entry and len(entry) == 1:
        ((name, args),) = entry.items()
        if isinstance(args, dict):
            entry = {"type": name, **args}
        elif args is None:
            entry = {"type": name}
        else:
            main = next(iter(LAYERS.get(name, {})), None)
            if main is None:
                raise _value_error(path, entry, f"layer {name!r} takes no main argument; write '- {name}'")
            entry = {"type": name, main: args}
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise _value_error(path, entry, "a layer must be a name ('- relu'), '- name: value' or a mapping with 'type'")
    return dict(entry)


def parse_layer(entry: dict, path: str) -> LayerConfig:
    name = entry["type"]
    if name not in LAYERS:
        raise _value_error(
            f"{path}.type", name, f"unknown layer{_closest(name, LAYERS)} (accepted: {', '.join(LAYERS)})"
        )
    spec, args = LAYERS[name], {}
    for key, value in entry.items():
        if key == "type":
            continue
        key = LAYER_ARG_ALIASES.get(key, key) if name == "dense" else key
        if key not in spec:
            raise unknown_key_error(path, key, ["type", *spec])
        accepted = LAYER_ARG_TYPES[key]
        kinds = accepted if isinstance(accepted, tuple) else (accepted,)
        value = _convert(Union[kinds] if len(kinds) > 1 else kinds[0], value, f"{path}.{key}")
        if spec[key] is not None:
            spec[key](f"{path}.{key}", value)
        args[key] = value
    if name == "dense" and "out_dim" not in args:
        raise ConfigError(f"{path}: dense needs 'out_dim' (e.g. '- dense: 256')")
    return LayerConfig(name, args)


def parse_model(raw, path: str = "model") -> ModelConfig:
    raw = _as_mapping(raw, path)
    for key in raw:
        if key != "layers":
            raise unknown_key_error(path, key, ["layers"])
    layers = raw.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _value_error(f"{path}.layers", layers, "must be a non-empty list of layers")
    return ModelConfig(
        tuple(parse_layer(normalize_layer(e, f"{path}.layers.{i}"), f"{path}.layers.{i}") for i, e in enumerate(layers))
    )


def _optimizer_alias(name: str):
    from functional_nn import optim

    return getattr(optim, name)


def alias_hyperparameters(name: str) -> dict:
    """The alias's keyword arguments other than the learning rate and masks, with defaults."""
    signature = inspect.signature(_optimizer_alias(name))
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name not in ("learning_rate", *MASK_ARGUMENTS) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _hyperparameter_type(default):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    return Union[float, bool, str, type(None)]


def parse_schedule(raw, path: str) -> ScheduleConfig | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = dict(_as_mapping(raw, path))
    name = raw.pop("name", None)
    if name not in SCHEDULES:
        raise _value_error(f"{path}.name", name, f"must be one of {', '.join(SCHEDULES)}{_closest(name, SCHEDULES)}")
    import optax

    function_name, filled = SCHEDULES[name]
    parameters = inspect.signature(getattr(optax, function_name)).parameters
    accepted = [p for p in parameters if p != filled]
    for key in raw:
        if key not in accepted:
            raise unknown_key_error(path, key, ["name", *accepted])
    missing = [
        p for p, v in parameters.items() if v.default is inspect.Parameter.empty and p != filled and p not in raw
    ]
    if missing:
        raise ConfigError(f"{path}: schedule {name!r} needs {', '.join(missing)}")
    return ScheduleConfig(name, raw)


def parse_optimizer(raw, path: str = "optimizer") -> OptimizerConfig:
    raw = dict(_as_mapping(raw, path))
    name = raw.get("name", OptimizerConfig.name)
    one_of(*OPTIMIZERS)(f"{path}.name", name)
    own = {f.name for f in dataclasses.fields(OptimizerConfig)} - {"hyperparameters", "schedule"}
    extra_names = alias_hyperparameters(name)
    section = {k: v for k, v in raw.items() if k in own}
    hyperparameters = {}
    for key, value in raw.items():
        if key in own or key == "schedule":
            continue
        if key not in extra_names:
            raise unknown_key_error(path, key, [*own, "schedule", *extra_names])
        hyperparameters[key] = _convert(_hyperparameter_type(extra_names[key]), value, f"{path}.{key}")
    config = parse_section(OptimizerConfig, section, path)
    return dataclasses.replace(
        config, schedule=parse_schedule(raw.get("schedule"), f"{path}.schedule"), hyperparameters=hyperparameters
    )


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


# --------------------------------------------------------------------------
# overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> (``"a.b"``, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    path, value = text.split("=", 1)
    try:
        return path.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None


def set_path(raw: dict, path: str, value) -> None:
    """Set ``raw[a][b]... = value`` for path ``a.b...`` (list items by index;
    everything after ``search.`` is one key)."""
    parts = path.split(".")
    if parts[0] == "search" and len(parts) > 1:
        parts = ["search", ".".join(parts[1:])]
    node = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where)]
            continue
        if node.get(part) is None:
            node[part] = {}
        if part == "layers" and isinstance(node[part], list):
            node[part] = [normalize_layer(e, f"{where}.{i}") for i, e in enumerate(node[part])]
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise _value_error(where, node, f"cannot set {path}: {where} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, where: str) -> int:
    if not part.isdigit() or not int(part) < len(node):
        raise ConfigError(f"{where}: no such list item (indices 0 to {len(node) - 1})")
    return int(part)


def apply_overrides(raw: dict, overrides) -> dict:
    """A copy of ``raw`` with ``--set`` overrides (strings ``a.b=v`` or (path, value) pairs)."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        path, value = parse_override(override) if isinstance(override, str) else override
        try:
            set_path(raw, path, value)
        except ConfigError as e:
            raise ConfigError(f"--set {path}={value!r}: {e}") from None
    return raw


# --------------------------------------------------------------------------
# loading


def _check_data_files(data: DataConfig) -> None:
    if data.name in ("npz", "idx"):
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
        message = str(e)
        named = message.split("=", 1)[0]
        prefix = "optimizer." if named.isidentifier() else "optimizer: "
        raise ConfigError(prefix + message) from None


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
    _check_data_files(config.data)
    _check_split_fractions(config.data)
    _check_optimizer_builds(config)
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
    raw["model"] = {"layers": [{"type": layer.type, **layer.args} for layer in config.model.layers]}
    optimizer = raw["optimizer"]
    optimizer.update(optimizer.pop("hyperparameters"))
    if config.optimizer.schedule is not None:
        optimizer["schedule"] = {"name": config.optimizer.schedule.name, **config.optimizer.schedule.args}
    return raw


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# --------------------------------------------------------------------------
# builders


def build_data(data: DataConfig):
    """The :class:`~functional_nn.data.DataSplits` the section describes
    (see :func:`check_batch_size` for checking a batch size against it)."""
    from functional_nn import data as datasets

    common = dict(
        seed=data.seed,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        standardize_mode=data.standardize,
    )
    if data.name == "digits":
        return datasets.load_digits(**common)
    if data.name == "spirals":
        return datasets.spirals(max(1, data.n // data.num_classes), data.num_classes, data.noise, **common)
    if data.name == "noisy_function":
        return datasets.noisy_function(data.n, data.noise, **common)
    if data.name == "npz":
        return datasets.load_npz_file(data.path, **common)
    return datasets.load_idx_directory(data.path, **common)


def _check_hparam_names(section: str, hparams: dict, accepted) -> None:
    for key in hparams:
        if key not in accepted:
            raise unknown_key_error(section, key, accepted)


def build_model(model: ModelConfig, hparams: dict | None = None):
    """``serial`` of the layers; ``hparams`` maps ``"layers.<i>.<arg>"`` to
    (possibly traced) values replacing that layer argument."""
    from functional_nn import layers as nn

    hparams = dict(hparams or {})
    accepted = [f"layers.{i}.{arg}" for i, layer in enumerate(model.layers) for arg in LAYERS[layer.type]]
    _check_hparam_names("model", hparams, accepted)
    built = []
    for i, layer in enumerate(model.layers):
        args = dict(layer.args)
        args.update({k.rsplit(".", 1)[1]: v for k, v in hparams.items() if k.startswith(f"layers.{i}.")})
        built.append(_make_layer(nn, layer.type, args))
    return nn.serial(*built)


def _make_layer(nn, name: str, args: dict):
    factory = getattr(nn, name)
    if isinstance(factory, nn.Layer):  # a ready layer, e.g. an activation constant
        return factory
    if name == "dense":
        args = dict(args)
        return factory(args.pop("out_dim"), **args)
    return factory(**args)


def build_loss(loss: LossConfig):
    """``loss(outputs, targets)``; integer class labels are one-hot encoded for
    the losses that compare distributions (softmax cross-entropy takes them as is)."""
    import jax
    import jax.numpy as jnp

    from functional_nn import losses

    divergence = getattr(losses, loss.name)
    if loss.name == "softmax_cross_entropy":
        return divergence

    def loss_fn(outputs, targets):
        if jnp.issubdtype(targets.dtype, jnp.integer):
            targets = jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
        return divergence(outputs, targets)

    loss_fn.__name__ = loss.name
    return loss_fn


def _decay_mask(kind: str):
    """``weights``: only leaves named ``w`` (the notes' ½λΣ‖W_k‖², no biases or
    batch-norm γ/β); ``all``: every leaf (``None``, no mask)."""
    from functional_nn.losses import weights_mask

    return None if kind == "all" else weights_mask


def build_schedule(schedule: ScheduleConfig | None, learning_rate):
    """The optax schedule whose initial/peak value is ``learning_rate`` (or the rate itself)."""
    if schedule is None:
        return learning_rate
    import optax

    function_name, filled = SCHEDULES[schedule.name]
    return getattr(optax, function_name)(**{filled: learning_rate, **schedule.args})


def build_optimizer(optimizer: OptimizerConfig, hparams: dict | None = None):
    """``chain(clipping..., L2 penalty, alias)``; ``hparams`` overrides any of
    ``learning_rate``, ``l2``, ``clip``, ``clip_by_norm``, ``clip_by_global_norm``
    and the alias's hyperparameters with (possibly traced) values."""
    from functional_nn import optim

    hparams = dict(hparams or {})
    alias_names = alias_hyperparameters(optimizer.name)
    _check_hparam_names(
        "optimizer", hparams, ["learning_rate", "l2", "clip", "clip_by_norm", "clip_by_global_norm", *alias_names]
    )

    def value(name):
        return hparams.get(name, getattr(optimizer, name))

    mask = _decay_mask(optimizer.decay_mask)
    parts = []
    for name, transform in (
        ("clip", optim.clip),
        ("clip_by_norm", optim.clip_by_norm),
        ("clip_by_global_norm", optim.clip_by_global_norm),
    ):
        if value(name) is not None:
            parts.append(transform(value(name)))
    if "l2" in hparams or optimizer.l2 != 0.0:
        parts.append(optim.add_l2_penalty(value("l2"), mask))
    alias_args = {**optimizer.hyperparameters, **{k: v for k, v in hparams.items() if k in alias_names}}
    alias_parameters = inspect.signature(_optimizer_alias(optimizer.name)).parameters
    for mask_argument in MASK_ARGUMENTS:
        if mask_argument in alias_parameters:
            alias_args[mask_argument] = mask
    learning_rate = build_schedule(optimizer.schedule, value("learning_rate"))
    parts.append(_optimizer_alias(optimizer.name)(learning_rate, **alias_args))
    return parts[0] if len(parts) == 1 else optim.chain(*parts)


def build_augment(training: TrainingConfig, image_shape=None):
    """The keyed augmentation of ``training.augmentation`` (``None`` when off)."""
    from functional_nn.data import make_augment

    augmentation = training.augmentation
    if augmentation is None:
        return None
    if (augmentation.shift or augmentation.flip) and image_shape is None:
        raise ConfigError("training.augmentation: shift/flip need image data (this data set has no image shape)")
    return make_augment(
        shift=augmentation.shift, noise_std=augmentation.noise_std, flip=augmentation.flip, image_shape=image_shape
    )


def build_early_stopping(training: TrainingConfig):
    """The ``EarlyStopping`` settings. Without the section: never stop, keep the
    last parameters (the best epoch on ``val_loss`` is still reported)."""
    from functional_nn.train import EarlyStopping

    settings = training.early_stopping
    if settings is None:
        return EarlyStopping(patience=None, restore_best=False)
    return EarlyStopping(settings.patience, settings.min_delta, settings.monitor, settings.mode, settings.restore_best)
