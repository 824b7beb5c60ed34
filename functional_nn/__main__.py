"""Command line: ``python -m functional_nn {train,eval,predict,search} ...`` (see ``--help``).

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

This module only parses the command line and dispatches: each command lives in
``functional_nn.experiment.commands`` and the run directory's layout in
``functional_nn.experiment.run_dir``.
"""

from __future__ import annotations

import argparse
import sys
import time

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


def main(argv=None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    if getattr(args, "distributed", False):
        initialize_distributed(args)
    from functional_nn.experiment import ConfigError, load_config
    from functional_nn.experiment.load import run_config_directory
    from functional_nn.experiment.run_dir import run_directory
    from functional_nn.train import CheckpointError

    try:
        if args.command == "predict":
            from functional_nn.experiment.commands.predict import predict_command

            return predict_command(args.run, input_path=args.input, output=args.output)
        if args.command == "eval":
            from functional_nn.experiment.commands.eval import eval_command

            return eval_command(
                args.config, overrides=args.overrides, out=args.out, checkpoint=args.checkpoint, split=args.split
            )
        config = load_config(args.config, args.overrides)
        directory = run_directory(config, args.out or run_config_directory(args.config))
        if args.command == "train":
            from functional_nn.experiment.commands.train import train_command

            return train_command(config, directory, resume=args.resume, progress=args.progress, started=started)
        from functional_nn.experiment.commands.search import search_command

        return search_command(config, directory)
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

