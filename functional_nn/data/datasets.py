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

from functional_nn.data.checks import (
    DataError,
    NUMERIC_DTYPES,
    DataFileNotFoundError,
    check_fractions,
    check_integer,
    check_path,
    check_real,
    check_split,
    finite_rows,
)
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

    ``num_classes`` is K for classification (labels: int32 of shape (N,), in
    [0, K)) and ``None`` for regression (float32 targets of shape (N, ...));
    :attr:`task` names which. ``image_shape`` is the (H, W) or
    (H, W, C) shape of one example's image when the examples are images (the
    augmentations need it when the examples are stored flat).
    ``standardization`` is the (μ, σ) pair (float64) the inputs were
    standardised with, x ↦ (x − μ)/σ (:func:`standardize`), computed on the
    training split; new inputs need the same to be fed to a trained model.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int | None = None
    image_shape: tuple | None = None
    standardization: tuple | None = None

    @property
    def task(self) -> str:
        """``"classification"`` (integer labels in [0, num_classes)) or ``"regression"`` (float targets)."""
        return "regression" if self.num_classes is None else "classification"


# --------------------------------------------------------------------------
# splitting, checking and standardising


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float):
    """A deterministic random partition of ``range(n)`` into (train, val, test) indices."""
    check_fractions(val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return train, val, test


def check_standardize_mode(mode: str, name: str = "standardize") -> str:
    """``mode`` if it is one of :data:`STANDARDIZE_MODES`, else ``ValueError`` naming ``name``."""
    if not isinstance(mode, str) or mode not in STANDARDIZE_MODES:
        raise ValueError(f"{name}={mode!r} must be one of {STANDARDIZE_MODES}")
    return mode


def standardization_statistics(x_train: np.ndarray, mode: str = "feature"):
    """Mean and standard deviation of the training inputs.

    ``feature``: one (μ, σ) per input feature (σ = 1 where a feature is
    constant); ``global``: one scalar (μ, σ) for all features; ``none``: (0, 1).
    """
    check_standardize_mode(mode)
    x = np.asarray(x_train, np.float64)
    if mode == "none":
        return np.float64(0.0), np.float64(1.0)
    axis = 0 if mode == "feature" else None
    mean, std = x.mean(axis=axis), x.std(axis=axis)
    return mean, np.where(std > 0, std, 1.0)


def standardize(x: np.ndarray, mean, std) -> np.ndarray:
    """(x − μ) / σ in float32."""
    with np.errstate(over="ignore"):  # an overflow to inf is reported by the caller's check
        return ((np.asarray(x, np.float64) - mean) / std).astype(np.float32)


def _standardized_split(name: str, split: Split, mean, std) -> Split:
    """``split`` with standardised inputs; an input too large for float32 is a :class:`DataError`."""
    x = standardize(split.x, mean, std)
    bad = ~finite_rows(x)
    if bad.any():
        raise DataError(
            f"{name}: {int(bad.sum())} of {len(x)} examples overflow float32 after standardising "
            f"(first: index {int(np.argmax(bad))}); inputs must be below 3.4e38 in magnitude"
        )
    return Split(x, split.y)


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
    source: str | None = None,
) -> DataSplits:
    """Split ``(x, y)`` by ``seed``, check every split, and standardise with the training statistics.

    The checks (:func:`~functional_nn.data.check_split`) run on the raw
    inputs, before standardising: with ``num_classes`` = K the targets are
    class labels in [0, K) (returned as int32), with ``None`` regression
    targets (finite, returned as float32); inputs must be finite.

    Arguments:
      x, y: inputs (N, ...) and targets (N, ...).
      test: a data set's own test split; then only a validation split is carved out of ``(x, y)``.
      source: names the data in messages (e.g. the file).

    Raises:
      DataError: naming the split (and ``source``): lengths differ, no
        examples, bad labels, non-finite inputs or targets.
      ValueError: an argument is out of range (naming it).
    """
    prefix = f"{source}: " if source else ""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise DataError(f"{prefix}x and y have different lengths: x {x.shape}, y {y.shape}")
    check_standardize_mode(standardize_mode, "standardize_mode")
    if num_classes is not None:
        check_integer("num_classes", num_classes, 2)
    check_integer("seed", seed, 0)
    test_fraction = check_real("test_fraction", test_fraction, 0.0, 1.0, maximum_inclusive=False)
    if test is not None:
        test_fraction = 0.0  # the data set's own test split replaces it
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    train_idx, val_idx, test_idx = split_indices(len(x), seed, val_fraction, test_fraction)
    if len(train_idx) == 0:
        raise DataError(
            f"{prefix}train split: has no examples ({len(x)} examples with val_fraction={val_fraction!r}, "
            f"test_fraction={test_fraction!r}); at least one is needed to train"
        )
    raw = {name: Split(x[idx], y[idx]) for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    rows = {"train": train_idx, "val": val_idx, "test": test_idx}
    if test is not None:
        raw["test"], rows["test"] = Split(np.asarray(test.x), np.asarray(test.y)), None
    checked = {
        name: check_split(f"{prefix}{name} split", split, num_classes, rows=rows[name]) for name, split in raw.items()
    }
    mean, std = standardization_statistics(checked["train"].x, standardize_mode)
    return DataSplits(
        **{name: _standardized_split(f"{prefix}{name} split", split, mean, std) for name, split in checked.items()},
        num_classes=num_classes,
        image_shape=image_shape,
        standardization=(mean, std),
    )


# --------------------------------------------------------------------------
# arguments shared by the loaders

#: Earlier names of loader arguments, still accepted from Python (not from YAML).
_LEGACY_ARGUMENTS = {"standardize_mode": "standardize"}


def _with_legacy_arguments(function: str, values: dict, legacy: dict) -> dict:
    """``values`` updated by ``legacy`` keyword arguments (``standardize_mode=`` → ``standardize``)."""
    for old, value in legacy.items():
        new = _LEGACY_ARGUMENTS.get(old)
        if new not in values:
            raise TypeError(f"{function}() got an unexpected keyword argument {old!r}")
        values[new] = value
    return values


def _split_arguments(function: str, seed, val_fraction, test_fraction, standardize, legacy) -> dict:
    """The keyword arguments of :func:`make_splits`, each checked (naming it)."""
    values = _with_legacy_arguments(function, {"standardize": standardize}, legacy)
    test_fraction = check_real("test_fraction", test_fraction, 0.0, 1.0, maximum_inclusive=False)
    val_fraction = check_real("val_fraction", val_fraction, 0.0, 1.0, maximum_inclusive=False)
    return dict(
        seed=check_integer("seed", seed, 0),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        standardize_mode=check_standardize_mode(values["standardize"]),
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
    standardize: str = "feature",
    **legacy,
) -> DataSplits:
    """scikit-learn's handwritten digits (10 classes, 8×8 images stored flat).

    Arguments:
      seed: the split's seed (an integer >= 0).
      val_fraction, test_fraction: fractions of the 1797 examples held out, each in [0, 1), sum < 1.
      standardize: ``feature`` | ``global`` | ``none`` (see :func:`standardization_statistics`);
        ``standardize_mode=`` is accepted too.

    Raises:
      ValueError, TypeError: an argument is out of range / of the wrong type (naming it).
    """
    common = _split_arguments("load_digits", seed, val_fraction, test_fraction, standardize, legacy)
    x, y = digits_arrays()
    return make_splits(x, y, **common, num_classes=10, image_shape=(8, 8))


# --------------------------------------------------------------------------
# synthetic sets


def spirals_arrays(n_per_class: int = 100, num_classes: int = 3, noise: float = 0.2, *, seed: int = 0):
    """Interleaved 2-D spirals: class c's points lie on arm r ↦ r·(cos θ, sin θ),
    θ = 4r + 2πc/C, r ∈ [0, 1], with N(0, noise²) added to θ.

    Raises:
      ValueError, TypeError: ``n_per_class`` < 1, ``num_classes`` < 2, ``noise`` < 0,
        ``seed`` < 0, or not numbers (naming the argument).
    """
    n_per_class = check_integer("n_per_class", n_per_class, 1)
    num_classes = check_integer("num_classes", num_classes, 2)
    noise = check_real("noise", noise, 0.0)
    rng = np.random.default_rng(check_integer("seed", seed, 0))
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), num_classes)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    theta = 4.0 * r + 2.0 * np.pi * labels / num_classes + noise * rng.standard_normal(r.shape)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return x, labels.astype(np.int32)


