"""``python -m functional_nn configs [NAME] [--reference]``: the packaged configs
(a list, or one printed to start from) and the config reference."""

from __future__ import annotations

import os

from functional_nn.experiment.packaged_configs import (
    config_description,
    packaged_config_dir,
    packaged_config_names,
    packaged_config_path,
)


def config_listing() -> str:
    """One line per packaged config: its name and the first line of its comment."""
    names = packaged_config_names()
    width = max(map(len, names), default=0)
    lines = [
        f"{name:<{width}}  {config_description(os.path.join(packaged_config_dir(), name + '.yaml'))}".rstrip()
        for name in names
    ]
    hint = "run one with: python -m functional_nn train NAME; print one with: python -m functional_nn configs NAME"
    return "\n".join(lines + ["", hint]) + "\n"


def config_text(name: str) -> str:
    """The YAML text of packaged config ``name`` (``ConfigError`` if there is none)."""
    with open(packaged_config_path(name)) as f:
        return f.read()


def configs_command(name: str | None, *, reference: bool) -> int:
    """Print the reference (``reference``), config ``name``, or the list."""
    if reference:
        from functional_nn.experiment.reference import config_reference

        print(config_reference(), end="")
    elif name is not None:
        print(config_text(name), end="")
    else:
        print(config_listing(), end="")
    return 0
