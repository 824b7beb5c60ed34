"""Validation of hyperparameters, shared by optimizers, layers and configs.

A hyperparameter may be a Python number, a concrete array, a schedule
(a callable ``step -> value``) or a traced JAX value (an optimizer built
inside ``jax.jit``/``jax.vmap``). Only concrete values can be checked; the
helpers here skip ``None``, callables and tracers, and otherwise raise a
``ValueError`` that names the argument, the value and the accepted range::

    learning_rate=-0.1: must be in [0, inf)

A value of the wrong *type* (a string, a bool, ``None`` where a number is
required) raises :class:`HyperparameterTypeError`, a ``TypeError`` that is also
a ``ValueError`` (so code that reports every bad value as a ``ValueError``,
such as the config layer, keeps working)::

    b1='0.9': must be a number, not str

Every ``check_*`` helper returns the value unchanged, so it can be used
inline: ``lr = check_nonnegative("learning_rate", lr)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "HyperparameterTypeError",
    "is_concrete",
    "check_flag",
    "check_in_range",
    "check_nonnegative",
    "check_positive",
    "check_unit_interval",
    "check_less_equal",
]


class HyperparameterTypeError(TypeError, ValueError):
    """A hyperparameter of the wrong type; the message names the argument.

    Both a ``TypeError`` (what Python raises for a wrong type) and a
    ``ValueError`` (what callers catch for any bad hyperparameter).
    """


def is_concrete(value: Any) -> bool:
    """True when ``value`` is a number or array whose value is known now.

    ``None``, schedules (callables) and JAX tracers are not concrete.
    """
    if value is None or callable(value):
        return False
    if isinstance(value, jax.core.Tracer):
        return False
    return True


def _format_bound(bound: float) -> str:
    if math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    return f"{bound:g}"


def _range_text(low: float, high: float, low_inclusive: bool,
                high_inclusive: bool) -> str:
    # An infinite upper bound is shown closed only when it is explicitly
    # included (``(0, inf]`` accepts inf); by default it is open.
    opening = "[" if low_inclusive and not math.isinf(low) else "("
    closing = "]" if high_inclusive else ")"
    return f"{opening}{_format_bound(low)}, {_format_bound(high)}{closing}"


def _format_value(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return repr(array.item())
    return np.array2string(array, threshold=8)


def _as_float_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; a :class:`HyperparameterTypeError` naming
    ``name`` for anything that is not a number (bools and strings included)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise HyperparameterTypeError(
            f"{name}={value!r}: must be a number, not {type(value).__name__}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise HyperparameterTypeError(
            f"{name}={value!r}: must be a number, not {type(value).__name__}") from error
    if np.asarray(value).dtype == np.bool_:
        raise HyperparameterTypeError(f"{name}={_format_value(value)}: must be a number, not bool")
    return array


def _all_in_range(array: np.ndarray, low: float, high: float,
                  low_inclusive: bool, high_inclusive: bool) -> bool:
    above = array >= low if low_inclusive else array > low
    below = array <= high if high_inclusive else array < high
    # NaN fails both comparisons, so it is reported as out of range.
    return bool(np.all(above & below))


def check_in_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
    required: bool = False,
) -> Any:
    """Raise ``ValueError`` unless every element of a concrete ``value`` lies in
    the interval from ``low`` to ``high`` (``[low, high)`` by default).

    Non-concrete values (schedules, tracers) are returned unchecked, and so is
    ``None`` unless ``required``.

    Raises:
      HyperparameterTypeError: ``value`` is not a number (a string, a bool,
        ``None`` when ``required``).
      ValueError: a concrete ``value`` outside the interval (NaN included).
    """
    if value is None and required:
        raise HyperparameterTypeError(f"{name}=None: must be a number")
    if not is_concrete(value):
        return value
    array = _as_float_array(name, value)
    if not _all_in_range(array, low, high, low_inclusive, high_inclusive):
        interval = _range_text(low, high, low_inclusive, high_inclusive)
        raise ValueError(
            f"{name}={_format_value(value)}: must be in {interval}")
    return value


def check_nonnegative(name: str, value: Any, *, required: bool = False) -> Any:
    """``value`` in ``[0, inf)`` (a learning rate, an ε, a decay coefficient)."""
    return check_in_range(name, value, 0.0, math.inf, required=required)


def check_positive(name: str, value: Any, *, required: bool = False) -> Any:
    """``value`` in ``(0, inf)`` (a clipping norm, a step-size bound)."""
    return check_in_range(name, value, 0.0, math.inf, low_inclusive=False, required=required)


def check_unit_interval(name: str, value: Any, *, required: bool = False) -> Any:
    """``value`` in ``[0, 1)`` (an exponential decay rate such as β₁, γ, ρ)."""
    return check_in_range(name, value, 0.0, 1.0, required=required)


def check_less_equal(low_name: str, low_value: Any, high_name: str,
                     high_value: Any) -> None:
    """Raise ``ValueError`` unless ``low_value <= high_value`` (both concrete).

    The message states only this relation (``min_step_size=1.0: must be <=
    max_step_size=0.5``); each value's own range is checked separately.
    """
    if not (is_concrete(low_value) and is_concrete(high_value)):
        return
    if not np.all(np.asarray(low_value) <= np.asarray(high_value)):
        raise ValueError(
            f"{low_name}={_format_value(low_value)}: must be <= "
            f"{high_name}={_format_value(high_value)}")


def check_flag(name: str, value: Any) -> bool:
    """A switch such as ``nesterov`` or ``eps_in_sqrt``: ``True`` or ``False``.

    A string (``"False"`` is truthy) or a number would silently pick a branch,
    so anything but a Python or NumPy bool raises.

    Raises:
      HyperparameterTypeError: ``value`` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise HyperparameterTypeError(
            f"{name}={value!r}: must be True or False, not {type(value).__name__}")
    return bool(value)


def check_dtype(name: str, value: Any, kind: Any = jnp.inexact) -> Any:
    """``None``, or ``value`` as a ``numpy.dtype`` of ``kind`` (``"bfloat16"``, ``jnp.float32``, ...).

    Args:
      name: the argument's name, for the message.
      value: a dtype, a dtype name or None.
      kind: ``jnp.inexact`` (floating or complex) or ``jnp.floating``.

    Raises:
      HyperparameterTypeError: ``value`` is not a dtype of ``kind`` (e.g. ``"float99"``, ``int32``).
    """
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, kind):
        complex_too = "" if kind is jnp.floating else ", or a complex one"
        raise HyperparameterTypeError(
            f"{name}={value!r}: must be a floating-point dtype such as 'float32', 'bfloat16', 'float16' "
            f"or 'float64'{complex_too} (or None)")
    return dtype
