"""``python -m functional_nn train CONFIG``: fit the config's model, write the run directory."""

from __future__ import annotations

import json
import sys
import time

from functional_nn.experiment import plots, run_dir
from functional_nn.experiment.builders import (
    build_augment,
    build_data,
    build_early_stopping,
    build_experiment,
    build_model,
)
from functional_nn.experiment.loading import check_experiment, dump_config
from functional_nn.experiment.load import preprocessing_bytes
from functional_nn.experiment.run_dir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    PLOT_FILE,
    PREPROCESSING_FILE,
    SUMMARY_FILE,
)
from functional_nn.experiment.schema import keyed_error
from functional_nn.train import fit, make_evaluate, make_train_epoch, NonFiniteLossError
from functional_nn.train.progress import log_above_bar
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


def _fit_into(files, config, train_state, epoch_fn, evaluate, data, *, resume: bool, progress, mesh):
    """``fit`` writing the run's metrics and checkpoints through ``files``.

    A staged run (:class:`~functional_nn.experiment.run_dir.RunFiles`) first
    trains up to its first checkpoint into ``.staging/``, commits (its files
    replace the earlier run's together), then continues from that checkpoint
    in place, bit-exactly as if uninterrupted (a resume from a checkpoint is
    bit-exact). Returns ``fit``'s ``(train_state, history)``.
    """
    training = config.training
    common = dict(
        early_stopping=build_early_stopping(training),
        checkpoint_every=training.checkpoint_every,
        progress=training.progress if progress is None else progress,
        mesh=mesh,
        config=run_dir.plain_config(config),
    )
    val = data.val if len(data.val.x) else None
    log = log_above_bar
    if files.pending:
        fit(
            train_state, epoch_fn, evaluate, data.train, val,
            epochs=min(training.checkpoint_every, training.epochs),
            checkpoint_path=files.path(CHECKPOINT_FILE), metrics_path=files.path(METRICS_FILE), resume=False, **common,
        )
        files.commit()
        resume = True  # from the first checkpoint, just written, as part of the same run
        log = _without_resume_notes
    return fit(
        train_state, epoch_fn, evaluate, data.train, val,
        epochs=training.epochs, checkpoint_path=files.path(CHECKPOINT_FILE), metrics_path=files.path(METRICS_FILE),
        resume=resume, log=log, **common,
    )


def _without_resume_notes(message: str) -> None:
    """``fit``'s log, less its notes about resuming: a staged run's second half
    continues its own first checkpoint, which is no resume to the user."""
    if not message.startswith(("resumed from", "resume:")):
        log_above_bar(message)


def train_command(config, directory: str, *, resume: bool, progress: bool | None, started: float) -> int:
    """Train ``config`` into ``directory`` (created and locked by the caller,
    see :func:`~functional_nn.experiment.run_dir.locked_run_directory`).

    Returns:
      0 on success, 1 when the training loss became non-finite.

    Raises:
      ConfigError: the config does not fit the data (naming the key), or
        ``--resume`` with a config that differs from the checkpoint's.
    """
    for note in run_dir.recover(directory):
        print(f"note: {note}", file=sys.stderr)
    if resume:
        run_dir.check_resumed_config(config, directory)
    mesh = _data_mesh(config)
    data = build_data(config.data)
    check_experiment(config, data, build_model(config.model))
    data, model, loss, optimizer, train_state = build_experiment(config, data)
    files = run_dir.RunFiles(directory, staged=not resume and run_dir.holds_run(directory))
    if files.staged:
        run_dir.note_staging(directory)
    try:
        files.write(CONFIG_FILE, dump_config(config).encode())
        files.write(PREPROCESSING_FILE, preprocessing_bytes(data))
        augment = build_augment(config.training, data.image_shape)
        epoch_fn = _compiled_epoch(config, model, loss, optimizer, augment, mesh)
        evaluate = _evaluate_fn(config, model, loss, mesh)
        try:
            train_state, history = _fit_into(
                files, config, train_state, epoch_fn, evaluate, data, resume=resume, progress=progress, mesh=mesh
            )
        except NonFiniteLossError as e:
            print(f"error: {e}", file=sys.stderr)
            if not files.pending:  # a staged run that never checkpointed leaves the earlier run alone
                run_dir.write_json(
                    files.path(SUMMARY_FILE),
                    {"status": "non_finite_loss", "message": str(e), "epoch": e.epoch, "step": e.step},
                )
            return 1
    finally:
        files.discard()
    test = (
        {f"test_{k}": v for k, v in evaluate(train_state, data.test.x, data.test.y).items()} if len(data.test.x) else {}
    )
    if plots.plotting_available():
        files.write(PLOT_FILE, plots.learning_curves_png(history, config.name))
    else:
        plots.note_plots_skipped()
    summary = run_dir.run_summary(config, history, test, time.perf_counter() - started)
    run_dir.write_json(files.path(SUMMARY_FILE), summary)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    print(json.dumps(shown))
    return 0
