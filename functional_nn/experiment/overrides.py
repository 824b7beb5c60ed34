"""``--set section.key=value`` overrides, applied to the raw mapping before validation."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from functional_nn.experiment.schema import ConfigError, short_repr, short_text, _value_error
from functional_nn.experiment.sections import MODEL_KEYS, normalize_layer, raw_layer_path
from functional_nn.experiment.yaml_text import parse_yaml

#: keys whose values are lists of layers (normalised when a path walks into them)
LAYER_LISTS = ("layers", "block", "shortcut")

# --------------------------------------------------------------------------
# overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> (``"a.b"``, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {short_text(text)}: expected section.key=value")
    path, value = text.split("=", 1)
    try:
        return path.strip(), parse_yaml(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {short_text(text)}: the value is not valid YAML ({short_text(e)})") from None


def set_path(raw: dict, path: str, value) -> None:
    """Set ``raw[a][b]... = value`` for path ``a.b...`` (list items by index;
    everything after ``search.`` is one key; ``model.<name>`` is the layer
    named ``<name>``, wherever it is nested)."""
    parts = path.split(".")
    if parts[0] == "search" and len(parts) > 1:
        parts = ["search", ".".join(parts[1:])]
    if parts[0] == "model" and len(parts) > 2 and parts[1] not in MODEL_KEYS:
        parts[1:2] = raw_layer_path(raw.get("model"), parts[1]) or parts[1:2]
    node = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where)]
            continue
        if node.get(part) is None:
            node[part] = {}
        if part in LAYER_LISTS and isinstance(node[part], list):
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
            raise ConfigError(f"--set {path}={short_repr(value)}: {e}") from None
    return raw


# --------------------------------------------------------------------------
