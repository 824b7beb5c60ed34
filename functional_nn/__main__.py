"""Command line: ``python -m functional_nn {train,eval,search} CONFIG [--set k=v ...]``.

``train`` writes ``runs/<name>/`` (or ``--out DIR``): ``config.yaml`` (the
resolved config), ``metrics.jsonl`` (one line per epoch), ``learning_curves.png``,
``checkpoint.npz`` and ``summary.json`` (test metrics, best epoch, wall time).
``--resume`` continues from that directory's checkpoint, after checking that the
config matches the one stored in the checkpoint; a fresh run into a directory
that already holds a checkpoint starts afresh and replaces it once it writes its own. ``eval`` evaluates a
run's checkpoint on the test split; ``search`` runs the config's grid search.
``training.devices: all | N`` trains data-parallel over that many devices
(``functional_nn.train.parallel``); ``train --distributed`` first joins a
multi-host job with ``jax.distributed.initialize``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.npz"
PLOT_FILE = "learning_curves.png"
SUMMARY_FILE = "summary.json"
# keys a --resume may change: the epoch budget, the progress bar and the device
# count (checkpoints hold host arrays, so a run moves between device counts)
RESUMABLE_KEYS = {("training", "epochs"), ("training", "progress"), ("training", "devices")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="functional_nn", description="Train and evaluate functional_nn models from YAML configs."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub):
        sub.add_argument("config", help="YAML config file (see configs/)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value (YAML syntax); repeatable",
        )
        sub.add_argument(
            "--out",
            default=None,
            metavar="DIR",
            help="run directory (default: runs/<name> under the current directory)",
        )

    train = commands.add_parser("train", help="train a model")
    add_common(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run directory's checkpoint; the config must match the one stored in the "
        "checkpoint (only training.epochs, training.progress and training.devices may change). Without "
        "--resume, a run into a directory that already holds a checkpoint starts afresh and replaces that "
        "checkpoint when it writes its own first one (until then the earlier one stays resumable)",
    )
    progress = train.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show the progress bar"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    add_distributed(train)

    evaluate = commands.add_parser("eval", help="evaluate a run's checkpoint on the test split")
    add_common(evaluate)
    evaluate.add_argument("--checkpoint", default=None, help="checkpoint file (default: <run dir>/checkpoint.npz)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))

    search = commands.add_parser("search", help="grid search over the config's search section")
    add_common(search)
    return parser


def add_distributed(sub) -> None:
    """Options to run one process of a multi-host job (``jax.distributed.initialize``)."""
    group = sub.add_argument_group("several hosts (one process per host, each running the same command)")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first; unset values come from $JAX_COORDINATOR_ADDRESS "
        "or the cluster environment (SLURM, Open MPI, Kubernetes, Cloud TPU)",
    )
    group.add_argument("--coordinator-address", default=None, metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index, 0..N-1")


def initialize_distributed(args) -> None:
    """Join the multi-host job; afterwards ``jax.devices()`` lists every host's
    devices and ``training.devices: all`` spans them all."""
    import jax

    jax.distributed.initialize(
        coordinator_address=args.coordinator_address, num_processes=args.num_processes, process_id=args.process_id
    )


def run_directory(config, out: str | None) -> str:
    return out if out is not None else os.path.join("runs", config.name)


def _write_json(path: str, data: dict) -> None:
    from functional_nn.train.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _plain_config(config) -> dict:
    """``config_to_dict`` as it reads back from JSON (tuples become lists)."""
    from functional_nn.config import config_to_dict

    return json.loads(json.dumps(config_to_dict(config)))


def _differing_keys(saved: dict, current: dict) -> list:
    """``section.key`` paths (or sections) whose values differ, over the keys of
    both sides: a key present on one side only differs too."""
    differing = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            differing += [
                f"{section}.{key}"
                for key in sorted(set(a) | set(b))
                if (section, key) not in RESUMABLE_KEYS and ((key in a) != (key in b) or a.get(key) != b.get(key))
            ]
        elif a != b:
            differing.append(section)
    return differing


def _check_resumed_config(config, directory: str) -> None:
    """``--resume`` must continue the same experiment (only the epoch budget, progress
    and device count may change): the config is compared with the one stored in
    the checkpoint (``config.yaml`` only for checkpoints written before configs
    were stored in them). Without a checkpoint there is nothing to continue."""
    from functional_nn.config import ConfigError, load_config
    from functional_nn.train.checkpoint import read_checkpoint_metadata

    checkpoint_path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.exists(checkpoint_path):
        return
    saved = read_checkpoint_metadata(checkpoint_path).get("config")
    source = checkpoint_path
    if saved is None:
        source = os.path.join(directory, CONFIG_FILE)
        if not os.path.exists(source):
            return
        saved = _plain_config(load_config(source))
    differing = _differing_keys(saved, _plain_config(config))
    if differing:
        raise ConfigError(
            f"--resume: the config differs from the one {source} was trained with at {', '.join(differing)} "
            "(only training.epochs, training.progress and training.devices may change on --resume)"
        )


def _note_earlier_checkpoint(directory: str) -> None:
    """A fresh (non ``--resume``) run into a directory holding an earlier run's
    checkpoint: say that it will be replaced. It stays until this run writes its
    own first checkpoint (atomically), and ``--resume`` checks the config stored
    in it, so the two runs never mix."""
    checkpoint_path = os.path.join(directory, CHECKPOINT_FILE)
    if os.path.exists(checkpoint_path):
        print(
            f"note: starting afresh; {checkpoint_path} (an earlier run) is replaced when this run writes its first "
            "checkpoint (use --resume to continue it instead, or another --out to keep both)",
            file=sys.stderr,
        )


def _experiment(config):
    """Data, model, loss, optimizer and the freshly initialised train state."""
    import jax

    from functional_nn.config import build_data, build_loss, build_model, build_optimizer
    from functional_nn.train import init_train_state

    data = build_data(config.data)
    model, loss, optimizer = build_model(config.model), build_loss(config.loss), build_optimizer(config.optimizer)
    input_shape = (config.training.batch_size,) + tuple(data.train.x.shape[1:])
    train_state = init_train_state(model, optimizer, jax.random.key(config.training.seed), input_shape)
    return data, model, loss, optimizer, train_state


def _data_mesh(config):
    """The data-parallel mesh of ``training.devices`` (``None`` for 1 device)."""
    from functional_nn.config import ConfigError

    devices = config.training.devices
    if devices == 1:
        return None
    from functional_nn.train.parallel import check_batch_divisible, make_data_mesh

    try:
        mesh = make_data_mesh(devices)
        check_batch_divisible(config.training.batch_size, mesh)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return mesh


def _compiled_epoch(config, model, loss, optimizer, augment, mesh=None):
    """The jitted epoch: on one device, or data-parallel over ``mesh``
    (``training.devices`` != 1) through ``functional_nn.train.parallel``."""
    from functional_nn.train import make_train_epoch

    training = config.training
    if mesh is None:
        return make_train_epoch(model, loss, optimizer, training.batch_size, augment=augment, unroll=training.unroll)
    from functional_nn.train.parallel import make_parallel_train_epoch

    return make_parallel_train_epoch(
        model, loss, optimizer, training.batch_size, devices=mesh, augment=augment, unroll=training.unroll
    )


def _evaluate_fn(config, model, loss, mesh=None):
    """Evaluation in chunks, each split over ``mesh``'s devices when there is one."""
    from functional_nn.train import make_evaluate

    chunk_size = config.training.eval_chunk_size
    if mesh is None:
        return make_evaluate(model, loss, chunk_size=chunk_size)
    from functional_nn.train.parallel import make_parallel_evaluate

    return make_parallel_evaluate(model, loss, mesh, chunk_size=chunk_size)


