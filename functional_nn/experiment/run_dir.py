"""The run directory: what ``train`` writes to ``runs/<name>/`` (or ``--out``).

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``learning_curves.png``, ``checkpoint.npz``, ``summary.json`` (test
metrics, best epoch, wall time) and ``preprocessing.npz`` (the inputs'
standardisation statistics, read by ``experiment.load.load_run``). ``--resume`` continues from that directory's
checkpoint after checking that the config matches the one stored in it; a
fresh run into a directory that already holds a checkpoint starts afresh and
replaces it once it writes its own.
"""

from __future__ import annotations

import json
import os
import sys

from functional_nn.experiment.loading import config_to_dict, ConfigError, load_config
from functional_nn.train import best_epoch
from functional_nn.train.checkpoint import atomic_write_bytes, read_checkpoint_metadata

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.npz"
PLOT_FILE = "learning_curves.png"
SUMMARY_FILE = "summary.json"
PREPROCESSING_FILE = "preprocessing.npz"  # the inputs' standardisation (experiment.load)
# keys a --resume may change: the epoch budget, the progress bar and the device
# count (checkpoints hold host arrays, so a run moves between device counts)
RESUMABLE_KEYS = {("training", "epochs"), ("training", "progress"), ("training", "devices")}


def run_directory(config, out: str | None) -> str:
    return out if out is not None else os.path.join("runs", config.name)


def write_json(path: str, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def plain_config(config) -> dict:
    """``config_to_dict`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(config_to_dict(config)))


def differing_keys(saved: dict, current: dict) -> list:
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


def check_resumed_config(config, directory: str) -> None:
    """``--resume`` must continue the same experiment (only the epoch budget, progress
    and device count may change): the config is compared with the one stored in
    the checkpoint (``config.yaml`` only for checkpoints written before configs
    were stored in them). Without a checkpoint there is nothing to continue."""
    checkpoint_path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.exists(checkpoint_path):
        return
    saved = read_checkpoint_metadata(checkpoint_path).get("config")
    source = checkpoint_path
    if saved is None:
        source = os.path.join(directory, CONFIG_FILE)
        if not os.path.exists(source):
            return
        saved = plain_config(load_config(source))
    differing = differing_keys(saved, plain_config(config))
    if differing:
        raise ConfigError(
            f"--resume: the config differs from the one {source} was trained with at {', '.join(differing)} "
            "(only training.epochs, training.progress and training.devices may change on --resume)"
        )


def note_earlier_checkpoint(directory: str) -> None:
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


def run_summary(config, history: list, test_metrics: dict, wall_time_s: float) -> dict:
    """``summary.json``: test metrics, the best epoch and its metrics, epochs run, wall time."""
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


