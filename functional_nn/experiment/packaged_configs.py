"""The configs that ship inside the package (``functional_nn/configs/*.yaml``;
the repository's ``configs/`` is a link to that folder), and how a command
line's CONFIG argument names a file or one of them."""

from __future__ import annotations

import os
from importlib import resources

from functional_nn.experiment.schema import ConfigError

SUFFIX = ".yaml"


def packaged_config_dir() -> str:
    """The folder of the packaged configs (inside the installed package)."""
    return str(resources.files("functional_nn") / "configs")


def packaged_config_names() -> list:
    """The names of the packaged configs (file names without ``.yaml``), sorted."""
    return sorted(f[: -len(SUFFIX)] for f in os.listdir(packaged_config_dir()) if f.endswith(SUFFIX))


def packaged_config_path(name: str) -> str:
    """The file of packaged config ``name``.

    Raises:
      ConfigError: no packaged config has that name (the message lists them).
    """
    if name not in packaged_config_names():
        raise ConfigError(f"config {name!r}: no such file and no packaged config of that name ({_listing()})")
    return os.path.join(packaged_config_dir(), name + SUFFIX)


def _listing() -> str:
    return "packaged configs: " + ", ".join(packaged_config_names())


def is_config_name(argument: str) -> bool:
    """A bare NAME (no folder, no ``.yaml``/``.yml`` suffix) rather than a path."""
    return os.sep not in argument and "/" not in argument and not argument.endswith((".yaml", ".yml"))


def resolve_config_path(argument: str) -> str:
    """The file a command line's CONFIG names: an existing file as it is, else a
    bare NAME (``digits_mlp``) as the packaged ``functional_nn/configs/NAME.yaml``.

    Raises:
      ConfigError: a path that does not exist, or a NAME that is not packaged.
    """
    if os.path.exists(argument):  # a file; a folder is reported by the reader
        return argument
    if is_config_name(argument):
        return packaged_config_path(argument)
    raise ConfigError(f"config file {argument!r} does not exist (or give a packaged config by NAME; {_listing()})")


def config_description(path: str) -> str:
    """The first comment line of a YAML file (without ``#``), or ``""``."""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("#"):
                return stripped.lstrip("#").strip()
            if stripped:
                return ""
    return ""
