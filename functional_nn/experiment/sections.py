"""The special sections: model layers (``- relu``, ``- dense: 256``,
``- dropout: {rate: 0.2}``, ``- {type: dropout, rate: 0.2}``), the optimizer
with its alias's own hyperparameters, and its schedule."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Union

from functional_nn._validation import check_dtype
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
from functional_nn.layers import residual as residual_module
from functional_nn.optim import OPTIMIZERS

# --------------------------------------------------------------------------
# model layers, read from ``functional_nn.layers.LAYERS``

#: the keys of the model section (a layer name may not be one of them)
MODEL_KEYS = ("layers", "compute_dtype", "flat_params")

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


def nested_layer_arguments(type_name: str) -> tuple:
    """The arguments of layer ``type_name`` that hold lists of layers (``residual``'s branches)."""
    return residual_module.BRANCHES if type_name == "residual" else ()


def check_layer_name(name, path: str, seen: dict) -> str:
    """A layer's ``name:``: an identifier, not a key of the model section, unique in the model.

    ``seen`` maps the names met so far to their positions (updated here)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise _value_error(f"{path}.name", name, "a layer name must be an identifier (letters, digits, '_')")
    if name in MODEL_KEYS:
        raise _value_error(f"{path}.name", name, f"a layer name must not be a model key ({', '.join(MODEL_KEYS)})")
    if name in seen:
        raise _value_error(f"{path}.name", name, f"duplicate layer name (also model.{seen[name]})")
    seen[name] = path.split(".", 1)[1]
    return name


def parse_layer(entry: dict, path: str, seen: dict | None = None) -> LayerConfig:
    """A layer entry checked against its registered constructor: names, argument
    names and types from its signature, values by calling it once. Layers
    inside it (``residual``'s ``block``/``shortcut``) are parsed the same way;
    errors name a named layer ``model.<name>``, others by position."""
    seen = {} if seen is None else seen
    entry = dict(entry)
    name = entry.pop("name", None)
    if name is not None:
        check_layer_name(name, path, seen)
    where = f"model.{name}" if name is not None else path
    type_name = entry["type"]
    if type_name not in LAYERS:
        raise unknown_layer_error(type_name, where)
    parameters, aliases, args = layer_arguments(type_name), LAYER_ARG_ALIASES.get(type_name, {}), {}
    nested = nested_layer_arguments(type_name)
    for key, value in entry.items():
        if key == "type":
            continue
        key = aliases.get(key, key)
        if key not in parameters:
            raise unknown_key_error(where, key, ["type", "name", *parameters])
        if key in nested:
            args[key] = None if value is None else parse_layer_list(value, f"{path}.{key}", seen)
        else:
            args[key] = _convert_argument(parameters[key], value, f"{where}.{key}")
    missing = [a for a, p in parameters.items() if p.default is inspect.Parameter.empty and a not in args]
    if missing:
        raise ConfigError(f"{where}: {type_name} needs {', '.join(map(repr, missing))} (e.g. '- {type_name}: VALUE')")
    if not nested:  # a layer holding layers is checked through them
        try:
            LAYERS.build(type_name, **args)
        except (ValueError, TypeError) as e:
            raise keyed_error(e, where, args) from None
    return LayerConfig(type_name, args, name)


def parse_layer_list(entries, path: str, seen: dict) -> tuple:
    """A non-empty YAML list of layers (``model.layers``, a residual's ``block``) as ``LayerConfig``s."""
    if not isinstance(entries, list) or not entries:
        raise _value_error(path, entries, "must be a non-empty list of layers")
    return tuple(parse_layer(normalize_layer(e, f"{path}.{i}"), f"{path}.{i}", seen) for i, e in enumerate(entries))


def parse_model(raw, path: str = "model") -> ModelConfig:
    """The model section: ``layers`` (nested residual blocks, named layers),
    ``compute_dtype`` (a float dtype name or null), ``flat_params``."""
    raw = _as_mapping(raw, path)
    for key in raw:
        if key not in MODEL_KEYS:
            raise unknown_key_error(path, key, MODEL_KEYS)
    layers = parse_layer_list(raw.get("layers"), f"{path}.layers", {})
    compute_dtype = _convert(Union[str, type(None)], raw.get("compute_dtype"), f"{path}.compute_dtype")
    if compute_dtype is not None:
        try:
            check_dtype("compute_dtype", compute_dtype)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}.{e}") from None
    flat = _convert(bool, raw.get("flat_params", False), f"{path}.flat_params")
    return ModelConfig(layers, compute_dtype, flat)


def model_to_dict(model: ModelConfig) -> dict:
    """The plain-data form of the model section (what ``parse_model`` reads back to ``model``)."""
    raw = {"layers": [_layer_to_dict(layer) for layer in model.layers]}
    if model.compute_dtype is not None:
        raw["compute_dtype"] = model.compute_dtype
    if model.flat_params:
        raw["flat_params"] = True
    return raw


def _layer_to_dict(layer: LayerConfig) -> dict:
    nested = nested_layer_arguments(layer.type)
    args = {k: [_layer_to_dict(c) for c in v] if k in nested and v is not None else v for k, v in layer.args.items()}
    return {"type": layer.type, **({"name": layer.name} if layer.name else {}), **args}


# --------------------------------------------------------------------------
# layer paths: ``layers.<i>`` (nested: ``layers.<i>.block.<j>``) or a layer's name


def layer_paths(layers: tuple, prefix: str = "layers") -> dict:
    """Every layer of the model, nested ones included: positional path -> ``LayerConfig``."""
    paths = {}
    for index, layer in enumerate(layers):
        here = f"{prefix}.{index}"
        paths[here] = layer
        for arg in nested_layer_arguments(layer.type):
            if layer.args.get(arg):
                paths.update(layer_paths(layer.args[arg], f"{here}.{arg}"))
    return paths


def layer_argument_path(model: ModelConfig, key: str) -> tuple | None:
    """(positional layer path, argument) of ``key`` = ``<layer>.<arg>`` below
    ``model.``, where ``<layer>`` is a positional path (``layers.3``,
    ``layers.2.block.0``) or a layer's name; None when no such layer argument."""
    layer_key, _, arg = key.rpartition(".")
    paths = layer_paths(model.layers)
    names = {layer.name: path for path, layer in paths.items() if layer.name}
    layer_key = names.get(layer_key, layer_key)
    if layer_key in paths and arg in layer_arguments(paths[layer_key].type):
        return layer_key, arg
    return None


def raw_layer_path(raw_model, name: str) -> list | None:
    """The positional path (``["layers", "3"]``) of the layer named ``name`` in a
    raw (YAML) model section, or None; used to read ``model.<name>.<arg>``."""
    if not isinstance(raw_model, dict):
        return None
    return _find_raw_name(raw_model.get("layers"), name, ["layers"])


def _find_raw_name(entries, name: str, prefix: list) -> list | None:
    if not isinstance(entries, list):
        return None
    for index, entry in enumerate(entries):
        try:
            entry = normalize_layer(entry, "")
        except ConfigError:
            continue
        here = [*prefix, str(index)]
        if entry.get("name") == name:
            return here
        for arg in nested_layer_arguments(entry.get("type")):
            found = _find_raw_name(entry.get(arg), name, [*here, arg])
            if found:
                return found
    return None


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