def _examples_per_class(n_per_class, n, num_classes) -> int:
    """n_per_class, or n // num_classes when the total ``n`` is given (100 when neither is)."""
    if n is None:
        return 100 if n_per_class is None else n_per_class
    if n_per_class is not None:
        raise ValueError(
            f"n={n!r}: give either n (all examples) or n_per_class, not both (n_per_class={n_per_class!r})"
        )
    n = check_integer("n", n, 1)
    num_classes = check_integer("num_classes", num_classes, 2)
    if n < num_classes:
        raise ValueError(f"n={n!r}: must be >= num_classes={num_classes} (each class gets n // num_classes examples)")
    return n // num_classes


@DATASETS.register(name="spirals", main_argument="")
def spirals(
    n_per_class: int | None = None,
    num_classes: int = 3,
    noise: float = 0.2,
    *,
    n: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize: str = "feature",
    **legacy,
) -> DataSplits:
    """Classification: :func:`spirals_arrays`, split and standardised.

    Arguments:
      n_per_class: examples per class (>= 1); default 100 unless ``n`` is given.
      num_classes: C >= 2 spiral arms.
      noise: standard deviation (>= 0) of the noise added to the angle θ.
      n: all examples instead (``n // num_classes`` per class, ``n >= num_classes``);
        give ``n`` or ``n_per_class``, not both.
      seed, val_fraction, test_fraction, standardize: as for :func:`load_digits`.

    Raises:
      ValueError, TypeError: an argument is out of range / of the wrong type (naming it).
    """
    common = _split_arguments("spirals", seed, val_fraction, test_fraction, standardize, legacy)
    per_class = _examples_per_class(n_per_class, n, num_classes)
    x, y = spirals_arrays(per_class, num_classes, noise, seed=seed)
    return make_splits(x, y, **common, num_classes=num_classes)


