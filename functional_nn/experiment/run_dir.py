"""The run directory: what ``train`` writes to ``runs/<name>/`` (or ``--out``).

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``learning_curves.png``, ``checkpoint.npz``, ``summary.json`` (test
metrics, best epoch, wall time) and ``preprocessing.npz`` (the inputs'
standardisation statistics, read by ``experiment.load.load_run``). ``--resume`` continues from that directory's
checkpoint after checking that the config matches the one stored in it.

A run never damages a directory that holds another run:

- **lock**: a run holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``
  (which records its pid and host) for its whole lifetime; a second run into
  the directory is a :class:`RunDirectoryError` naming the holder.
- **staging**: a fresh run into a directory that holds another run writes its
  files into ``RUN_DIR/.staging/`` and moves them in together at its first
  checkpoint (:class:`RunFiles`). The move is journaled: ``.staging/COMMIT``
  lists the files to move in and the earlier run's files to remove, and is
  written (atomically) before anything moves. A run killed at any moment so
  leaves either the earlier run intact (no ``COMMIT``: the next start deletes
  ``.staging``) or its own consistent files (``COMMIT``: the next start
  finishes the move), see :func:`recover`.
- **temporary files** of atomic writes (``.checkpoint.npz.*.tmp``) that a
  killed run left are removed at the next start.
- **modes and links**: every file is written by
  :func:`~functional_nn.train.checkpoint.atomic_write_bytes` (temporary file,
  then ``os.replace``), so files follow the umask and a symlink in the run
  directory is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys

from functional_nn.experiment.loading import config_to_dict, ConfigError, load_config
from functional_nn.train import best_epoch
from functional_nn.train.checkpoint import atomic_write_bytes, read_checkpoint_metadata, fsync_directory

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.npz"
PLOT_FILE = "learning_curves.png"
SUMMARY_FILE = "summary.json"
PREPROCESSING_FILE = "preprocessing.npz"  # the inputs' standardisation (experiment.load)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, PLOT_FILE, SUMMARY_FILE, PREPROCESSING_FILE)
RESULTS_CSV = "results.csv"  # a grid search's results table (experiment.search_outputs)
BEST_DIR = "best"  # a search directory's chosen setting, a complete run directory
SEARCH_MARKERS = (RESULTS_CSV, BEST_DIR)  # what only a grid search writes into its directory
LOCK_FILE = ".lock"
STAGING_DIR = ".staging"
COMMIT_FILE = "COMMIT"
# keys a --resume may change: the epoch budget, the progress bar and the device
# count (checkpoints hold host arrays, so a run moves between device counts)
RESUMABLE_KEYS = {("training", "epochs"), ("training", "progress"), ("training", "devices")}


class RunDirectoryError(Exception):
    """A run directory that cannot be used (a file in the way, not writable,
    locked by another run); the message names the directory."""


def run_directory(config, out: str | None) -> str:
    return out if out is not None else os.path.join("runs", config.name)


# --------------------------------------------------------------------------
# creating and locking


def _file_in_the_way(path: str) -> str | None:
    """``path`` or its nearest existing ancestor when that is not a directory."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return None if os.path.isdir(current) else current


