"""A trained run, loaded: :func:`load_run` (``functional_nn.load_run``).

A run directory (what ``train`` writes, and what ``search`` writes as
``runs/<name>/best/``) holds the resolved ``config.yaml``, the training
``checkpoint.npz`` and ``preprocessing.npz``: the standardisation statistics
the inputs were fed with, x ↦ (x − μ)/σ with μ, σ of the training split, and
the shape of one example. :func:`load_run` rebuilds the model from the config,
reads the weights the run kept (the best epoch's with
``early_stopping.restore_best``, else the last ones) and returns a :class:`Run`
whose :meth:`Run.predict` applies that preprocessing to raw inputs, so
predicting needs no training data. ``python -m functional_nn eval`` and
``predict`` call :func:`load_run`: the CLI and Python use the same objects.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from functional_nn.data.datasets import standardize
from functional_nn.experiment import builders
from functional_nn.experiment.loading import dump_config, load_config, takes_logits
from functional_nn.experiment.run_dir import BEST_DIR, CHECKPOINT_FILE, CONFIG_FILE, PREPROCESSING_FILE, RESULTS_CSV
from functional_nn.experiment.schema import Config, ConfigError
from functional_nn.train.checkpoint import atomic_write_bytes, CheckpointError, load_training_checkpoint, read_checkpoint_metadata
from functional_nn.train.early_stopping import restore_best
from functional_nn.train.state import init_train_state
from functional_nn.train.step import make_evaluate

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------
# preprocessing saved with a run


class Preprocessing(NamedTuple):
    """What raw inputs go through before the model: x ↦ (x − μ)/σ (float32),
    with ``mean`` μ and ``std`` σ (float64, one per feature or one scalar) of
    the training split; ``input_shape`` is one example's shape and
    ``num_classes`` K (``None`` for regression)."""

    mean: np.ndarray
    std: np.ndarray
    input_shape: tuple
    num_classes: int | None

    def apply(self, x, *, source: str = "x") -> np.ndarray:
        """Raw inputs (N, *input_shape) standardised for the model.

        A batch of flat rows (N, prod(input_shape)) is reshaped to the input
        shape, one example of ``input_shape`` gets a batch axis.

        Raises:
          ValueError: naming ``source``: the examples' shape is not the model's
            input shape, or an input is not a finite number.
        """
        return standardize(self.check_inputs(x, source=source), self.mean, self.std)

    def check_inputs(self, x, *, source: str = "x") -> np.ndarray:
        """``x`` as a float64 batch of the model's input shape (see :meth:`apply`)."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{source}: inputs must be numbers, got an array of dtype {x.dtype}")
        shape = tuple(self.input_shape)
        if x.shape == shape:
            x = x[None]
        elif x.ndim == 2 and x.shape[1:] != shape and x.shape[1] == int(np.prod(shape)):
            x = x.reshape((len(x),) + shape)
        if x.shape[1:] != shape:
            raise ValueError(
                f"{source}: examples of shape {x.shape[1:]} (array {x.shape}); the model takes examples of shape "
                f"{shape} (an array (N, {', '.join(map(str, shape))}), or flat rows of {int(np.prod(shape))} values)"
            )
        x = x.astype(np.float64)
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{source}: {int(bad.sum())} of {len(x)} examples are not finite (first: index {int(np.argmax(bad))})")
        return x


def data_preprocessing(data) -> Preprocessing:
    """The :class:`Preprocessing` of a ``DataSplits`` (its ``standardization``;
    none recorded: the identity)."""
    mean, std = data.standardization if data.standardization is not None else (0.0, 1.0)
    return Preprocessing(
        np.asarray(mean, np.float64), np.asarray(std, np.float64), tuple(data.train.x.shape[1:]), data.num_classes
    )


def preprocessing_bytes(data) -> bytes:
    """The ``preprocessing.npz`` file of ``data`` (a ``DataSplits``): μ, σ, one
    example's shape and K (-1: regression)."""
    pre = data_preprocessing(data)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mean=pre.mean,
        std=pre.std,
        input_shape=np.asarray(pre.input_shape, np.int64),
        num_classes=np.int64(-1 if pre.num_classes is None else pre.num_classes),
    )
    return buffer.getvalue()


def write_preprocessing(directory: str, data) -> None:
    """``<directory>/preprocessing.npz`` (:func:`preprocessing_bytes`), written atomically."""
    atomic_write_bytes(os.path.join(directory, PREPROCESSING_FILE), preprocessing_bytes(data))


def write_run_files(directory: str, config: Config, data) -> None:
    """``config.yaml`` and ``preprocessing.npz`` of a run in ``directory``: with the
    checkpoint ``fit(..., checkpoint_path=<directory>/checkpoint.npz)`` writes,
    a run directory that :func:`load_run`, ``eval`` and ``predict`` take."""
    os.makedirs(directory, exist_ok=True)
    atomic_write_bytes(os.path.join(directory, CONFIG_FILE), dump_config(config).encode())
    write_preprocessing(directory, data)


