"""Command line: ``python -m functional_nn {train,eval,search} CONFIG [--set k=v ...]``,
``python -m functional_nn predict RUN_DIR --input FILE`` and
``python -m functional_nn configs [NAME] [--reference]``.

CONFIG is a YAML file or the NAME of a config shipped in the package
(``python -m functional_nn configs`` lists them). Runs use JAX's persistent
compilation cache (``functional_nn.experiment.compile_cache``) unless
``--no-compile-cache``.

``train`` writes ``runs/<name>/`` (or ``--out DIR``): ``config.yaml`` (the
resolved config), ``metrics.jsonl`` (one line per epoch), ``learning_curves.png``,
``checkpoint.npz`` and ``summary.json`` (test metrics, best epoch, wall time).
``--resume`` continues from that directory's checkpoint, after checking that the
config matches the one stored in the checkpoint; a fresh run into a directory
that already holds a run stages its files and replaces that run's together when
it writes its first checkpoint. A run locks its directory; a second run into it
exits with an error naming the holder (``functional_nn.experiment.run_dir``).
Every error a user can cause is one ``error: ...`` line on stderr and exit
code 2. ``eval`` evaluates a trained run (a run directory, its ``config.yaml``,
a search directory's chosen setting, or a config's run) on a split, ``predict``
applies one to inputs of your own; ``search`` runs the config's grid search.
``training.devices: all | N`` trains data-parallel over that many devices
(``functional_nn.train.parallel``); ``train --distributed`` first joins a
multi-host job with ``jax.distributed.initialize``.

This module only parses the command line and dispatches: each command lives in
``functional_nn.experiment.commands`` and the run directory's layout in
``functional_nn.experiment.run_dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="functional_nn", description="Train and evaluate functional_nn models from YAML configs."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub):
        sub.add_argument(
            "config", help="YAML config file, or the NAME of a packaged config (python -m functional_nn configs)"
        )
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
        sub.add_argument(
            "--no-compile-cache",
            dest="compile_cache",
            action="store_false",
            help="do not use JAX's persistent compilation cache (default: on, in $XDG_CACHE_HOME/functional_nn/jax "
            "or ~/.cache/functional_nn/jax; $FUNCTIONAL_NN_CACHE_DIR sets the folder, FUNCTIONAL_NN_COMPILE_CACHE=0 "
            "turns it off)",
        )

    train = commands.add_parser("train", help="train a model")
    add_common(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run directory's checkpoint; the config must match the one stored in the "
        "checkpoint (only training.epochs, training.progress and training.devices may change). Without "
        "--resume, a run into a directory that already holds a run starts afresh and replaces that run's "
        "files together when it writes its own first checkpoint (until then the earlier run stays intact)",
    )
    progress = train.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show the progress bar"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    add_distributed(train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a trained run on a split (a run directory, its config.yaml, a search directory, or a config)"
    )
    add_common(evaluate)
    evaluate.add_argument("--checkpoint", default=None, help="checkpoint file (default: <run dir>/checkpoint.npz)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))

    predict = commands.add_parser("predict", help="predict with a trained run on inputs of your own")
    predict.add_argument("run", metavar="RUN_DIR", help="a run directory (or a search directory: its chosen setting)")
    predict.add_argument("--input", required=True, metavar="FILE", help=".npz (array x), .npy or .csv, one example per row")
    predict.add_argument(
        "--output", default=None, metavar="FILE",
        help=".csv or .npz, or - for CSV on stdout (default: <input>.predictions.csv next to the input)",
    )

    search = commands.add_parser("search", help="grid search over the config's search section")
    add_common(search)

    configs = commands.add_parser("configs", help="list the packaged configs, print one, or the config reference")
    configs.add_argument("name", nargs="?", default=None, help="print this packaged config (start your own from it)")
    configs.add_argument(
        "--reference", action="store_true", help="print the config reference: every key, type, default, meaning"
    )
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


MAX_ERROR_CHARS = 2000  # an error line is cut to this length (a value is shown, never a whole data set)


def error_line(error: BaseException) -> str:
    """``error: <message>`` on one line of at most ``MAX_ERROR_CHARS`` characters."""
    message = " ".join(str(error).split()) or type(error).__name__
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return f"error: {message}"


def user_errors() -> tuple:
    """The exception types a user's input or environment causes (each names
    the key, file or directory at fault): reported as one ``error:`` line with
    exit code 2. Any other exception is a bug and keeps its traceback."""
    from functional_nn.data import DataError
    from functional_nn.experiment import ConfigError
    from functional_nn.experiment.run_dir import RunDirectoryError
    from functional_nn.train import CheckpointError

    # OSError: a file that cannot be read or written (disk full, permissions),
    # named by the message; the last good checkpoint stays (writes are atomic)
    return (ConfigError, DataError, CheckpointError, RunDirectoryError, OSError)


def resumed_run_directory(args) -> str | None:
    """``train RUN_DIR/config.yaml --resume`` continues that run in place; any
    other run of a config (a run's or ``best/``'s ``config.yaml`` without
    ``--resume``, with or without ``--set``) goes to ``runs/<name>/`` like
    every config, never replacing the run it was read from."""
    from functional_nn.experiment.load import run_config_directory

    return run_config_directory(args.config) if getattr(args, "resume", False) else None


def run_command(args, started: float) -> int:
    """Load the config, lock the run directory (``train``, ``search``) and run the command."""
    from functional_nn.experiment import load_config
    from functional_nn.experiment.run_dir import (
        check_search_directory,
        check_training_directory,
        locked_run_directory,
        make_run_directory,
        run_directory,
    )

    if args.command == "predict":
        from functional_nn.experiment.commands.predict import predict_command

        return predict_command(args.run, input_path=args.input, output=args.output)
    if args.command == "eval":
        from functional_nn.experiment.commands.eval import eval_command

        return eval_command(args.config, overrides=args.overrides, out=args.out, checkpoint=args.checkpoint, split=args.split)
    config = load_config(args.config, args.overrides)
    directory = run_directory(config, args.out or resumed_run_directory(args))
    # a multi-host job's processes share one run directory: they take no lock
    if getattr(args, "distributed", False):
        make_run_directory(directory)
        lock = contextlib.nullcontext(directory)
    else:
        lock = locked_run_directory(directory)
    with lock:
        if args.command == "train":
            from functional_nn.experiment.commands.train import train_command

            check_training_directory(directory)
            return train_command(config, directory, resume=args.resume, progress=args.progress, started=started)
        from functional_nn.experiment.commands.search import search_command

        check_search_directory(directory)
        return search_command(config, directory)


def run_configs(args) -> int:
    """``configs``: the packaged configs or the reference (no JAX work)."""
    from functional_nn.experiment import ConfigError
    from functional_nn.experiment.commands.configs import configs_command

    try:
        return configs_command(args.name, reference=args.reference)
    except ConfigError as e:
        print(error_line(e), file=sys.stderr)
        return 2


def start_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache unless switched off; a folder
    that cannot be created turns it off with one ``note:`` line on stderr
    (the run goes on, compiling as without the cache)."""
    from functional_nn.experiment.compile_cache import compile_cache_wanted, enable_compile_cache

    if not compile_cache_wanted():
        return
    try:
        enable_compile_cache()
    except OSError as e:
        print(f"note: the compile cache is off: {e}", file=sys.stderr)


def main(argv=None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.command == "configs":
        return run_configs(args)
    if getattr(args, "distributed", False):
        initialize_distributed(args)
    if getattr(args, "compile_cache", True):  # every command but configs has --no-compile-cache
        start_compile_cache()
    try:
        return run_command(args, started)
    except user_errors() as e:
        print(error_line(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

