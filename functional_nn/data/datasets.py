"""Data sets: the real ``digits`` set, two synthetic sets, and user files.

Every loader returns a :class:`DataSplits` of host (NumPy) arrays: training,
validation and test :class:`Split` s, split deterministically by ``seed`` and
standardised with statistics of the *training* split only (so nothing about
the held-out data leaks into training).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from typing import NamedTuple

import numpy as np

from functional_nn.data.files import load_idx, load_npz
from functional_nn.registry import Registry

#: Data set loaders by name; each returns :class:`DataSplits`.
DATASETS = Registry("dataset")

STANDARDIZE_MODES = ("feature", "global", "none")


class Split(NamedTuple):
    """One split of a data set: inputs ``x`` (N, ...) and targets ``y`` (N, ...)."""

    x: np.ndarray
    y: np.ndarray


class DataSplits(NamedTuple):
    """Training, validation and test splits of one data set.

    ``num_classes`` is ``None`` for regression; ``image_shape`` is the (H, W) or
    (H, W, C) shape of one example's image when the examples are images (the
    augmentations need it when the examples are stored flat).
    """

    train: Split
    val: Split
    test: Split
    num_classes: int | None = None
    image_shape: tuple | None = None


# --------------------------------------------------------------------------
# splitting and standardising


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value!r} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction!r} must be < 1 "
            "(something must be left to train on)"
        )


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float):
    """A deterministic random partition of ``range(n)`` into (train, val, test) indices."""
    _check_fractions(val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return train, val, test


def standardization_statistics(x_train: np.ndarray, mode: str = "feature"):
    """Mean and standard deviation of the training inputs.

    ``feature``: one (μ, σ) per input feature (σ = 1 where a feature is
    constant); ``global``: one scalar (μ, σ) for all features; ``none``: (0, 1).
    """
    if mode not in STANDARDIZE_MODES:
        raise ValueError(f"standardize={mode!r} must be one of {STANDARDIZE_MODES}")
    x = np.asarray(x_train, np.float64)
    if mode == "none":
        return np.float64(0.0), np.float64(1.0)
    axis = 0 if mode == "feature" else None
    mean, std = x.mean(axis=axis), x.std(axis=axis)
    return mean, np.where(std > 0, std, 1.0)


def standardize(x: np.ndarray, mean, std) -> np.ndarray:
    """(x − μ) / σ in float32."""
    return ((np.asarray(x, np.float64) - mean) / std).astype(np.float32)


def make_splits(
    x,
    y,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "feature",
    num_classes: int | None = None,
    image_shape: tuple | None = None,
    test: Split | None = None,
) -> DataSplits:
    """Split ``(x, y)`` by ``seed`` and standardise with the training statistics.

    When ``test`` is given (a data set with its own test files), only a
    validation split is carved out of ``(x, y)``.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} and {len(y)}")
    if test is None:
        train_idx, val_idx, test_idx = split_indices(len(x), seed, val_fraction, test_fraction)
        test_x, test_y = x[test_idx], y[test_idx]
    else:
        train_idx, val_idx, _ = split_indices(len(x), seed, val_fraction, 0.0)
        test_x, test_y = np.asarray(test.x), np.asarray(test.y)
    mean, std = standardization_statistics(x[train_idx], standardize_mode)

    def to_split(xs, ys):
        return Split(standardize(xs, mean, std), ys)

    return DataSplits(
        train=to_split(x[train_idx], y[train_idx]),
        val=to_split(x[val_idx], y[val_idx]),
        test=to_split(test_x, test_y),
        num_classes=num_classes,
        image_shape=image_shape,
    )


# --------------------------------------------------------------------------
# the digits data set (scikit-learn ships it; read offline)


def _digits_csv_path() -> str | None:
    """Path of scikit-learn's ``digits.csv.gz`` without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            return path
    return None


def digits_arrays():
    """The 1797 8×8 digit images (float64, values 0..16, flat (N, 64)) and labels."""
    path = _digits_csv_path()
    if path is None:  # fall back on scikit-learn's own loader
        from sklearn.datasets import load_digits as sklearn_load_digits

        bunch = sklearn_load_digits()
        return bunch.data, bunch.target.astype(np.int32)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int32)


@DATASETS.register(name="digits", main_argument="")
def load_digits(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "feature",
) -> DataSplits:
    """scikit-learn's handwritten digits (10 classes, 8×8 images stored flat)."""
    x, y = digits_arrays()
    return make_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=standardize_mode,
        num_classes=10,
        image_shape=(8, 8),
    )


# --------------------------------------------------------------------------
# synthetic sets


