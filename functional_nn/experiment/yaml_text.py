"""YAML text to plain data, strictly: a key written twice in one mapping is an
error (PyYAML's own loader silently keeps the last one, so a config with
``learning_rate: 0.001`` and later ``learning_rate: 50.0`` would train at 50).

Used for config files and for ``--set`` values alike.
"""

from __future__ import annotations

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice; the message names the key and both lines."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys. Keys brought in by a
    merge (``<<: *base``) may still be overridden: only the keys written in the
    mapping itself are compared."""

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            line = key_node.start_mark.line + 1
            if seen:
                raise DuplicateKeyError(
                    f"duplicate key {key!r} at lines {first_line[key]} and {line}; each key may appear once "
                    "in a mapping (YAML would silently keep the last)"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """The plain data (dicts, lists, scalars) of YAML ``text``.

    Raises:
      DuplicateKeyError: a mapping names one key twice.
      yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
