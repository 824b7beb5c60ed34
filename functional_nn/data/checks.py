"""Load-time checks of data: once, on the host, before anything is standardised.

Every problem a user's data can have is a :class:`DataError` (a ``ValueError``)
whose message names the file or split, the offending value, how many examples
are affected and the first of them, and what is accepted, e.g.::

    train split: 3 of 1257 labels are outside [0, 10) (first: label -1 at index 4 of the split)

Classification targets are integer labels y ∈ {0, …, K−1} of shape (N,);
regression targets are finite floats of shape (N, ...). Inputs must be finite:
one NaN or ±inf pixel would make the whole standardised column NaN.

The arguments of the data set constructors are checked here too (``n >= 1``,
``num_classes >= 2``, ``noise >= 0``, ...): the config layer calls them through
``data.DATASETS`` and reports their ``ValueError`` under the YAML key.

Messages stay short: values are shown one at a time, never whole arrays.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "DataError",
    "DataFileNotFoundError",
    "check_inputs",
    "check_labels",
    "check_regression_targets",
    "check_split",
    "check_splits",
    "check_targets",
]

SPLIT_NAMES = ("train", "val", "test")
NUMERIC_DTYPES = "numeric (bool, integer or float)"


class DataError(ValueError):
    """Data that cannot be used: the message names the file/split/argument, the value and what is accepted."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or directory that does not exist (both a ``DataError`` and a ``FileNotFoundError``)."""


# --------------------------------------------------------------------------
# arguments of the constructors


def check_integer(name: str, value, minimum: int) -> int:
    """``value`` as an ``int`` ≥ ``minimum``.

    Raises:
      TypeError: ``value`` is not an integer (``bool`` and ``2.5`` are not).
      ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r}: must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return int(value)


def check_real(name: str, value, minimum: float = -math.inf, maximum: float = math.inf,
               *, maximum_inclusive: bool = True) -> float:
    """``value`` as a finite ``float`` in [minimum, maximum] (or [minimum, maximum)).

    Raises:
      TypeError: ``value`` is not a real number.
      ValueError: ``value`` is NaN, infinite or outside the interval.
    """
    closing = "]" if maximum_inclusive and math.isfinite(maximum) else ")"
    accepted = f"a number in [{minimum:g}, {maximum:g}{closing}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r}: must be {accepted}")
    above_max = value > maximum if maximum_inclusive else value >= maximum
    if not math.isfinite(value) or value < minimum or above_max:
        raise ValueError(f"{name}={value!r}: must be {accepted}")
    return float(value)


def check_fractions(val_fraction, test_fraction) -> tuple[float, float]:
    """Both fractions in [0, 1) and their sum < 1 (something must be left to train on)."""
    val_fraction = check_real("val_fraction", val_fraction, 0.0, 1.0, maximum_inclusive=False)
    test_fraction = check_real("test_fraction", test_fraction, 0.0, 1.0, maximum_inclusive=False)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction!r} must be < 1 "
            "(something must be left to train on)"
        )
    return val_fraction, test_fraction


def check_path(name: str, path) -> str:
    """``path`` as a ``str`` (a ``str`` or ``os.PathLike``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}={path!r}: must be a path (a string)")
    return os.fspath(path)


# --------------------------------------------------------------------------
# arrays


def _where(position: int, rows) -> str:
    """``index 4`` (and ``(row 55 of the source arrays)`` when known)."""
    text = f"index {position}"
    if rows is not None:
        text += f" (row {int(rows[position])} of the source arrays)"
    return text


def finite_rows(array: np.ndarray) -> np.ndarray:
    """For each example (row along axis 0), whether all its values are finite."""
    return np.isfinite(array).all(axis=tuple(range(1, array.ndim)))


def _check_numeric(name: str, array: np.ndarray, what: str) -> None:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name}: {what} have dtype {array.dtype}; {NUMERIC_DTYPES} arrays are accepted")


def check_inputs(name: str, x, *, rows=None) -> None:
    """Inputs of one split: numeric, shape (N, features...), no NaN or ±inf.

    Arguments:
      name: what the message calls the arrays (``"train split"``, ``"x_test of data.npz"``).
      x: the inputs, shape (N, ...).
      rows: optionally, for each example its row in the source arrays (named in the message).

    Raises:
      DataError: naming ``name``, how many examples are bad and the first one.
    """
    x = np.asarray(x)
    _check_numeric(name, x, "inputs")
    if x.ndim < 2:
        raise DataError(
            f"{name}: inputs have shape {x.shape}; accepted: (N, features...) — "
            "one feature per example is shape (N, 1)"
        )
    if x.dtype.kind != "f":
        return
    bad = ~finite_rows(x)
    count = int(bad.sum())
    if count:
        first = int(np.argmax(bad))
        raise DataError(
            f"{name}: {count} of {len(x)} examples have NaN or inf inputs "
            f"(first: {_where(first, rows)}); inputs must be finite"
        )