def read_preprocessing(directory: str) -> Preprocessing:
    """The :class:`Preprocessing` stored in ``<directory>/preprocessing.npz``."""
    path = os.path.join(directory, PREPROCESSING_FILE)
    try:
        with np.load(path, allow_pickle=False) as f:
            num_classes = int(f["num_classes"])
            return Preprocessing(
                f["mean"], f["std"], tuple(int(n) for n in f["input_shape"]), None if num_classes < 0 else num_classes
            )
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the run's preprocessing ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------
# finding the run


def is_run_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isfile(os.path.join(path, CHECKPOINT_FILE))


def run_config_directory(path: str) -> str | None:
    """The run directory whose ``config.yaml`` ``path`` is (``train RUN_DIR/config.yaml
    --resume`` continues that run), else ``None``."""
    directory = os.path.dirname(os.fspath(path)) or "."
    if os.path.basename(path) == CONFIG_FILE and is_run_directory(directory):
        return directory
    return None


def resolve_run_directory(path: str) -> str:
    """The run directory ``path`` names: a run directory, its ``config.yaml``, or a
    search directory (its chosen setting, ``best/``).

    Raises:
      FileNotFoundError: ``path`` does not exist, or is none of these (saying what it lacks).
    """
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.basename(path) == CONFIG_FILE:
        path = os.path.dirname(path) or "."
    if not os.path.exists(path):
        raise FileNotFoundError(f"run directory {path!r} does not exist")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path!r} is not a run directory (nor its {CONFIG_FILE})")
    if is_run_directory(path):
        return path
    best = os.path.join(path, BEST_DIR)
    if is_run_directory(best):
        return best
    missing = [name for name in (CONFIG_FILE, CHECKPOINT_FILE) if not os.path.isfile(os.path.join(path, name))]
    if os.path.isfile(os.path.join(path, RESULTS_CSV)):
        raise FileNotFoundError(
            f"{path!r} is a search directory without {BEST_DIR}/ (the chosen setting's run, written by search); "
            "rerun the search"
        )
    raise FileNotFoundError(
        f"{path!r} is not a run directory: it has no {' or '.join(missing)} (train writes them; a search "
        f"directory holds its chosen run in {BEST_DIR}/)"
    )


# --------------------------------------------------------------------------
# the run


