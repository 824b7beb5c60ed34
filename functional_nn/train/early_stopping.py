"""Early stopping on a validation metric (the notes: "evaluate periodically on
validation data, for early stopping if required").

After each epoch e the monitored value v_e is compared with the best so far
v*: it improves when v_e < v* − δ (``mode="min"``) or v_e > v* + δ
(``mode="max"``), δ = ``min_delta``. Training stops after ``patience``
epochs in a row without improvement, and the parameters of the best epoch can
be restored.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np

MODES = ("min", "max", "auto")


class EarlyStopping(NamedTuple):
    """Settings. ``patience=None`` never stops (but still tracks the best epoch);
    ``mode="auto"`` is ``max`` for metrics named ``*accuracy`` and ``min`` otherwise."""

    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    mode: str = "auto"
    restore_best: bool = True


class EarlyStoppingState(NamedTuple):
    """Best value v* so far, its (1-based) epoch, epochs since it, and host copies
    of that epoch's parameters and model state (``None`` before the first epoch)."""

    best_value: float = math.nan
    best_epoch: int = 0
    wait: int = 0
    best_params: Any = None
    best_model_state: Any = None


def validate_early_stopping(settings: EarlyStopping) -> EarlyStopping:
    """Check the settings' concrete values (ValueError naming the field)."""
    if settings.patience is not None and (not isinstance(settings.patience, int) or settings.patience < 1):
        raise ValueError(f"patience={settings.patience!r} must be None or an integer >= 1")
    if not settings.min_delta >= 0:
        raise ValueError(f"min_delta={settings.min_delta!r} must be >= 0")
    if settings.mode not in MODES:
        raise ValueError(f"mode={settings.mode!r} must be one of {MODES}")
    return settings


def resolved_mode(settings: EarlyStopping) -> str:
    if settings.mode != "auto":
        return settings.mode
    return "max" if settings.monitor.endswith("accuracy") else "min"


def improves(settings: EarlyStopping, best_value, value):
    """v improves on v* by more than δ: finite(v) ∧ (v* undefined ∨ v < v* − δ)
    (mode min; v > v* + δ for max); v* is NaN before the first finite value.

    The one rule of ``fit`` and the grid search: written with comparisons and
    ``&``/``|`` alone, it takes Python floats (``fit``, on the host, in float64)
    and traced JAX scalars (the grid, inside its compiled epoch) alike, and
    returns a ``bool`` or a boolean array.
    """
    finite = (value - value) == 0  # False for NaN and ±inf
    undefined = best_value != best_value
    if resolved_mode(settings) == "min":
        better = value < best_value - settings.min_delta
    else:
        better = value > best_value + settings.min_delta
    return finite & (undefined | better)


def out_of_patience(settings: EarlyStopping, wait):
    """Whether ``wait`` epochs without improvement exhaust the patience (never when it is None)."""
    return False if settings.patience is None else wait >= settings.patience


def host_copy(tree):
    """A NumPy copy of a pytree (survives buffer donation of the original)."""
    return jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(tree))


def update_early_stopping(settings: EarlyStopping, state: EarlyStoppingState, value: float, epoch: int, train_state):
    """(new state, stop?, improved?) after epoch ``epoch`` with monitored ``value``."""
    if improves(settings, state.best_value, value):
        keep = settings.restore_best
        state = EarlyStoppingState(
            best_value=float(value),
            best_epoch=epoch,
            wait=0,
            best_params=host_copy(train_state.params) if keep else None,
            best_model_state=host_copy(train_state.model_state) if keep else None,
        )
        return state, False, True
    state = state._replace(wait=state.wait + 1)
    return state, out_of_patience(settings, state.wait), False


def restore_best(state: EarlyStoppingState, train_state):
    """The train state with the best epoch's parameters and model state (if kept)."""
    if state.best_params is None:
        return train_state
    return train_state._replace(
        params=jax.device_put(state.best_params),
        model_state=jax.device_put(state.best_model_state),
    )
