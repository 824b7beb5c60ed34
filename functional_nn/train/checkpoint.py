"""Checkpoints: pytrees and JSON metadata in one ``.npz`` file, written atomically.

Format: every leaf of every named pytree is stored as its raw bytes (entry
``"<tree>/<index>"``), and the entry ``"__metadata__"`` holds JSON with the
format version, each leaf's dtype and shape, a SHA-256 of all leaf bytes and the
caller's metadata. Loading needs a template pytree of the same structure (the
state the run would start from), so resuming restores exactly the same bits.

Writing goes to a temporary file in the destination's directory, which is
flushed, fsync-ed and then ``os.replace``-d onto the destination: a crash at
any point leaves either the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_nn.train.early_stopping import EarlyStoppingState

FORMAT_VERSION = 1
METADATA_ENTRY = "__metadata__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back (truncated, corrupt, or not matching)."""


# --------------------------------------------------------------------------
# leaves <-> bytes


def _is_prng_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaf_record(leaf):
    """(raw bytes as uint8, description) of one leaf; typed PRNG keys store their key data."""
    description = {}
    if _is_prng_key(leaf):
        description["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    array = np.asarray(jax.device_get(leaf))  # tobytes() is C-ordered
    description.update(dtype=array.dtype.name, shape=list(array.shape))
    return np.frombuffer(array.tobytes(), np.uint8), description


def _leaf_from_record(raw: np.ndarray, description: dict):
    array = np.frombuffer(raw.tobytes(), jnp.dtype(description["dtype"])).reshape(tuple(description["shape"]))
    if "key_impl" in description:
        return jax.random.wrap_key_data(array, impl=description["key_impl"])
    return array


# --------------------------------------------------------------------------
# atomic file writing


def fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` in ``directory`` (mode 0o666 less the
    umask, as ``open`` would create it; ``tempfile.mkstemp`` would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp_path = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp_path, flags, 0o666), temp_path
        except FileExistsError:
            continue


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory,
    flush + fsync, then ``os.replace``. On failure the temp file is removed and
    whatever was at ``path`` before stays untouched. The file follows the
    umask, and a symlink at ``path`` is replaced, never written through.

    Raises:
      OSError: naming ``path`` (e.g. ``[Errno 28] No space left on device: 'run/checkpoint.npz'``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, temp_path = _create_temporary(directory, os.path.basename(path))
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
    fsync_directory(directory)


def _naming(error: OSError, path: str) -> OSError:
    """``error`` with ``path`` as its file name when it names none."""
    if error.filename is None and error.errno is not None:
        return type(error)(error.errno, error.strerror, path)
    return error


def _write_all(f, data: bytes, chunk: int = 1 << 20) -> None:
    for start in range(0, len(data), chunk):
        f.write(data[start : start + chunk])


# --------------------------------------------------------------------------
# generic save / load of named pytrees


def save_pytrees(path: str, trees: dict, metadata: dict | None = None) -> None:
    """Save named pytrees (a ``None`` tree is stored as absent) and JSON ``metadata``."""
    arrays, descriptions, digest = {}, {}, hashlib.sha256()
    for name, tree in trees.items():
        if tree is None:
            continue
        descriptions[name] = []
        for i, leaf in enumerate(jax.tree.leaves(tree)):
            raw, description = _leaf_record(leaf)
            arrays[f"{name}/{i}"] = raw
            descriptions[name].append(description)
            digest.update(raw.tobytes())
    header = {
        "format_version": FORMAT_VERSION,
        "trees": descriptions,
        "sha256": digest.hexdigest(),
        "metadata": metadata or {},
    }
    arrays[METADATA_ENTRY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_entries(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except Exception as e:  # BadZipFile (truncated), CRC errors (corrupt), format errors
        raise CheckpointError(
            f"checkpoint {path!r} is truncated or corrupt and cannot be read ({type(e).__name__}: {e})"
        ) from e


def _read_header(path: str, entries: dict) -> dict:
    if METADATA_ENTRY not in entries:
        raise CheckpointError(f"checkpoint {path!r} has no {METADATA_ENTRY} entry (not a functional_nn checkpoint?)")
    try:
        header = json.loads(entries[METADATA_ENTRY].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path!r} has corrupt metadata ({e})") from e
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format version {header.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    return header


def _verify_digest(path: str, header: dict, entries: dict) -> None:
    digest = hashlib.sha256()
    for name, descriptions in header["trees"].items():
        for i in range(len(descriptions)):
            key = f"{name}/{i}"
            if key not in entries:
                raise CheckpointError(f"checkpoint {path!r} is missing entry {key!r}")
            digest.update(entries[key].tobytes())
    if digest.hexdigest() != header["sha256"]:
        raise CheckpointError(f"checkpoint {path!r} is corrupt (SHA-256 of its arrays does not match)")


def _restore_tree(path: str, name: str, like, descriptions: list, entries: dict):
    like_leaves, treedef = jax.tree.flatten(like)
    if len(like_leaves) != len(descriptions):
        raise CheckpointError(
            f"checkpoint {path!r}: tree {name!r} has {len(descriptions)} leaves, the template has {len(like_leaves)} "
            "(was it written for another model or optimizer?)"
        )
    leaves = []
    for i, (template, description) in enumerate(zip(like_leaves, descriptions)):
        leaf = _leaf_from_record(entries[f"{name}/{i}"], description)
        if jnp.shape(template) != leaf.shape or jnp.result_type(template) != leaf.dtype:
            raise CheckpointError(
                f"checkpoint {path!r}: leaf {i} of {name!r} is {leaf.dtype}{list(leaf.shape)}, "
                f"the template expects {jnp.result_type(template)}{list(jnp.shape(template))}"
            )
        leaves.append(leaf)
    return jax.tree.unflatten(treedef, leaves)


def load_pytrees(path: str, like: dict) -> tuple[dict, dict]:
    """(trees, metadata): each tree named in ``like`` rebuilt with the template's
    structure (``None`` where the file does not hold it) and the JSON metadata."""
    path = os.fspath(path)
    entries = _read_entries(path)
    header = _read_header(path, entries)
    _verify_digest(path, header, entries)
    trees = {
        name: _restore_tree(path, name, template, header["trees"][name], entries) if name in header["trees"] else None
        for name, template in like.items()
    }
    return trees, header["metadata"]


# --------------------------------------------------------------------------
# training checkpoints


class TrainingCheckpoint(NamedTuple):
    """What a resumed run needs: the train state after ``epoch`` completed epochs,
    the metrics ``history`` so far and the early-stopping state. ``config`` is the
    run's resolved config as plain data (``config_to_dict``), when the writer gave
    one: ``--resume`` checks the current config against it."""

    train_state: Any
    epoch: int
    history: list
    early_stopping: EarlyStoppingState
    config: dict | None = None


def save_training_checkpoint(path: str, checkpoint: TrainingCheckpoint) -> None:
    stopping = checkpoint.early_stopping
    save_pytrees(
        path,
        {
            "train_state": checkpoint.train_state,
            "best_params": stopping.best_params,
            "best_model_state": stopping.best_model_state,
        },
        {
            "epoch": checkpoint.epoch,
            "history": checkpoint.history,
            "early_stopping": {
                "best_value": stopping.best_value,
                "best_epoch": stopping.best_epoch,
                "wait": stopping.wait,
            },
            **({"config": checkpoint.config} if checkpoint.config is not None else {}),
        },
    )


def read_checkpoint_metadata(path: str) -> dict:
    """A checkpoint's JSON metadata (epoch, history, early stopping, config when
    stored), verified but without restoring any arrays (no template needed)."""
    path = os.fspath(path)
    entries = _read_entries(path)
    header = _read_header(path, entries)
    _verify_digest(path, header, entries)
    return header["metadata"]


def load_training_checkpoint(path: str, like_train_state) -> TrainingCheckpoint:
    """Load a checkpoint written by :func:`save_training_checkpoint`; ``like_train_state``
    is a train state of the same model and optimizer (e.g. a freshly initialised one)."""
    trees, metadata = load_pytrees(
        path,
        {
            "train_state": like_train_state,
            "best_params": like_train_state.params,
            "best_model_state": like_train_state.model_state,
        },
    )
    try:
        stopping = EarlyStoppingState(
            best_params=trees["best_params"], best_model_state=trees["best_model_state"], **metadata["early_stopping"]
        )
        train_state = jax.tree.map(jnp.asarray, trees["train_state"])
        return TrainingCheckpoint(
            train_state, int(metadata["epoch"]), list(metadata["history"]), stopping, metadata.get("config")
        )
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path!r} has incomplete training metadata ({e})") from e
