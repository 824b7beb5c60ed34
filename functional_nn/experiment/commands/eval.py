"""``python -m functional_nn eval RUN_DIR_OR_CONFIG``: a trained run evaluated on one split.

The target is a run directory, its ``config.yaml``, a search directory (its
chosen setting, ``best/``) or a config file (its run directory is
``runs/<name>`` or ``--out``); the run is read by
:func:`functional_nn.experiment.load.load_run`, as from Python.
"""

from __future__ import annotations

import json
import os

from functional_nn.experiment.load import config_split, load_run, resolve_run_directory, run_config_directory
from functional_nn.experiment.loading import load_config
from functional_nn.experiment.run_dir import CONFIG_FILE, run_directory


def run_and_config(target: str, overrides=(), out: str | None = None) -> tuple:
    """(run directory, config) that ``target`` names: a run or search directory
    (a path that does not exist is reported as a missing run directory), or a
    config, whose run is in ``out``, the directory of a run's own
    ``config.yaml``, or ``runs/<name>``; ``overrides`` (``--set``) apply to the config read."""
    if os.path.isdir(target) or (os.sep in target and not os.path.exists(target)):
        directory = resolve_run_directory(out or target)
        return directory, load_config(os.path.join(directory, CONFIG_FILE), overrides)
    config = load_config(target, overrides)  # a config file (or the name of a packaged one)
    return run_directory(config, out or run_config_directory(target)), config


def eval_command(target: str, *, overrides=(), out: str | None = None, checkpoint: str | None, split: str) -> int:
    directory, config = run_and_config(target, overrides, out)
    run = load_run(directory, config=config, checkpoint=checkpoint)
    arrays = config_split(run.config, split, source="--split")
    metrics = {f"{split}_{k}": v for k, v in run.evaluate(arrays, preprocessed=True).items()}
    print(json.dumps({"run": directory, "epoch": run.epoch, "best_epoch": run.best_epoch, **metrics}))
    return 0
