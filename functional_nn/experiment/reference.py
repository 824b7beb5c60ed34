"""The config reference (``docs/config_reference.md``, printed by ``python -m
functional_nn configs --reference``): every key with its type, default,
accepted values and meaning, generated from the schema's dataclasses
(:mod:`~functional_nn.experiment.schema`, meanings from its ``KEY_MEANINGS``)
and the registries (``optim.OPTIMIZERS``, ``layers.LAYERS``, ``losses.LOSSES``,
``data.DATASETS``) and optax's schedules, so it cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from functional_nn.data.datasets import DATASETS
from functional_nn.experiment.builders import dataset_keys
from functional_nn.experiment.schema import (
    Config,
    KEY_MEANINGS,
    SCHEDULES,
    _type_name,
)
from functional_nn.experiment.sections import (
    _hyperparameter_type,
    alias_hyperparameters,
    argument_type,
    layer_arguments,
)
from functional_nn.layers import LAYERS
from functional_nn.losses import LOSSES
from functional_nn.optim import OPTIMIZERS

# keys whose values are not read from field metadata: (type, accepted)
_SPECIAL_KEYS = {
    "model.layers": ("a list of layers", "see [Layers](#layers)"),
    "optimizer.name": (None, lambda: " | ".join(OPTIMIZERS)),
    "optimizer.schedule": ("a name or a mapping, or null", lambda: " | ".join(SCHEDULES)),
    "search": ("a mapping of key paths to lists", "numeric keys of the sections above (see [Grid search](#grid-search))"),
}
# dataclass fields that are not YAML keys of their own
_NOT_KEYS = {"optimizer.hyperparameters"}

HEADER = """# Config reference

Generated from the schema (`functional_nn/experiment/schema.py`, meanings in
its `KEY_MEANINGS`) and the registries by `python -m functional_nn configs
--reference`; `tests/test_configs_cmd.py` fails when this file is not current.
A config is a YAML mapping of the sections below; a key left out takes its
default, an unknown key is an error that names it. Any key can be changed on
the command line: `--set section.key=value` (YAML syntax).
"""


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One config key: its path, type, default, accepted values and meaning."""

    path: str
    type: str
    default: str
    accepted: str
    meaning: str


def yaml_text(value) -> str:
    """A default as it would be written in YAML (``null``, ``true``, ``1e-3``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == ():
        return "(required)"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _accepted(path: str, f: dataclasses.Field, tp) -> str:
    special = _SPECIAL_KEYS.get(path)
    if special is not None:
        return special[1]() if callable(special[1]) else special[1]
    check = f.metadata.get("check")
    if check is not None and hasattr(check, "accepted"):
        return check.accepted()
    return "true | false" if tp is bool else ""


def _section_type(tp):
    """The dataclass of a section field (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)


def schema_keys(cls=Config, prefix: str = "") -> list:
    """Every YAML key of the schema, depth first, as :class:`KeyInfo`. The
    top-level sections are walked into; a nested section (``training.early_stopping``,
    which may be null) is a key of its own and is walked into too."""
    keys, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, tp = f"{prefix}{f.name}", hints[f.name]
        if path in _NOT_KEYS:
            continue
        section = None if path in _SPECIAL_KEYS else _section_type(tp)
        if section is None or prefix:
            type_text = _SPECIAL_KEYS[path][0] if path in _SPECIAL_KEYS and _SPECIAL_KEYS[path][0] else _type_name(tp)
            accepted = "" if section is not None else _accepted(path, f, tp)
            keys.append(KeyInfo(path, type_text, yaml_text(_field_default(f)), accepted, KEY_MEANINGS.get(path, "")))
        if section is not None:
            keys.extend(schema_keys(section, path + "."))
    return keys


def missing_meanings() -> list:
    """Schema keys without an entry in ``KEY_MEANINGS`` (must be empty)."""
    return [k.path for k in schema_keys() if k.path not in KEY_MEANINGS]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _summary_line(obj) -> str:
    """The first paragraph of a docstring, on one line, rst ``code`` as markdown."""
    paragraph = inspect.cleandoc(getattr(obj, "__doc__", None) or "").split("\n\n")[0]
    return re.sub(r":\w+:`", "`", " ".join(paragraph.split()).replace("``", "`"))


def _argument_text(parameter: inspect.Parameter, type_text: str) -> str:
    default = "required" if parameter.default is inspect.Parameter.empty else f"= {yaml_text(parameter.default)}"
    return f"`{parameter.name}` ({type_text}, {default})"