def run_summary(config, history: list, test_metrics: dict, wall_time_s: float) -> dict:
    """``summary.json``: test metrics, the best epoch and its metrics, epochs run, wall time."""
    from functional_nn.train import best_epoch

    best = best_epoch(history)
    at_best = next((r for r in history if r["epoch"] == best), history[-1] if history else {})
    return {
        "name": config.name,
        "status": "ok",
        **test_metrics,
        "best_epoch": best,
        "epochs_run": len(history),
        "stopped_early": len(history) < config.training.epochs,
        **{f"best_{k}": v for k, v in at_best.items() if k.startswith(("train_", "val_"))},
        "wall_time_s": wall_time_s,
    }


def train_command(config, directory: str, *, resume: bool, progress: bool | None, started: float) -> int:
    from functional_nn.config import build_augment, build_early_stopping, check_batch_size, dump_config
    from functional_nn.train import NonFiniteLossError, fit
    from functional_nn.train.checkpoint import atomic_write_bytes

    if resume:
        _check_resumed_config(config, directory)
    else:
        _note_earlier_checkpoint(directory)
    mesh = _data_mesh(config)
    data, model, loss, optimizer, train_state = _experiment(config)
    training = config.training
    check_batch_size(training, data)
    os.makedirs(directory, exist_ok=True)
    atomic_write_bytes(os.path.join(directory, CONFIG_FILE), dump_config(config).encode())
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
            config=_plain_config(config),
        )
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        _write_json(
            os.path.join(directory, SUMMARY_FILE),
            {"status": "non_finite_loss", "message": str(e), "epoch": e.epoch, "step": e.step},
        )
        return 1
    test = (
        {f"test_{k}": v for k, v in evaluate(train_state, data.test.x, data.test.y).items()} if len(data.test.x) else {}
    )
    from functional_nn.train.plotting import plot_learning_curves

    plot_learning_curves(history, os.path.join(directory, PLOT_FILE), title=config.name)
    summary = run_summary(config, history, test, time.perf_counter() - started)
    _write_json(os.path.join(directory, SUMMARY_FILE), summary)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    print(json.dumps(shown))
    return 0


def eval_command(config, directory: str, *, checkpoint: str | None, split: str) -> int:
    from functional_nn.train import load_training_checkpoint, make_evaluate, restore_best

    data, model, loss, _, train_state = _experiment(config)
    loaded = load_training_checkpoint(checkpoint or os.path.join(directory, CHECKPOINT_FILE), train_state)
    train_state = restore_best(loaded.early_stopping, loaded.train_state)
    evaluate = make_evaluate(model, loss, chunk_size=config.training.eval_chunk_size)
    xy = getattr(data, split)
    metrics = {f"{split}_{k}": v for k, v in evaluate(train_state, xy.x, xy.y).items()}
    print(json.dumps({"epoch": loaded.epoch, "best_epoch": loaded.early_stopping.best_epoch, **metrics}))
    return 0


def search_command(config, directory: str) -> int:
    from functional_nn.train.grid_search import run_search

    run_search(config, directory)
    return 0


def main(argv=None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    if getattr(args, "distributed", False):
        initialize_distributed(args)
    from functional_nn.config import ConfigError, load_config
    from functional_nn.train import CheckpointError

    try:
        config = load_config(args.config, args.overrides)
        directory = run_directory(config, args.out)
        if args.command == "train":
            return train_command(config, directory, resume=args.resume, progress=args.progress, started=started)
        if args.command == "eval":
            return eval_command(config, directory, checkpoint=args.checkpoint, split=args.split)
        return search_command(config, directory)
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