def check_labels(name: str, y, num_classes: int, *, rows=None) -> np.ndarray:
    """Class labels of one split: shape (N,), integers in [0, K); returned as int32.

    Float labels are accepted when every one is an integer value (``2.0``);
    NaN, ±inf and fractional labels are errors.

    Arguments:
      name: what the message calls the labels' split.
      y: the labels.
      num_classes: K.
      rows: optionally, for each example its row in the source arrays.

    Returns:
      the labels as int32 (no copy when they already are).

    Raises:
      DataError: naming ``name``, how many labels are bad, the first one and the accepted range.
    """
    y = np.asarray(y)
    _check_numeric(name, y, "labels")
    if y.ndim != 1:
        raise DataError(f"{name}: labels have shape {y.shape}; class labels must have shape (N,)")
    if y.dtype.kind == "f":
        not_integer = ~np.isfinite(y) | (y != np.round(y))
        count = int(not_integer.sum())
        if count:
            first = int(np.argmax(not_integer))
            raise DataError(
                f"{name}: {count} of {len(y)} labels are not integers "
                f"(first: label {y[first].item()!r} at {_where(first, rows)}); "
                f"class labels must be integers in [0, {num_classes})"
            )
    outside = (y < 0) | (y >= num_classes)
    count = int(outside.sum())
    if count:
        first = int(np.argmax(outside))
        value = y[first].item()
        raise DataError(
            f"{name}: {count} of {len(y)} labels are outside [0, {num_classes}) "
            f"(first: label {value!r} at {_where(first, rows)})"
        )
    return y.astype(np.int32, copy=False)


def check_regression_targets(name: str, y, *, rows=None) -> np.ndarray:
    """Regression targets of one split: numeric and finite; returned as float32."""
    y = np.asarray(y)
    _check_numeric(name, y, "targets")
    if y.ndim < 1:
        raise DataError(f"{name}: targets have shape {y.shape}; accepted: (N, ...)")
    y = y.astype(np.float32, copy=False)
    bad = ~finite_rows(y)
    count = int(bad.sum())
    if count:
        first = int(np.argmax(bad))
        raise DataError(
            f"{name}: {count} of {len(y)} targets are NaN or inf "
            f"(first: {_where(first, rows)}); targets must be finite"
        )
    return y


def check_split(name: str, split, num_classes: int | None, *, rows=None):
    """Check one :class:`~functional_nn.data.Split`; returns it with labels as int32
    (classification, ``num_classes`` = K) or targets as float32 (regression, ``None``).

    Raises:
      DataError: lengths of x and y differ, or :func:`check_inputs` /
        :func:`check_labels` / :func:`check_regression_targets` fail.
    """
    x, y = np.asarray(split.x), np.asarray(split.y)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise DataError(f"{name}: x and y have different lengths: x {x.shape}, y {y.shape}")
    check_inputs(name, x, rows=rows)
    if num_classes is None:
        y = check_regression_targets(name, y, rows=rows)
    else:
        y = check_labels(name, y, num_classes, rows=rows)
    return type(split)(x, y)


def check_splits(splits):
    """Check every split of a :class:`~functional_nn.data.DataSplits` (see :func:`check_split`).

    Every loader of this package runs these checks (on the raw inputs, before
    standardising); call this on a ``DataSplits`` built by hand.

    Returns:
      ``splits``, with labels as int32 / regression targets as float32.

    Raises:
      DataError: naming the split (``train split: ...``).
    """
    if splits.num_classes is not None:
        check_integer("num_classes", splits.num_classes, 2)
    if len(splits.train.x) == 0:
        raise DataError("train split: has no examples; at least one is needed to train")
    checked = {
        name: check_split(f"{name} split", getattr(splits, name), splits.num_classes) for name in SPLIT_NAMES
    }
    return splits._replace(**checked)


def check_targets(splits, *, classification: bool, num_outputs: int | None = None) -> None:
    """Whether a model with ``num_outputs`` outputs and a classification (or
    regression) loss can be trained on ``splits``; the config layer calls this
    and reports the error under ``loss.name`` / the model.

    Classification needs integer labels (``splits.num_classes`` not None) and
    every label < ``num_outputs`` (the labels index the model's outputs);
    regression needs float targets whose per-example shape is (num_outputs,).

    Raises:
      DataError: the data set is a regression set (naming the targets' dtype and
        shape), a label is ≥ ``num_outputs`` (naming the split, how many and the
        first), or the targets' shape differs from the outputs.
    """
    y = np.asarray(splits.train.y)
    if classification:
        if splits.num_classes is None:
            raise DataError(
                f"the data set has regression targets ({y.dtype} of shape {y.shape}); a classification "
                "loss needs integer class labels of shape (N,)"
            )
        if num_outputs is not None and num_outputs < splits.num_classes:
            for name in SPLIT_NAMES:
                try:
                    check_labels(f"{name} split", getattr(splits, name).y, num_outputs)
                except DataError as e:
                    raise DataError(
                        f"the model has {num_outputs} outputs but the data set has {splits.num_classes} "
                        f"classes: {e}"
                    ) from None
    elif num_outputs is not None and splits.num_classes is None and y.shape[1:] != (num_outputs,):
        raise DataError(
            f"the model has {num_outputs} outputs but the targets have shape {y.shape}; "
            f"regression targets must have shape (N, {num_outputs})"
        )