def noisy_function_arrays(n: int = 256, noise: float = 0.1, *, seed: int = 0):
    """Regression: d = sin(3x) + x/2 + N(0, noise²), x ~ U[−1, 1]; y has shape (n, 1).

    Raises:
      ValueError, TypeError: ``n`` < 1, ``noise`` < 0, ``seed`` < 0, or not numbers (naming the argument).
    """
    n = check_integer("n", n, 1)
    noise = check_real("noise", noise, 0.0)
    rng = np.random.default_rng(check_integer("seed", seed, 0))
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
    standardize: str = "feature",
    **legacy,
) -> DataSplits:
    """Regression (``num_classes`` None, ``task == "regression"``): :func:`noisy_function_arrays`,
    split; inputs standardised.

    Arguments:
      n: examples (>= 1). noise: standard deviation (>= 0) of the noise on the targets.
      seed, val_fraction, test_fraction, standardize: as for :func:`load_digits`.

    Raises:
      ValueError, TypeError: an argument is out of range / of the wrong type (naming it).
    """
    common = _split_arguments("noisy_function", seed, val_fraction, test_fraction, standardize, legacy)
    x, y = noisy_function_arrays(n, noise, seed=seed)
    return make_splits(x, y, **common)


# --------------------------------------------------------------------------
# user files


