"""Training: train state, pure step and epoch (one ``lax.scan``), evaluation,
``fit`` (a short loop calling the metrics log, checkpoint writer and your
callbacks) with early stopping, atomic checkpoints, and ``run_grid``: many
settings trained at once over traced hyperparameters. Works from Python
alone: nothing here reads YAML (that is ``functional_nn.experiment``)."""

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
from functional_nn.train.callbacks import CheckpointWriter, EpochEnd, MetricsLog, write_metrics_lines
from functional_nn.train.fit import NonFiniteLossError, best_epoch, fit
from functional_nn.train.search_engine import GridRun, kept_train_state, make_evaluate_grid, run_grid, seed_keys, seed_run
from functional_nn.train.state import TrainState, init_train_state
from functional_nn.train.step import make_eval_sums, make_evaluate, make_train_step, summarize_sums

__all__ = [
    "CheckpointError",
    "CheckpointWriter",
    "EpochEnd",
    "MetricsLog",
    "EarlyStopping",
    "EarlyStoppingState",
    "GridRun",
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
    "kept_train_state",
    "load_pytrees",
    "load_training_checkpoint",
    "make_epoch",
    "make_eval_sums",
    "make_evaluate",
    "make_evaluate_grid",
    "make_train_epoch",
    "make_train_step",
    "restore_best",
    "run_grid",
    "save_pytrees",
    "save_training_checkpoint",
    "seed_keys",
    "seed_run",
    "summarize_sums",
    "update_early_stopping",
    "write_metrics_lines",
]