def make_run_directory(path: str) -> bool:
    """Create run directory ``path`` (and its parents); True when it was created.

    Raises:
      RunDirectoryError: ``path`` or a directory above it is a file, or the
        directory cannot be created or written (naming the path and the reason).
    """
    blocking = _file_in_the_way(path)
    if blocking is not None:
        where = "is a file" if blocking == os.path.abspath(path) else f"is below {blocking!r}, which is a file"
        raise RunDirectoryError(f"run directory {path!r} {where}; give --out a directory")
    created = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RunDirectoryError(f"run directory {path!r} cannot be created: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"run directory {path!r} is not writable (permission denied)")
    return created


def _open_lock_file(directory: str) -> int:
    """The lock file's descriptor; a symlink there is replaced by a file (never followed)."""
    path = os.path.join(directory, LOCK_FILE)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise RunDirectoryError(f"run directory {directory!r}: cannot open its lock file ({e.strerror})") from None
        os.unlink(path)
        return os.open(path, flags, 0o666)


def _holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {holder['pid']} on host {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextlib.contextmanager
def locked_run_directory(path: str):
    """Create run directory ``path`` and hold an exclusive lock on it until the
    block ends (``fcntl.flock`` on ``path/.lock``, which records this process's
    pid and host). A directory this call created and the run left empty is
    removed again.

    Raises:
      RunDirectoryError: as :func:`make_run_directory`, or another process holds
        the lock (naming the directory and the holder's pid and host).
    """
    import fcntl

    created = make_run_directory(path)
    fd = _open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"run directory {path!r} is in use by another run ({_holder(fd)}); wait for it to finish "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode(), 0)
        yield path
    finally:
        if created and os.listdir(path) == [LOCK_FILE]:  # nothing written: leave no trace
            os.unlink(os.path.join(path, LOCK_FILE))
            os.rmdir(path)
        os.close(fd)  # releases the lock


# --------------------------------------------------------------------------
# recovery, staging and the journaled commit


def holds_run(directory: str) -> bool:
    """Whether ``directory`` holds (some of) a run's files."""
    return any(os.path.lexists(os.path.join(directory, name)) for name in RUN_FILES)


def _remove_stale_temporaries(directory: str) -> list:
    """Delete the temporary files (``.<name>.<random>.tmp``) that atomic writes
    of a killed run left; returns their names."""
    removed = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(".") and name.endswith(".tmp") and not os.path.isdir(path):
            os.unlink(path)
            removed.append(name)
    return removed


def _apply_commit(directory: str, journal: dict) -> None:
    """Move the staged files in and remove the earlier run's files the journal
    lists (each step can be repeated), then delete ``.staging``."""
    staging = os.path.join(directory, STAGING_DIR)
    for name in (n for n in journal["replace"] if n in RUN_FILES):  # only run files, whatever the journal says
        staged = os.path.join(staging, name)
        if os.path.lexists(staged):
            os.replace(staged, os.path.join(directory, name))
    for name in (n for n in journal["remove"] if n in RUN_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    shutil.rmtree(staging)
    fsync_directory(directory)


def recover(directory: str) -> list:
    """Bring ``directory`` back to one consistent run after a killed run (call
    with the lock held): finish an interrupted commit (``.staging/COMMIT``
    present), or roll back a staged run that never reached its first
    checkpoint (``.staging`` without ``COMMIT``), and delete stale temporary
    files. Returns notes saying what was done."""
    notes = []
    staging = os.path.join(directory, STAGING_DIR)
    if os.path.islink(staging) or os.path.isfile(staging):
        os.unlink(staging)
    elif os.path.isdir(staging):
        journal_path = os.path.join(staging, COMMIT_FILE)
        if os.path.isfile(journal_path):
            with open(journal_path) as f:
                _apply_commit(directory, json.load(f))
            notes.append(f"finished moving an interrupted run's files into {directory}")
        else:
            shutil.rmtree(staging)
            notes.append(f"removed {staging} (a run that stopped before its first checkpoint)")
    removed = _remove_stale_temporaries(directory)
    if removed:
        notes.append(f"removed {len(removed)} stale temporary file(s) of a killed run from {directory}")
    return notes


def check_search_directory(directory: str) -> None:
    """A grid search writes its result files straight into ``directory``
    (its ``config.yaml`` and ``summary.json`` too): it must not hold a
    training run, whose files it would overwrite.

    Raises:
      RunDirectoryError: ``directory`` holds a training run's checkpoint.
    """
    if os.path.lexists(os.path.join(directory, CHECKPOINT_FILE)):
        raise RunDirectoryError(
            f"run directory {directory!r} holds a training run ({CHECKPOINT_FILE}); a search would overwrite its "
            "config.yaml and summary.json: choose another --out"
        )


def check_training_directory(directory: str) -> None:
    """The mirror of :func:`check_search_directory`: a training run writes its
    ``config.yaml`` and ``summary.json`` into ``directory``, so it must not hold
    a grid search (its ``results.csv`` or ``best/``), whose files it would
    overwrite and whose chosen run it would leave inconsistent.

    Raises:
      RunDirectoryError: ``directory`` holds a search's results.
    """
    found = [name for name in SEARCH_MARKERS if os.path.lexists(os.path.join(directory, name))]
    if found:
        raise RunDirectoryError(
            f"run directory {directory!r} holds a grid search ({', '.join(found)}); training would overwrite its "
            f"config.yaml and summary.json: choose another --out (to continue the chosen run: train "
            f"{os.path.join(directory, BEST_DIR, CONFIG_FILE)} --resume)"
        )


class RunFiles:
    """Where a ``train`` run writes each of its files.

    ``staged`` (a fresh run into a directory holding another run): every file
    goes to ``.staging/`` until :meth:`commit`, which moves them in together
    and removes the earlier run's other files (its plot, its summary), with a
    journal so that a kill at any moment can be finished or rolled back
    (:func:`recover`). Not staged: files go straight into the directory.
    """

    def __init__(self, directory: str, *, staged: bool):
        self.directory, self.staged, self.committed = directory, staged, False
        if staged:
            os.makedirs(os.path.join(directory, STAGING_DIR), exist_ok=True)

    @property
    def pending(self) -> bool:
        """Whether files still go to ``.staging/``."""
        return self.staged and not self.committed

    def path(self, name: str) -> str:
        """Where file ``name`` is written now."""
        return os.path.join(self.directory, STAGING_DIR if self.pending else "", name)

    def commit(self) -> None:
        """Move the staged files in, replacing the earlier run's (journaled)."""
        if not self.pending:
            return
        staging = os.path.join(self.directory, STAGING_DIR)
        staged = sorted(name for name in os.listdir(staging) if name in RUN_FILES)
        earlier = [name for name in RUN_FILES if name not in staged and os.path.lexists(os.path.join(self.directory, name))]
        journal = {"replace": staged, "remove": earlier}
        atomic_write_bytes(os.path.join(staging, COMMIT_FILE), json.dumps(journal).encode())
        self.committed = True  # from here on the move is finished, now or at the next start (never discarded)
        _apply_commit(self.directory, journal)

    def discard(self) -> None:
        """Drop the staged files of a run that did not reach its first checkpoint."""
        if self.pending:
            shutil.rmtree(os.path.join(self.directory, STAGING_DIR), ignore_errors=True)

    def write(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.path(name), data)


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


def note_staging(directory: str) -> None:
    """Say that a fresh run into ``directory``, which holds another run, stages its files."""
    print(
        f"note: {directory} holds an earlier run; this run starts afresh and replaces it when it writes its first "
        f"checkpoint (until then it writes to {os.path.join(directory, STAGING_DIR)}; use --resume to continue "
        "the earlier run instead, or another --out to keep both)",
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