def _check_file_arrays(source: str, x_name: str, x: np.ndarray, y_name: str, y: np.ndarray) -> None:
    """Structure of one (inputs, targets) pair read from a file: numeric, (N, ...) inputs, equal lengths."""
    for name, array in ((x_name, x), (y_name, y)):
        if array.dtype.kind not in "biuf":
            raise DataError(f"{source}: {name} has dtype {array.dtype}; {NUMERIC_DTYPES} arrays are accepted")
        if array.ndim == 0 or len(array) == 0:
            raise DataError(f"{source}: {name} has shape {array.shape}; at least one example is needed")
    if x.ndim < 2:
        raise DataError(f"{source}: {x_name} has shape {x.shape}; inputs must have shape (N, features...), e.g. (N, 1)")
    if len(x) != len(y):
        raise DataError(f"{source}: {x_name} has {len(x)} examples but {y_name} has {len(y)}; they must be equal")


def _check_same_example_shape(source: str, train_name: str, train, test_name: str, test) -> None:
    if train.shape[1:] != test.shape[1:]:
        raise DataError(
            f"{source}: examples of {test_name} have shape {test.shape[1:]}, those of {train_name} "
            f"{train.shape[1:]}; they must be equal"
        )


def _labels_num_classes(source: str, num_classes, *labels) -> int | None:
    """K for file data: ``num_classes`` when given, else max label + 1 for integer labels
    of shape (N,), else ``None`` (regression: float or multi-dimensional targets)."""
    if num_classes is not None:
        return check_integer("num_classes", num_classes, 2)
    labels = [np.asarray(a) for a in labels if a is not None]
    if not all(a.dtype.kind in "iu" and a.ndim == 1 for a in labels):
        return None
    count = max(int(a.max()) for a in labels) + 1
    if count == 1 and min(int(a.min()) for a in labels) == 0:
        raise DataError(
            f"{source}: every label is 0; a classification data set needs at least 2 classes "
            "(set num_classes to declare them)"
        )
    return max(count, 2)


