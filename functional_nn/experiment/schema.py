"""The config schema: typed, validated dataclasses per section, and the generic
parsing of a mapping into them (unknown keys, types, value checks), with
:class:`ConfigError` naming the key path, the value and what is accepted."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from functional_nn._validation import check_in_range
from functional_nn.data.datasets import DATASETS, STANDARDIZE_MODES
from functional_nn.losses import LOSSES

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


def keyed_error(error: Exception, path: str, values: dict | None = None) -> ConfigError:
    """A library function's ``ValueError``/``TypeError`` under the YAML key.

    The library names its own argument (``eps=-1.0: must be in [0, inf)``); the
    message becomes ``<path>.eps=-1.0: ...``. Given ``values`` (the arguments
    passed), a message naming something else is put under the one argument
    whose string value it quotes (``<path>.w_init: initializer='x' ...``), else
    under ``path``.
    """
    message = str(error)
    named = message.split("=", 1)[0]
    if named.isidentifier() and (values is None or named in values):
        return ConfigError(f"{path}.{message}")
    quoted = [k for k, v in (values or {}).items() if isinstance(v, str) and repr(v) in message]
    return ConfigError(f"{path}.{quoted[0]}: {message}" if len(quoted) == 1 else f"{path}: {message}")


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
    """A check that the value is one of ``choices``; a single registry (a
    ``Mapping``) as ``choices`` is read when checking, so names registered
    later are accepted."""

    def check(path, value):
        accepted = tuple(choices[0]) if len(choices) == 1 and isinstance(choices[0], Mapping) else choices
        if value not in accepted:
            raise _value_error(path, value, f"must be one of {', '.join(map(repr, accepted))}{_closest(value, accepted)}")

    return check


POSITIVE = in_range(0.0, low_inclusive=False)
NONNEGATIVE = in_range(0.0)
AT_LEAST_ONE = in_range(1)
FRACTION = in_range(0.0, 1.0)


def _checked(default, check=None, **kwargs):
    return field(default=default, metadata={"check": check}, **kwargs)


# --------------------------------------------------------------------------
# schema

MONITORS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")

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

    name: str = _checked("digits", one_of(DATASETS))
    path: str | None = None
    seed: int = _checked(0, NONNEGATIVE)
    val_fraction: float = _checked(0.1, FRACTION)
    test_fraction: float = _checked(0.2, FRACTION)
    standardize: str = _checked("feature", one_of(*STANDARDIZE_MODES))
    n: int = _checked(600, AT_LEAST_ONE)
    num_classes: int = _checked(3, in_range(2))
    noise: float = _checked(0.2, NONNEGATIVE)


@dataclass(frozen=True)
class LayerConfig:
    """One layer: its registered name in ``functional_nn.layers.LAYERS`` and the
    constructor's arguments (checked against its signature and by calling it);
    a layer argument that holds layers (``residual``'s ``block``/``shortcut``)
    holds a tuple of ``LayerConfig``. ``name``: the user's name for the layer
    (``model.<name>.<arg>`` in ``--set`` and ``search``), unique in the model."""

    type: str
    args: dict = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """``layers`` in order (``serial``); ``compute_dtype`` (e.g. bfloat16) is
    passed to every layer that takes one (mixed precision: params, statistics
    and the loss stay float32); ``flat_params`` keeps the parameters as one
    flat buffer per dtype (``layers.flat_params``, a faster optimizer step for
    many small leaves)."""

    layers: tuple = ()
    compute_dtype: str | None = None
    flat_params: bool = False


@dataclass(frozen=True)
class LossConfig:
    name: str = _checked("softmax_cross_entropy", one_of(LOSSES))


@dataclass(frozen=True)
class ScheduleConfig:
    """An optax schedule by its config name (``SCHEDULES``), with the arguments
    other than the one the learning rate fills."""

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

    name: str = "adam"  # a name of functional_nn.optim.OPTIMIZERS (checked by parse_optimizer)
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
    values (the grid; read by ``functional_nn.experiment.search``)."""

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