def spirals_arrays(n_per_class: int = 100, num_classes: int = 3, noise: float = 0.2, *, seed: int = 0):
    """Interleaved 2-D spirals: class c's points lie on arm r ↦ r·(cos θ, sin θ),
    θ = 4r + 2πc/C, r ∈ [0, 1], with N(0, noise²) added to θ."""
    if n_per_class < 1 or num_classes < 2:
        raise ValueError(f"need n_per_class >= 1 and num_classes >= 2, got {n_per_class}, {num_classes}")
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), num_classes)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    theta = 4.0 * r + 2.0 * np.pi * labels / num_classes + noise * rng.standard_normal(r.shape)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return x, labels.astype(np.int32)


@DATASETS.register(name="spirals", main_argument="")
def spirals(
    n_per_class: int = 100,
    num_classes: int = 3,
    noise: float = 0.2,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "feature",
) -> DataSplits:
    """Classification: :func:`spirals_arrays`, split and standardised."""
    x, y = spirals_arrays(n_per_class, num_classes, noise, seed=seed)
    return make_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=standardize_mode,
        num_classes=num_classes,
    )


def noisy_function_arrays(n: int = 256, noise: float = 0.1, *, seed: int = 0):
    """Regression: d = sin(3x) + x/2 + N(0, noise²), x ~ U[−1, 1]; y has shape (n, 1)."""
    if n < 1:
        raise ValueError(f"n={n!r} must be >= 1")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    d = np.sin(3.0 * x) + 0.5 * x + noise * rng.standard_normal((n, 1))
    return x, d.astype(np.float32)


@DATASETS.register(name="noisy_function", main_argument="")
def noisy_function(
    n: int = 256,
    noise: float = 0.1,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "feature",
) -> DataSplits:
    """Regression: :func:`noisy_function_arrays`, split; inputs standardised."""
    x, y = noisy_function_arrays(n, noise, seed=seed)
    return make_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=standardize_mode,
    )


# --------------------------------------------------------------------------
# user files


def _class_count(*label_arrays) -> int | None:
    labels = [np.asarray(a) for a in label_arrays if a is not None]
    if not labels or not all(np.issubdtype(a.dtype, np.integer) and a.ndim == 1 for a in labels):
        return None
    return int(max(a.max(initial=-1) for a in labels)) + 1


def _as_labels(y: np.ndarray) -> np.ndarray:
    return y.astype(np.int32) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32)


def _image_shape(x: np.ndarray) -> tuple | None:
    return tuple(x.shape[1:]) if x.ndim in (3, 4) else None


def _find_idx_file(directory: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


@DATASETS.register(name="idx", main_argument="")
def load_idx_directory(
    directory: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "global",
) -> DataSplits:
    """MNIST-style IDX files in ``directory``.

    Needs ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (each
    optionally ``.gz``); uses ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``
    as the test split when present, else splits one off the training files.
    Integer pixel values are scaled to [0, 1] before standardising.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"IDX data directory {directory!r} does not exist")
    paths = {
        stem: _find_idx_file(directory, stem)
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        if paths[stem] is None:
            raise FileNotFoundError(f"{directory!r} has no {stem}[.gz] file")

    def images(path):
        x = load_idx(path)
        return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)

    x, y = images(paths["train-images-idx3-ubyte"]), _as_labels(load_idx(paths["train-labels-idx1-ubyte"]))
    test = None
    if paths["t10k-images-idx3-ubyte"] and paths["t10k-labels-idx1-ubyte"]:
        test = Split(images(paths["t10k-images-idx3-ubyte"]), _as_labels(load_idx(paths["t10k-labels-idx1-ubyte"])))
    return make_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=standardize_mode,
        num_classes=_class_count(y, test.y if test else None),
        image_shape=_image_shape(x),
        test=test,
    )


@DATASETS.register(name="npz", main_argument="")
def load_npz_file(
    path: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize_mode: str = "feature",
) -> DataSplits:
    """A ``.npz`` file with arrays ``x``, ``y`` (split by ``seed``) or
    ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` (used as the
    test split; the validation split comes out of the training arrays)."""
    arrays = load_npz(path)
    if "x" in arrays and "y" in arrays:
        x, y, test = arrays["x"], arrays["y"], None
    elif "x_train" in arrays and "y_train" in arrays:
        x, y = arrays["x_train"], arrays["y_train"]
        test = Split(arrays["x_test"].astype(np.float32), _as_labels(arrays["y_test"])) if "x_test" in arrays else None
    else:
        raise ValueError(f"{path}: expected arrays 'x' and 'y' or 'x_train' and 'y_train', found {sorted(arrays)}")
    y = _as_labels(y)
    return make_splits(
        x.astype(np.float32),
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=standardize_mode,
        num_classes=_class_count(y, test.y if test else None),
        image_shape=_image_shape(x),
        test=test,
    )
