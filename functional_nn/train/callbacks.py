"""What ``fit`` does after each epoch besides training: small objects it calls.

Each callback is called as ``callback(event)`` with an :class:`EpochEnd` after
the epoch's record is complete (``is_best`` included) and appended to the
history. ``fit`` builds the metrics log and the checkpoint writer from its
arguments; a user passes further callbacks with ``fit(..., callbacks=[...])``.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from functional_nn.train.checkpoint import TrainingCheckpoint, atomic_write_bytes, save_training_checkpoint


class EpochEnd(NamedTuple):
    """The end of epoch ``epoch`` (1-based): its ``record``, the ``train_state``
    after it, the whole ``history`` so far, the early-stopping state, and
    whether training stops after it (``stop``: early stopping or the last epoch
    of the budget; ``early_stop``: early stopping alone)."""

    epoch: int
    record: dict
    train_state: Any
    history: list
    early_stopping: Any
    stop: bool
    early_stop: bool


def write_metrics_lines(path: str, history: list) -> None:
    """The whole history as JSON lines (one epoch per line), written atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in history).encode())


class MetricsLog:
    """The JSON-lines metrics log at ``path``: rewritten with the history so far
    at the start (a resumed run keeps its earlier epochs), one line appended per epoch."""

    def __init__(self, path: str, history: list):
        self.path = path
        write_metrics_lines(path, history)

    def __call__(self, event: EpochEnd) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(event.record) + "\n")


class CheckpointWriter:
    """Atomic checkpoints at ``path`` every ``every`` epochs and when training
    stops. ``good`` is the last good checkpoint of this run (the one resumed
    from, then each one written), named when the loss turns non-finite.
    ``config`` (plain JSON data) is stored in each checkpoint."""

    def __init__(self, path: str | None, every: int, config: dict | None, *, resumed: bool):
        self.path, self.every, self.config = path, every, config
        self.good = path if resumed and path is not None and os.path.exists(path) else None

    def __call__(self, event: EpochEnd) -> None:
        if self.path is None or not (event.stop or event.epoch % self.every == 0):
            return
        checkpoint = TrainingCheckpoint(event.train_state, event.epoch, event.history, event.early_stopping, self.config)
        save_training_checkpoint(self.path, checkpoint)
        self.good = self.path