def _image_shape(x: np.ndarray) -> tuple | None:
    return tuple(x.shape[1:]) if x.ndim in (3, 4) else None


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx_file(directory: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def _idx_images(path: str) -> np.ndarray:
    """Images of an IDX file; uint8 pixels scaled to [0, 1]."""
    x = load_idx(path)
    if x.dtype != np.uint8:
        return x
    pixels = x.astype(np.float32)
    pixels /= 255.0
    return pixels


def _idx_pair(directory: str, paths: dict, images: str, labels: str):
    x, y = _idx_images(paths[images]), load_idx(paths[labels])
    _check_file_arrays(directory, os.path.basename(paths[images]), x, os.path.basename(paths[labels]), y)
    return x, y


@DATASETS.register(name="idx", main_argument="")
def load_idx_directory(
    path: str,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize: str = "global",
    **legacy,
) -> DataSplits:
    """MNIST-style IDX files in the directory ``path``.

    Needs ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (each
    optionally ``.gz``); uses ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``
    as the test split when present, else splits one off the training files.
    Integer pixel values are scaled to [0, 1] before standardising.

    Arguments:
      path: the directory.
      num_classes: K; labels must lie in [0, K). Default: integer labels give
        K = max label + 1; float labels are regression targets.
      seed, val_fraction, test_fraction, standardize: as for :func:`load_digits`
        (``test_fraction`` is unused when the test files exist).

    Raises:
      DataFileNotFoundError: the directory or a required file does not exist.
      DataError: a file is corrupt (naming it), images and labels differ in
        number, or the labels/inputs fail the checks of :func:`make_splits`.
      ValueError, TypeError: an argument is out of range / of the wrong type (naming it).
    """
    common = _split_arguments("load_idx_directory", seed, val_fraction, test_fraction, standardize, legacy)
    directory = check_path("path", path)
    if num_classes is not None:
        check_integer("num_classes", num_classes, 2)
    if not os.path.isdir(directory):
        raise DataFileNotFoundError(f"IDX data directory {directory!r} does not exist")
    paths = {stem: _find_idx_file(directory, stem) for stem in IDX_STEMS}
    for stem in IDX_STEMS[:2]:
        if paths[stem] is None:
            raise DataFileNotFoundError(f"{directory!r} has no {stem}[.gz] file")
    x, y = _idx_pair(directory, paths, *IDX_STEMS[:2])
    test = None
    if paths[IDX_STEMS[2]] and paths[IDX_STEMS[3]]:
        test = Split(*_idx_pair(directory, paths, *IDX_STEMS[2:]))
        _check_same_example_shape(directory, IDX_STEMS[0], x, IDX_STEMS[2], test.x)
    return make_splits(
        x,
        y,
        **common,
        num_classes=_labels_num_classes(directory, num_classes, y, test.y if test else None),
        image_shape=_image_shape(x),
        test=test,
        source=directory,
    )


NPZ_LAYOUTS = "arrays 'x' and 'y', or 'x_train' and 'y_train' (optionally with 'x_test' and 'y_test')"


def _npz_arrays(path: str, arrays: dict):
    """(x, y, test Split or None, names of x and y) of a ``.npz`` file's arrays."""
    if "x" in arrays and "y" in arrays:
        _check_file_arrays(path, "'x'", arrays["x"], "'y'", arrays["y"])
        return arrays["x"], arrays["y"], None
    if not ("x_train" in arrays and "y_train" in arrays):
        raise DataError(f"{path}: expected {NPZ_LAYOUTS}; found {sorted(arrays) or 'no arrays'}")
    x, y = arrays["x_train"], arrays["y_train"]
    _check_file_arrays(path, "'x_train'", x, "'y_train'", y)
    if ("x_test" in arrays) != ("y_test" in arrays):
        present, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path}: has {present!r} but no {missing!r}; expected {NPZ_LAYOUTS}")
    if "x_test" not in arrays:
        return x, y, None
    _check_file_arrays(path, "'x_test'", arrays["x_test"], "'y_test'", arrays["y_test"])
    _check_same_example_shape(path, "'x_train'", x, "'x_test'", arrays["x_test"])
    return x, y, Split(arrays["x_test"], arrays["y_test"])


@DATASETS.register(name="npz", main_argument="")
def load_npz_file(
    path: str,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    standardize: str = "feature",
    **legacy,
) -> DataSplits:
    """A ``.npz`` file with arrays ``x``, ``y`` (split by ``seed``) or
    ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` (used as the
    test split; the validation split comes out of the training arrays).

    Arguments:
      path: the ``.npz`` file.
      num_classes: K; labels must lie in [0, K) (float labels must be whole
        numbers). Default: integer labels of shape (N,) give K = max label + 1;
        anything else is a regression target.
      seed, val_fraction, test_fraction, standardize: as for :func:`load_digits`.

    Raises:
      DataFileNotFoundError: ``path`` does not exist.
      DataError: naming the file: unreadable (see :func:`~functional_nn.data.load_npz`),
        arrays missing (naming those found and those required), non-numeric,
        of different lengths, or failing the checks of :func:`make_splits`.
      ValueError, TypeError: an argument is out of range / of the wrong type (naming it).
    """
    common = _split_arguments("load_npz_file", seed, val_fraction, test_fraction, standardize, legacy)
    path = check_path("path", path)
    if num_classes is not None:
        check_integer("num_classes", num_classes, 2)
    x, y, test = _npz_arrays(path, load_npz(path))
    return make_splits(
        x,
        y,
        **common,
        num_classes=_labels_num_classes(path, num_classes, y, test.y if test else None),
        image_shape=_image_shape(x),
        test=test,
        source=path,
    )
