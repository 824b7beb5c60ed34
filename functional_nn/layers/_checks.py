"""Validation of string-valued layer options (numeric ranges: ``functional_nn._validation``)."""

from __future__ import annotations


def check_choice(name: str, value, choices):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: must be one of {sorted(choices)}")
    return value
