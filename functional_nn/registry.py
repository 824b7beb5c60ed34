"""Registries: the library's public constructors of one kind, by name.

Each floor of the package owns one registry and registers its constructors
beside their code, so a name, its arguments and their defaults are written
once::

    # functional_nn/layers/core.py
    @LAYERS.register
    def dense(out_dim: int, *, w_init="lecun_normal", ...) -> Layer: ...

    LAYERS.register(relu, name="relu")          # a ready-made value

The config layer (``functional_nn.experiment``) reads names and argument
lists from the registries (``names()``, ``arguments(name)``) and lets each
constructor check its own values: a constructor raises ``ValueError`` naming
its argument, which the config layer reports under the YAML key. Adding an
optimizer, layer, loss or dataset is therefore one ``register`` call plus
its test; it is then available in YAML.

This module is the bottom floor: it imports nothing of the package.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterator, Mapping, NamedTuple

__all__ = ["Registry", "Entry"]


class Entry(NamedTuple):
    """One registered name.

    Attributes:
      name: the name used in configs.
      value: the constructor (a callable) or a ready-made value (e.g. an
        activation ``Layer``); ``is_constructor`` says which.
      is_constructor: True when ``value`` is called with the config's
        arguments, False when it is used as it is.
      main_argument: the argument a short form ``- name: value`` sets (the
        first positional parameter of the constructor), or None.
    """

    name: str
    value: Any
    is_constructor: bool
    main_argument: str | None


def _first_positional(fn: Callable) -> str | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    for parameter in parameters:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return parameter.name
    return None


class Registry(Mapping):
    """Names of one kind (``"optimizer"``, ``"layer"``, ...) mapped to :class:`Entry`.

    A read-only :class:`~collections.abc.Mapping` once filled; ``register``
    is the only way in, and a name is registered once.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, value=None, *, name: str | None = None, constructor: bool | None = None,
                 main_argument: str | None = None):
        """Register ``value`` under ``name`` (default: its ``__name__``); returns ``value``.

        Usable as ``@REGISTRY.register`` or ``@REGISTRY.register(name="npz")``.

        Args:
          value: a constructor, or a ready-made value.
          name: the config name.
          constructor: whether ``value`` is called with the config's arguments;
            default: True for functions, False for anything else (e.g. a
            ``Layer`` NamedTuple, which is callable-free).
          main_argument: the argument of the short form ``- name: value``;
            default: the first positional parameter.

        Raises:
          ValueError: the name is registered already.
        """
        if value is None:
            return lambda v: self.register(v, name=name, constructor=constructor, main_argument=main_argument)
        key = name or getattr(value, "__name__", None)
        if not key:
            raise ValueError(f"{self.kind} registry: {value!r} has no __name__; pass name=")
        if key in self._entries:
            raise ValueError(f"{self.kind} {key!r} is registered already")
        is_constructor = inspect.isfunction(value) if constructor is None else constructor
        main = main_argument if main_argument is not None else (_first_positional(value) if is_constructor else None)
        self._entries[key] = Entry(key, value, is_constructor, main)
        return value

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise KeyError(self.unknown_message(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def unknown_message(self, name: Any) -> str:
        """``unknown optimizer 'adm': accepted: sgd, adam, ... (did you mean 'adam'?)``."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}: accepted: {', '.join(self.names())}{hint}"

    def lookup(self, name: str) -> Entry:
        """The entry of ``name``; ``ValueError`` naming the accepted names otherwise."""
        if name not in self._entries:
            raise ValueError(self.unknown_message(name))
        return self._entries[name]

    def arguments(self, name: str) -> Mapping[str, inspect.Parameter]:
        """The keyword-settable parameters of ``name``'s constructor (empty for a value)."""
        entry = self.lookup(name)
        if not entry.is_constructor:
            return {}
        return {
            p.name: p
            for p in inspect.signature(entry.value).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def build(self, name: str, /, **kwargs):
        """Call ``name``'s constructor with ``kwargs`` (or return its value when it takes none)."""
        entry = self.lookup(name)
        if not entry.is_constructor:
            if kwargs:
                raise TypeError(f"{self.kind} {name!r} takes no arguments; got {', '.join(kwargs)}")
            return entry.value
        return entry.value(**kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
