"""``fit``: epochs, validation, early stopping, progress bar, metrics log, checkpoints."""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import jax
import numpy as np

from functional_nn.train.callbacks import CheckpointWriter, EpochEnd, MetricsLog
from functional_nn.train.checkpoint import load_training_checkpoint
from functional_nn.train.early_stopping import (
    EarlyStopping,
    EarlyStoppingState,
    out_of_patience,
    restore_best,
    update_early_stopping,
    validate_early_stopping,
)
from functional_nn.train.progress import EpochProgress, log_above_bar


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/Inf. ``epoch`` (1-based) and ``step`` (0-based
    within the epoch; ``global_step`` counts from the start of training) name
    where; the last good checkpoint, if any, is left as it was."""

    def __init__(self, epoch: int, step: int, global_step: int, checkpoint_path: str | None, history: list):
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.checkpoint_path, self.history = checkpoint_path, history
        where = (
            f"the last good checkpoint ({checkpoint_path}) is kept" if checkpoint_path else "no checkpoint was written"
        )
        super().__init__(
            f"training loss became non-finite (NaN/Inf) at epoch {epoch}, step {step} of the epoch "
            f"(global step {global_step}); stopped, {where}"
        )


def _epoch_record(epoch: int, train_metrics: dict, val_metrics: dict | None, seconds: float) -> dict:
    record = {"epoch": epoch}
    record.update({f"train_{k}": float(v) for k, v in train_metrics.items() if k != "first_nonfinite_step"})
    record.update({f"val_{k}": float(v) for k, v in (val_metrics or {}).items()})
    record["epoch_time_s"] = seconds
    return record


_POSTFIX = {"train_loss": "loss", "train_accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}


def _shown_metrics(record: dict) -> dict:
    """The metrics of an epoch record that progress shows (``train_*``, ``val_*``)."""
    keys = sorted((k for k in record if k.startswith(("train_", "val_"))), key=lambda k: (k.startswith("val_"), not k.endswith("_loss"), k))
    return {k: record[k] for k in keys}


def _resume(checkpoint_path, train_state, history, stopping_state, log):
    if checkpoint_path is None or not os.path.exists(checkpoint_path):
        log(f"resume: no checkpoint at {checkpoint_path}; starting from scratch")
        return train_state, 0, history, stopping_state
    loaded = load_training_checkpoint(checkpoint_path, train_state)
    log(f"resumed from {checkpoint_path} after epoch {loaded.epoch}")
    return loaded.train_state, loaded.epoch, loaded.history, loaded.early_stopping


def _already_stopped(settings: EarlyStopping, state: EarlyStoppingState) -> bool:
    return out_of_patience(settings, state.wait)


def fit(
    train_state,
    epoch_fn: Callable,
    evaluate_fn: Callable | None,
    train,
    val=None,
    *,
    epochs: int,
    early_stopping: EarlyStopping | None = None,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 1,
    metrics_path: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    mesh=None,
    config: dict | None = None,
    callbacks: Sequence[Callable[[EpochEnd], None]] = (),
):
    """Train for up to ``epochs`` epochs; returns ``(train_state, history)``.

    ``epoch_fn(train_state, x, d) -> (train_state, metrics)`` is a (compiled)
    epoch (see :func:`make_train_epoch`; it may donate its input state),
    ``evaluate_fn(train_state, x, d) -> metrics`` evaluates on ``val`` after
    every epoch (see :func:`make_evaluate`). ``train`` / ``val`` are
    ``Split(x, y)``. ``history`` is a list with one dict per epoch
    (``train_*``, ``val_*`` metrics, ``epoch_time_s``, ``is_best``), also
    appended as JSON lines to ``metrics_path``.

    Early stopping monitors ``early_stopping.monitor`` (``val_loss`` by default;
    ``train_*`` names work without validation data) and, with ``restore_best``,
    returns the best epoch's parameters. A checkpoint is written atomically
    every ``checkpoint_every`` epochs and at the end; ``resume=True`` continues
    from ``checkpoint_path`` when it exists (bit-identical to an uninterrupted
    run). A NaN/Inf training loss raises :class:`NonFiniteLossError` without
    touching the last checkpoint. ``progress=None`` shows a tqdm bar when
    stderr is a terminal and one line per epoch otherwise (a log file, a pipe);
    ``False`` is silent (:class:`~functional_nn.train.progress.EpochProgress`).

    ``mesh`` (a ``jax.sharding.Mesh`` with a ``data`` axis, or a device count
    ``"all"`` | n) trains data-parallel: ``epoch_fn`` must then be the
    sharded epoch for the same devices (see
    :func:`functional_nn.train.parallel.make_parallel_train_epoch`), and the
    training data and the (fresh or resumed) train state are placed on the
    mesh, replicated, once. Checkpoints hold host arrays, so a checkpoint
    written with any number of devices resumes with any other.

    ``config`` (plain JSON data, e.g. ``config_to_dict(config)``) is stored in
    every checkpoint, so a later resume can check it continues the same run.

    The loop itself only trains, evaluates and applies the early-stopping rule;
    the metrics log (:class:`~functional_nn.train.callbacks.MetricsLog`), the
    checkpoint policy (:class:`~functional_nn.train.callbacks.CheckpointWriter`)
    and ``callbacks`` (each called with an
    :class:`~functional_nn.train.callbacks.EpochEnd` after every epoch) do the rest.
    """
    settings = _monitored(validate_early_stopping(early_stopping or EarlyStopping()), val)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an integer >= 1")
    log = log or log_above_bar
    history, stopping_state, start_epoch = [], EarlyStoppingState(), 0
    if resume:
        train_state, start_epoch, history, stopping_state = _resume(
            checkpoint_path, train_state, history, stopping_state, log
        )
        if _already_stopped(settings, stopping_state):
            log(f"resume: training had stopped early at epoch {start_epoch}; nothing to do")
            epochs = start_epoch
    checkpoints = CheckpointWriter(checkpoint_path, checkpoint_every, config, resumed=resume)
    metrics_log = [MetricsLog(metrics_path, history)] if metrics_path is not None else []
    handlers = [*metrics_log, checkpoints, *callbacks]
    x, y, train_state, mesh = _placed(train, train_state, mesh)
    steps_done = int(train_state.step)
    with EpochProgress(progress, epochs, initial=start_epoch, postfix=_POSTFIX) as bar:
        for epoch in range(start_epoch + 1, epochs + 1):
            started = time.perf_counter()
            train_state, metrics = epoch_fn(train_state, x, y)
            metrics = jax.device_get(metrics)
            _check_finite(metrics, epoch, steps_done, checkpoints.good, history)
            steps_done = int(train_state.step)
            val_metrics = evaluate_fn(train_state, val.x, val.y) if (val is not None and evaluate_fn) else None
            record = _epoch_record(epoch, metrics, val_metrics, time.perf_counter() - started)
            stopping_state, early_stop, record["is_best"] = update_early_stopping(
                settings, stopping_state, _monitored_value(settings, record), epoch, train_state
            )
            history.append(record)
            event = EpochEnd(epoch, record, train_state, history, stopping_state, early_stop or epoch == epochs, early_stop)
            for handler in handlers:
                handler(event)
            bar.epoch_done(_shown_metrics(record))
            if early_stop:
                log(_early_stop_message(settings, stopping_state, epoch))
                break
    if settings.restore_best:
        train_state = restore_best(stopping_state, train_state)
        if mesh is not None:
            train_state = _parallel().place_replicated(train_state, mesh)
    return train_state, history


def _parallel():
    from functional_nn.train import parallel

    return parallel


def _placed(train, train_state, mesh):
    """(x, d, train state, mesh): on the default device, or replicated over the data mesh."""
    x, y = np.asarray(train.x), np.asarray(train.y)
    if mesh is None:
        return jax.device_put(x), jax.device_put(y), train_state, None
    parallel = _parallel()
    mesh = parallel.make_data_mesh(mesh)
    x, y, train_state = parallel.place_replicated((x, y, train_state), mesh)
    return x, y, train_state, mesh


def _monitored(settings: EarlyStopping, val) -> EarlyStopping:
    """Without validation data, ``val_<metric>`` falls back to ``train_<metric>``."""
    if settings.monitor.startswith("val_") and val is None:
        return settings._replace(monitor="train_" + settings.monitor[4:])
    return settings


def _monitored_value(settings: EarlyStopping, record: dict) -> float:
    if settings.monitor not in record:
        raise ValueError(f"early_stopping.monitor={settings.monitor!r} is not a metric; available: {sorted(record)}")
    return record[settings.monitor]


def _check_finite(metrics: dict, epoch: int, steps_done: int, good_checkpoint, history: list) -> None:
    bad_step = int(metrics["first_nonfinite_step"])
    if bad_step >= 0:
        raise NonFiniteLossError(epoch, bad_step, steps_done + bad_step, good_checkpoint, history)


def _early_stop_message(settings: EarlyStopping, state: EarlyStoppingState, epoch: int) -> str:
    return (
        f"early stopping at epoch {epoch}: {settings.monitor} did not improve for {settings.patience} epochs; "
        f"best epoch {state.best_epoch} ({settings.monitor}={state.best_value:.6g})"
    )


def best_epoch(history: list) -> int:
    """The last epoch flagged ``is_best`` (0 when none)."""
    return max((r["epoch"] for r in history if r.get("is_best")), default=0)
