"""The special sections: model layers (``- relu``, ``- dense: 256``,
``- dropout: {rate: 0.2}``, ``- {type: dropout, rate: 0.2}``), the optimizer
with its alias's own hyperparameters, and its schedule."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Union

from functional_nn.experiment.schema import (
    ConfigError,
    keyed_error,
    LayerConfig,
    MASK_ARGUMENTS,
    ModelConfig,
    one_of,
    OptimizerConfig,
    parse_section,
    ScheduleConfig,
    SCHEDULES,
    unknown_key_error,
    _as_mapping,
    _closest,
    _convert,
    _value_error,
)
from functional_nn.layers import LAYERS
from functional_nn.optim import OPTIMIZERS

# --------------------------------------------------------------------------
# model layers, read from ``functional_nn.layers.LAYERS``

# a YAML spelling of a constructor argument: dense's ``out_dim`` as flax names it
LAYER_ARG_ALIASES = {"dense": {"features": "out_dim"}}

_ANNOTATED_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}
_SCALARS = (bool, int, float, str, type(None))


def argument_type(parameter: inspect.Parameter):
    """The YAML type of a constructor argument, from its annotation (``int``,
    ``float``, ``str``, ``bool``, unions of them) or else its default: a bool,
    int, float or str default gives that type; ``None`` gives ``str | None``; a
    default YAML cannot write (a dtype, a callable) gives ``str``. Without
    either, any YAML value is passed on (the constructor checks it)."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        names = [name.strip() for name in annotation.split("|")]
        if all(name in _ANNOTATED_TYPES for name in names):
            kinds = tuple(_ANNOTATED_TYPES[name] for name in names)
            return Union[kinds] if len(kinds) > 1 else kinds[0]
    elif annotation in _SCALARS:
        return annotation
    default = parameter.default
    if default is inspect.Parameter.empty:
        return None
    if default is None:
        return Union[str, type(None)]
    if type(default) in _SCALARS:
        return type(default)
    return str


def layer_arguments(name: str) -> dict:
    """The YAML-settable arguments of layer ``name`` (argument -> ``inspect.Parameter``)."""
    return dict(LAYERS.arguments(name))


def unknown_layer_error(name, path: str) -> ConfigError:
    return _value_error(f"{path}.type", name, f"unknown layer{_closest(name, LAYERS)} (accepted: {', '.join(LAYERS)})")


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
            if name not in LAYERS:
                raise unknown_layer_error(name, path)
            main = LAYERS[name].main_argument
            if main is None:
                raise _value_error(path, entry, f"layer {name!r} takes no main argument; write '- {name}'")
            entry = {"type": name, main: args}
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise _value_error(path, entry, "a layer must be a name ('- relu'), '- name: value' or a mapping with 'type'")
    return dict(entry)


def _convert_argument(parameter: inspect.Parameter, value, path: str):
    tp = argument_type(parameter)
    return value if tp is None else _convert(tp, value, path)


def parse_layer(entry: dict, path: str) -> LayerConfig:
    """A layer entry checked against its registered constructor: names, argument
    names and types from its signature, values by calling it once."""
    name = entry["type"]
    if name not in LAYERS:
        raise unknown_layer_error(name, path)
    parameters, aliases, args = layer_arguments(name), LAYER_ARG_ALIASES.get(name, {}), {}
    for key, value in entry.items():
        if key == "type":
            continue
        key = aliases.get(key, key)
        if key not in parameters:
            raise unknown_key_error(path, key, ["type", *parameters])
        args[key] = _convert_argument(parameters[key], value, f"{path}.{key}")
    missing = [a for a, p in parameters.items() if p.default is inspect.Parameter.empty and a not in args]
    if missing:
        raise ConfigError(f"{path}: {name} needs {', '.join(map(repr, missing))} (e.g. '- {name}: VALUE')")
    try:
        LAYERS.build(name, **args)
    except (ValueError, TypeError) as e:
        raise keyed_error(e, path, args) from None
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
    return OPTIMIZERS.lookup(name).value


def alias_hyperparameters(name: str) -> dict:
    """The alias's keyword arguments other than the learning rate and masks, with defaults."""
    return {
        p.name: p.default
        for p in OPTIMIZERS.arguments(name).values()
        if p.name not in ("learning_rate", *MASK_ARGUMENTS)
    }


def _hyperparameter_type(default):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    return Union[float, bool, str, type(None)]


def _convert_schedule_argument(parameter: inspect.Parameter, value, path: str):
    """An optax schedule argument converted by its annotation: ``int``,
    ``bool``, ``float`` as they are; a numeric union (``chex.Numeric``) as a
    number (or null when ``None`` is in the union); anything else (e.g.
    ``boundaries_and_scales``, a mapping) is passed on for optax to check."""
    annotation = parameter.annotation
    if annotation in (int, bool, float):
        return _convert(annotation, value, path)
    options = typing.get_args(annotation)
    if float in options:
        return _convert(Union[float, type(None)] if type(None) in options else float, value, path)
    return value


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
        raw[key] = _convert_schedule_argument(parameters[key], raw[key], f"{path}.{key}")
    missing = [
        p for p, v in parameters.items() if v.default is inspect.Parameter.empty and p != filled and p not in raw
    ]
    if missing:
        raise ConfigError(f"{path}: schedule {name!r} needs {', '.join(missing)}")
    return ScheduleConfig(name, raw)


def _not_applicable_error(path: str, key, name: str, accepted) -> ConfigError:
    """A key that is another optimizer's hyperparameter (``b1`` with ``sgd``)
    does not apply to ``name``; any other key is unknown."""
    if any(key in alias_hyperparameters(other) for other in OPTIMIZERS):
        return ConfigError(
            f"{path}.{key}: does not apply to {path}.name={name!r} (its keys: {', '.join(sorted(accepted))})"
        )
    return unknown_key_error(path, key, accepted)


def parse_optimizer(raw, path: str = "optimizer") -> OptimizerConfig:
    raw = dict(_as_mapping(raw, path))
    name = raw.get("name", OptimizerConfig.name)
    one_of(OPTIMIZERS)(f"{path}.name", name)
    own = {f.name for f in dataclasses.fields(OptimizerConfig)} - {"hyperparameters", "schedule"}
    extra_names = alias_hyperparameters(name)
    section = {k: v for k, v in raw.items() if k in own}
    hyperparameters = {}
    for key, value in raw.items():
        if key in own or key == "schedule":
            continue
        if key not in extra_names:
            raise _not_applicable_error(path, key, name, [*own, "schedule", *extra_names])
        hyperparameters[key] = _convert(_hyperparameter_type(extra_names[key]), value, f"{path}.{key}")
    config = parse_section(OptimizerConfig, section, path)
    return dataclasses.replace(
        config, schedule=parse_schedule(raw.get("schedule"), f"{path}.schedule"), hyperparameters=hyperparameters
    )

