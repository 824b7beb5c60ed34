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

from functional_nn._validation import check_in_range, _range_text
from functional_nn.data.datasets import DATASETS, STANDARDIZE_MODES
from functional_nn.losses import LOSSES

# --------------------------------------------------------------------------
# errors


class ConfigError(ValueError):
    """An invalid config: the message names the key path, the value and what is accepted."""


MAX_VALUE_CHARS = 200  # how much of a value an error message shows


def short_repr(value, limit: int = MAX_VALUE_CHARS) -> str:
    """``repr(value)`` of at most ``limit`` characters (``...`` where cut),
    computed without building the whole repr: a YAML alias bomb expands to
    billions of characters. ``reprlib`` bounds the nesting depth (3) and the
    items shown per level; the result is then cut to ``limit``."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    text = shortener.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def short_text(error, limit: int = 2 * MAX_VALUE_CHARS) -> str:
    """An exception's message (or any text) cut to ``limit`` characters."""
    text = str(error)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _closest(name: str, candidates) -> str:
    if not isinstance(name, str):
        return ""
    match = difflib.get_close_matches(name[:MAX_VALUE_CHARS], list(candidates), n=1, cutoff=0.5)
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
    return ConfigError(f"{path}={short_repr(value)}: {accepted}")


# --------------------------------------------------------------------------
# value checks (used as field metadata)