def section_table(section: str, keys: list) -> str:
    """The table of one section's keys."""
    rows = [
        (f"`{k.path}`", k.type, f"`{k.default}`", k.accepted, k.meaning)
        for k in keys
        if k.path == section or k.path.startswith(section + ".")
    ]
    return f"## `{section}`\n\n" + _table(["key", "type", "default", "accepted", "meaning"], rows)


def datasets_table() -> str:
    rows = [(f"`{n}`", ", ".join(sorted(dataset_keys(n))), _summary_line(DATASETS[n].value)) for n in DATASETS]
    return "### Data sets\n\n`data.name`; a data set reads only the keys listed (others are ignored).\n\n" + _table(
        ["data.name", "keys it reads", "what"], rows
    )


def layers_table() -> str:
    rows = []
    for name in LAYERS:
        entry = LAYERS[name]
        if not entry.is_constructor:
            rows.append((f"`{name}`", "none", f"`- {name}`", f"elementwise {name} (no parameters)"))
            continue
        arguments = layer_arguments(name).values()
        args = ", ".join(_argument_text(p, _type_name(argument_type(p)) if argument_type(p) else "any") for p in arguments)
        short = f"`- {name}: VALUE` sets `{entry.main_argument}`" if entry.main_argument else f"`- {name}`"
        rows.append((f"`{name}`", args or "none", short, _summary_line(entry.value)))
    intro = (
        "### Layers\n\n`model.layers` entries: `- NAME` (no arguments), `- NAME: VALUE` (the first argument), "
        "`- NAME: {arg: value, ...}` or `- {type: NAME, arg: value, ...}`.\n\n"
    )
    return intro + _table(["layer", "arguments", "short form", "what"], rows)


def losses_table() -> str:
    rows = [(f"`{n}`", _summary_line(LOSSES[n].value)) for n in LOSSES]
    return "### Losses\n\n" + _table(["loss.name", "what"], rows)


def optimizers_table() -> str:
    rows = []
    for name in OPTIMIZERS:
        parameters = alias_hyperparameters(name)
        args = ", ".join(
            f"`{k}` ({_type_name(_hyperparameter_type(v))}, = {yaml_text(v)})" for k, v in parameters.items()
        )
        rows.append((f"`{name}`", args or "none", _summary_line(OPTIMIZERS[name].value)))
    intro = (
        "### Optimizers\n\n`optimizer.name`; its own hyperparameters are further keys of the `optimizer` "
        "section (e.g. `optimizer.b1: 0.95`).\n\n"
    )
    return intro + _table(["optimizer.name", "hyperparameters (type, default)", "what"], rows)


def schedules_table() -> str:
    import optax

    rows = []
    for name, (function, filled) in SCHEDULES.items():
        parameters = [p for p in inspect.signature(getattr(optax, function)).parameters.values() if p.name != filled]
        args = ", ".join(_argument_text(p, "any") for p in parameters)
        rows.append((f"`{name}`", f"`optax.{function}`", f"`{filled}`", args))
    intro = (
        "### Schedules\n\n`optimizer.schedule: NAME` or `{name: NAME, argument: value, ...}`; "
        "`optimizer.learning_rate` fills the argument named in the third column.\n\n"
    )
    return intro + _table(["name", "optax function", "learning rate fills", "other arguments"], rows)


def search_text() -> str:
    return (
        "### Grid search\n\n`search:` maps `section.key` paths to lists of values; every combination is "
        "one setting, e.g. `optimizer.learning_rate: [1.0e-3, 3.0e-3]`. Layer arguments are addressed by "
        "position: `model.layers.3.rate`. `seeds: N` (an integer >= 1, default 1) is an option, not a grid "
        "key: every setting is trained with the N training seeds `training.seed` .. `training.seed + N - 1` "
        "in the same compiled program, rows report the mean and standard deviation over the seeds, and "
        "selection uses the mean.\n"
    )


def config_reference() -> str:
    """The whole reference as markdown (what ``docs/config_reference.md`` holds):
    each section's keys, followed by the registry tables that section reads."""
    registry_tables = {
        "data": [datasets_table],
        "model": [layers_table],
        "loss": [losses_table],
        "optimizer": [optimizers_table, schedules_table],
        "search": [search_text],
    }
    keys, parts = schema_keys(), [HEADER]
    for section in [f.name for f in dataclasses.fields(Config)]:
        parts.append(section_table(section, keys))
        parts.extend(table() for table in registry_tables.get(section, []))
    return "\n".join(parts)