class Predictions(NamedTuple):
    """``outputs``: the model's outputs (N, ...); for classification also
    ``classes`` (N,) = argmax and ``probabilities`` (N, K) (softmax of the
    outputs when the loss takes logits, else the outputs themselves)."""

    outputs: np.ndarray
    classes: np.ndarray | None = None
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class Run:
    """A trained run: ``model`` (a ``Layer``), the kept ``params`` and model
    ``state``, the ``config``, the ``loss``, the ``preprocessing`` and the
    ``directory`` it was read from; ``epoch`` is the last epoch trained and
    ``best_epoch`` the best one on the monitored metric."""

    directory: str
    config: Config
    model: Any
    loss: Any
    params: Any
    state: Any
    preprocessing: Preprocessing
    epoch: int
    best_epoch: int

    @property
    def task(self) -> str:
        return "regression" if self.preprocessing.num_classes is None else "classification"

    @functools.cached_property
    def _apply(self):
        """The model in eval mode, compiled once per run (per batch shape)."""
        import jax

        return jax.jit(lambda params, state, batch: self.model.apply(params, state, batch, train=False)[0])

    @functools.cached_property
    def _evaluate(self):
        return make_evaluate(self.model, self.loss, chunk_size=self.config.training.eval_chunk_size)

    def outputs(self, x, *, preprocessed: bool = False) -> np.ndarray:
        """The model's outputs in eval mode (running statistics, no dropout) on raw
        inputs ``x`` (standardised first; ``preprocessed=True``: already standardised),
        in chunks of ``training.eval_chunk_size`` examples."""
        x = np.asarray(x, np.float32) if preprocessed else self.preprocessing.apply(x)
        chunk = self.config.training.eval_chunk_size
        parts = [np.asarray(self._apply(self.params, self.state, x[i : i + chunk])) for i in range(0, len(x), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

    def predict(self, x, *, preprocessed: bool = False) -> Predictions:
        """:class:`Predictions` for raw inputs ``x`` (see :meth:`outputs`)."""
        outputs = self.outputs(x, preprocessed=preprocessed)
        if self.task == "regression":
            return Predictions(outputs)
        probabilities = outputs
        if takes_logits(self.config.loss.name):
            shifted = outputs - outputs.max(axis=-1, keepdims=True)
            probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return Predictions(outputs, np.argmax(outputs, axis=-1).astype(np.int32), probabilities)

    def evaluate(self, split="test", *, preprocessed: bool = False) -> dict:
        """Loss (and accuracy) in eval mode on ``split``: ``"train"``, ``"val"`` or
        ``"test"`` of the config's data (rebuilt from the config), or arrays
        ``(x, y)`` of raw inputs (standardised first unless ``preprocessed``).

        Raises:
          ValueError: an unknown split name, or empty arrays.
          ConfigError: the config's split is empty (:func:`config_split`).
        """
        if isinstance(split, str):
            x, y = config_split(self.config, split)
            preprocessed = True
        else:
            x, y = split
        x = np.asarray(x, np.float32) if preprocessed else self.preprocessing.apply(x)
        from functional_nn.train.state import TrainState

        return self._evaluate(TrainState(self.params, self.state, None, None, None), x, np.asarray(y))


def config_split(config: Config, split: str, *, source: str = "split"):
    """The ``(x, y)`` arrays of split ``split`` (``"train"``, ``"val"`` or
    ``"test"``) of ``config``'s data, standardised as in training.

    Raises:
      ValueError: ``split`` is no split name (naming ``source``).
      ConfigError: the split is empty, naming ``source`` and the
        ``data.<split>_fraction`` that made it so.
    """
    if split not in SPLITS:
        raise ValueError(f"{source}={split!r}: must be one of {', '.join(SPLITS)} or arrays (x, y)")
    x, y = getattr(builders.build_data(config.data), split)
    if len(x) == 0:
        fractions = f"data.{split}_fraction={getattr(config.data, f'{split}_fraction')}" if split != "train" else (
            f"data.val_fraction={config.data.val_fraction} and data.test_fraction={config.data.test_fraction}"
        )
        raise ConfigError(
            f"{source}={split!r}: the run's {split} split is empty ({fractions}): nothing to evaluate; "
            f"choose another split"
        )
    return x, y


def _checkpoint_template(config: Config, model, input_shape: tuple):
    """The structure, shapes and dtypes of the run's train state (what its
    checkpoint holds), traced with ``jax.eval_shape``: nothing is computed or compiled."""
    import jax

    optimizer = builders.build_optimizer(config.optimizer)
    batch = (config.training.batch_size,) + tuple(input_shape)
    return jax.eval_shape(lambda: init_train_state(model, optimizer, jax.random.key(config.training.seed), batch))


def check_not_search_parameters(checkpoint: str) -> None:
    """A search's ``best_params.npz`` holds only the chosen setting's
    parameters (its metadata: the ``setting``), no training state: it is no
    checkpoint to evaluate; the search directory's ``best/`` run is.

    Raises:
      CheckpointError: ``checkpoint`` is such a file, saying what to use instead.
    """
    metadata = read_checkpoint_metadata(checkpoint)
    if "setting" in metadata and "epoch" not in metadata:
        search = os.path.dirname(os.path.abspath(checkpoint))
        raise CheckpointError(
            f"checkpoint {checkpoint!r} is a grid search's chosen parameters (best_params.npz: parameters only, "
            f"no training checkpoint); evaluate the search directory instead: eval {search} (it evaluates its "
            f"chosen run, {os.path.join(search, BEST_DIR)}), or load_run({search!r}) in Python"
        )


def load_run(path: str, *, config: Config | None = None, checkpoint: str | None = None) -> Run:
    """Load a trained run from ``path``: a run directory, its ``config.yaml``, or
    a search directory (its chosen setting, ``best/``).

    Arguments:
      path: the run directory (or as above).
      config: use this config instead of the directory's ``config.yaml`` (it
        must describe the same model and optimizer as the checkpoint).
      checkpoint: a checkpoint file instead of ``<run dir>/checkpoint.npz``.

    Returns:
      A :class:`Run`. Without ``preprocessing.npz`` (runs written before it
      existed) the statistics are recomputed from the config's data.

    Raises:
      FileNotFoundError: no such run directory or checkpoint.
      ConfigError: the stored config is invalid.
      CheckpointError: the checkpoint is corrupt or of another model.
    """
    directory = resolve_run_directory(path)
    if config is None:
        config = load_config(os.path.join(directory, CONFIG_FILE))
    if os.path.isfile(os.path.join(directory, PREPROCESSING_FILE)):
        preprocessing = read_preprocessing(directory)
    else:
        preprocessing = data_preprocessing(builders.build_data(config.data))
    model, loss = builders.build_model(config.model), builders.build_loss(config.loss)
    template = _checkpoint_template(config, model, preprocessing.input_shape)
    if checkpoint is not None:
        check_not_search_parameters(checkpoint)
    loaded = load_training_checkpoint(checkpoint or os.path.join(directory, CHECKPOINT_FILE), template)
    state = loaded.train_state
    if builders.build_early_stopping(config.training).restore_best:
        state = restore_best(loaded.early_stopping, state)
    return Run(
        directory, config, model, loss, state.params, state.model_state, preprocessing, loaded.epoch,
        loaded.early_stopping.best_epoch,
    )