def in_range(low=-math.inf, high=math.inf, *, low_inclusive=True, high_inclusive=False):
    """A check that a number lies in the interval (message from ``_validation``)."""

    def check(path, value):
        try:
            check_in_range(path, value, low, high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    check.accepted = lambda: _range_text(low, high, low_inclusive, high_inclusive)
    return check


def one_of(*choices):
    """A check that the value is one of ``choices``; a single registry (a
    ``Mapping``) as ``choices`` is read when checking, so names registered
    later are accepted."""

    def accepted():
        return tuple(choices[0]) if len(choices) == 1 and isinstance(choices[0], Mapping) else choices

    def check(path, value):
        if value not in accepted():
            names = accepted()
            raise _value_error(path, value, f"must be one of {', '.join(map(repr, names))}{_closest(value, names)}")

    check.accepted = lambda: " | ".join(map(str, accepted()))
    return check


POSITIVE = in_range(0.0, low_inclusive=False)
NONNEGATIVE = in_range(0.0)
AT_LEAST_ONE = in_range(1)
FRACTION = in_range(0.0, 1.0)
MAX_EVAL_CHUNK_SIZE = 2**20  # examples evaluated at once; more gains no speed, only memory


def _check_seed(path, value):
    """A seed is a 32-bit unsigned integer (what ``jax.random.key`` and NumPy's generators take)."""
    if not 0 <= value < 2**32:
        raise _value_error(path, value, "must be an integer in [0, 2**32), i.e. 0 to 4294967295")


def _check_eval_chunk_size(path, value):
    if not 1 <= value <= MAX_EVAL_CHUNK_SIZE:
        raise _value_error(
            path, value, f"must be an integer in [1, 2**20] (at most {MAX_EVAL_CHUNK_SIZE} examples evaluated at once)"
        )


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
    ``noise``: sizes of the synthetic sets. Only the keys the chosen loader
    takes may be written (``experiment.builders.dataset_keys``)."""

    name: str = _checked("digits", one_of(DATASETS))
    path: str | None = None
    seed: int = _checked(0, _check_seed)
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


_check_devices.accepted = lambda: "all | an integer >= 1"


@dataclass(frozen=True)
class TrainingConfig:
    """``devices``: ``all`` or a number of devices for data parallelism (1: none).
    ``progress``: show a progress bar (null: when stderr is a terminal).
    ``unroll``: steps per iteration of the epoch's ``lax.scan``."""

    epochs: int = _checked(10, AT_LEAST_ONE)
    batch_size: int = _checked(64, AT_LEAST_ONE)
    seed: int = _checked(0, _check_seed)
    early_stopping: EarlyStoppingConfig | None = None
    augmentation: AugmentationConfig | None = None
    checkpoint_every: int = _checked(1, AT_LEAST_ONE)
    eval_chunk_size: int = _checked(1024, _check_eval_chunk_size)
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

# What each config key means, by its full path: the one table the config
# reference (``python -m functional_nn configs --reference``) reads. A schema
# field without an entry fails ``tests/test_configs_cmd.py``. The optimizer's
# own hyperparameters, layer arguments and schedule arguments are read from the
# registries' signatures instead.
KEY_MEANINGS = {
    "name": "the run's name: runs/<name>/ (default: the config file's name)",
    "data.name": "the data set, a name of functional_nn.data.DATASETS (table below)",
    "data.path": "the file (npz) or folder of IDX files (idx) to read; only for data sets that read files",
    "data.seed": "seed of the shuffle that splits the examples into train/val/test (and of synthetic sets)",
    "data.val_fraction": "fraction of the examples held out for validation (early stopping, search selection)",
    "data.test_fraction": "fraction of the examples held out for the final test",
    "data.standardize": "feature: per-feature mean/std of the training split; global: one mean/std; none: raw inputs",
    "data.n": "number of examples of a synthetic data set (spirals: over all classes)",
    "data.num_classes": "number of classes (arms) of the spirals data set",
    "data.noise": "noise level of a synthetic data set",
    "model.layers": "the network, a list of layers applied in order (functional_nn.layers.LAYERS, table below)",
    "model.compute_dtype": "the dtype inputs and matmuls/convs run in (e.g. bfloat16: mixed precision); params, "
    "normalisation statistics, the loss and the optimizer stay float32; null: the params' dtype",
    "model.flat_params": "true: keep params and optimizer state as one flat buffer per dtype (layers.flat_params; "
    "faster optimizer steps over many small leaves); not with clip_by_norm or a decay masked by name",
    "loss.name": "the divergence to minimise, a name of functional_nn.losses.LOSSES (table below)",
    "optimizer.name": "the update rule, a name of functional_nn.optim.OPTIMIZERS (table below)",
    "optimizer.learning_rate": "step size η (with a schedule: its initial or peak value)",
    "optimizer.schedule": "an optax schedule of the learning rate: a name or {name: ..., arguments} (table below)",
    "optimizer.clip": "clip every gradient component to [-clip, clip] (applied first)",
    "optimizer.clip_by_norm": "rescale each gradient leaf to norm at most this value",
    "optimizer.clip_by_global_norm": "rescale the whole gradient to global norm at most this value",
    "optimizer.l2": "coupled L2 penalty λ: the gradient becomes g + λw on the leaves decay_mask selects",
    "optimizer.decay_mask": "which leaves l2 and weight decay apply to: weights (leaves named w) or all",
    "training.epochs": "maximum number of epochs (early stopping may end sooner)",
    "training.batch_size": "examples per minibatch (the global batch when data parallel)",
    "training.seed": "seed of the initial weights, the shuffles, dropout and augmentation",
    "training.early_stopping": "stop when the monitored metric stops improving (null: train all epochs)",
    "training.early_stopping.patience": "epochs without improvement before stopping (null: never stop)",
    "training.early_stopping.min_delta": "smallest change that counts as an improvement",
    "training.early_stopping.monitor": "the metric watched (and, in a search, the one settings are selected by)",
    "training.early_stopping.mode": "min or max of the monitored metric is best (auto: max for accuracy)",
    "training.early_stopping.restore_best": "end with the best epoch's parameters instead of the last epoch's",
    "training.augmentation": "random changes to each training batch, inside the compiled epoch (null: none)",
    "training.augmentation.shift": "random shift of images by up to this many pixels",
    "training.augmentation.noise_std": "standard deviation of Gaussian noise added to the inputs",
    "training.augmentation.flip": "random horizontal flips of images",
    "training.checkpoint_every": "write the checkpoint every this many epochs (and at the end)",
    "training.eval_chunk_size": "examples per evaluation chunk (bounds evaluation memory)",
    "training.devices": "data parallelism over this many devices (all: every device; 1: none)",
    "training.progress": "progress bar (null: a bar on a terminal, one line per epoch otherwise; false: silent)",
    "training.unroll": "steps per iteration of the epoch's lax.scan (speed/compile-time trade)",
    "search": "grid search: section.key paths mapped to lists of values (every combination is a setting)",
}

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


