"""``python -m functional_nn train CONFIG``: fit the config's model, write the run directory."""

from __future__ import annotations

import json
import os
import sys
import time

from functional_nn.experiment import run_dir
from functional_nn.experiment.builders import build_augment, build_early_stopping, build_experiment
from functional_nn.experiment.load import write_run_files
from functional_nn.experiment.loading import check_batch_size
from functional_nn.experiment.plots import plot_learning_curves
from functional_nn.experiment.run_dir import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    PLOT_FILE,
    SUMMARY_FILE,
)
from functional_nn.experiment.schema import keyed_error
from functional_nn.train import fit, make_evaluate, make_train_epoch, NonFiniteLossError
from functional_nn.train.parallel import (
    check_batch_divisible,
    make_data_mesh,
    make_parallel_evaluate,
    make_parallel_train_epoch,
)


def _data_mesh(config):
    """The data-parallel mesh of ``training.devices`` (``None`` for 1 device)."""
    devices = config.training.devices
    if devices == 1:
        return None
    try:
        mesh = make_data_mesh(devices)
        check_batch_divisible(config.training.batch_size, mesh)
    except ValueError as e:  # "devices=...", "batch_size=...": the training section's keys
        raise keyed_error(e, "training") from None
    return mesh


def _compiled_epoch(config, model, loss, optimizer, augment, mesh=None):
    """The jitted epoch: on one device, or data-parallel over ``mesh``
    (``training.devices`` != 1) through ``functional_nn.train.parallel``."""
    training = config.training
    if mesh is None:
        return make_train_epoch(model, loss, optimizer, training.batch_size, augment=augment, unroll=training.unroll)
    return make_parallel_train_epoch(
        model, loss, optimizer, training.batch_size, devices=mesh, augment=augment, unroll=training.unroll
    )


def _evaluate_fn(config, model, loss, mesh=None):
    """Evaluation in chunks, each split over ``mesh``'s devices when there is one."""
    chunk_size = config.training.eval_chunk_size
    if mesh is None:
        return make_evaluate(model, loss, chunk_size=chunk_size)
    return make_parallel_evaluate(model, loss, mesh, chunk_size=chunk_size)


def train_command(config, directory: str, *, resume: bool, progress: bool | None, started: float) -> int:
    if resume:
        run_dir.check_resumed_config(config, directory)
    else:
        run_dir.note_earlier_checkpoint(directory)
    mesh = _data_mesh(config)
    data, model, loss, optimizer, train_state = build_experiment(config)
    training = config.training
    check_batch_size(training, data)
    write_run_files(directory, config, data)
    augment = build_augment(training, data.image_shape)
    epoch_fn = _compiled_epoch(config, model, loss, optimizer, augment, mesh)
    evaluate = _evaluate_fn(config, model, loss, mesh)
    checkpoint_path = os.path.join(directory, CHECKPOINT_FILE)
    try:
        train_state, history = fit(
            train_state,
            epoch_fn,
            evaluate,
            data.train,
            data.val if len(data.val.x) else None,
            epochs=training.epochs,
            early_stopping=build_early_stopping(training),
            checkpoint_path=checkpoint_path,
            checkpoint_every=training.checkpoint_every,
            metrics_path=os.path.join(directory, METRICS_FILE),
            resume=resume,
            progress=training.progress if progress is None else progress,
            mesh=mesh,
            config=run_dir.plain_config(config),
        )
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        run_dir.write_json(
            os.path.join(directory, SUMMARY_FILE),
            {"status": "non_finite_loss", "message": str(e), "epoch": e.epoch, "step": e.step},
        )
        return 1
    test = (
        {f"test_{k}": v for k, v in evaluate(train_state, data.test.x, data.test.y).items()} if len(data.test.x) else {}
    )
    plot_learning_curves(history, os.path.join(directory, PLOT_FILE), title=config.name)
    summary = run_dir.run_summary(config, history, test, time.perf_counter() - started)
    run_dir.write_json(os.path.join(directory, SUMMARY_FILE), summary)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    print(json.dumps(shown))
    return 0


