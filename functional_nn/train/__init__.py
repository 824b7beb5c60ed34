"""Training: train state, pure step and epoch (one ``lax.scan``), evaluation,
``fit`` with early stopping, and atomic checkpoints."""

from functional_nn.train.checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    atomic_write_bytes,
    load_pytrees,
    load_training_checkpoint,
    save_pytrees,
    save_training_checkpoint,
)
from functional_nn.train.early_stopping import (
    EarlyStopping,
    EarlyStoppingState,
    improves,
    restore_best,
    update_early_stopping,
)
from functional_nn.train.epoch import compile_epoch, first_nonfinite_step, make_epoch, make_train_epoch
from functional_nn.train.fit import NonFiniteLossError, best_epoch, fit, write_metrics_lines
from functional_nn.train.state import TrainState, init_train_state
from functional_nn.train.step import make_eval_step, make_evaluate, make_train_step, summarize_sums

__all__ = [
    "CheckpointError",
    "EarlyStopping",
    "EarlyStoppingState",
    "NonFiniteLossError",
    "TrainState",
    "TrainingCheckpoint",
    "atomic_write_bytes",
    "best_epoch",
    "compile_epoch",
    "first_nonfinite_step",
    "fit",
    "improves",
    "init_train_state",
    "load_pytrees",
    "load_training_checkpoint",
    "make_epoch",
    "make_eval_step",
    "make_evaluate",
    "make_train_epoch",
    "make_train_step",
    "restore_best",
    "save_pytrees",
    "save_training_checkpoint",
    "summarize_sums",
    "update_early_stopping",
    "write_metrics_lines",
]
