"""``python -m functional_nn predict RUN_DIR --input FILE [--output FILE]``.

Reads raw inputs (``.npz`` with an array ``x``, ``.npy``, or ``.csv`` of one
example per row, an optional header line), applies the run's own
preprocessing (the standardisation statistics saved with it) and writes one
row per example: the class index and the class probabilities
(classification) or the model's outputs (regression), as ``.csv`` (columns
``class, p0 .. p<K-1>`` or ``y0 ..``), ``.npz`` (arrays ``class`` and
``probabilities``, or ``outputs``) or ``-`` (CSV on stdout). The default
output is ``<input without extension>.predictions.csv`` next to the input.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np

from functional_nn.data.files import load_npz
from functional_nn.experiment.load import load_run, Predictions
from functional_nn.experiment.schema import ConfigError
from functional_nn.train.checkpoint import atomic_write_bytes

INPUT_FORMATS = (".npz", ".npy", ".csv")
OUTPUT_FORMATS = (".csv", ".npz")


def read_inputs(path: str) -> np.ndarray:
    """The inputs stored in ``path`` (see the module docstring).

    Raises:
      FileNotFoundError: no such file.
      ConfigError: naming ``--input``: an unknown extension, a ``.npz`` without
        ``x``, a file that cannot be read as numbers.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in INPUT_FORMATS:
        raise ConfigError(f"--input {path!r}: unknown format {extension or '(none)'!r}; accepted: {', '.join(INPUT_FORMATS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input {path!r}: no such file")
    try:
        if extension == ".npz":
            arrays = load_npz(path)
            if "x" not in arrays:
                raise ConfigError(f"--input {path!r}: no array named 'x' (it has {', '.join(sorted(arrays)) or 'none'}); save with np.savez(path, x=inputs)")
            return arrays["x"]
        if extension == ".npy":
            return np.load(path, allow_pickle=False)
        return _read_csv(path)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"--input {path!r}: cannot read ({e})") from None


def _read_csv(path: str) -> np.ndarray:
    """Rows of comma-separated numbers; a first line that is not numbers is a header."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if lines and not _is_number(lines[0].split(",")[0]):
        lines = lines[1:]
    return np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", ndmin=2, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def default_output(input_path: str) -> str:
    return os.path.splitext(input_path)[0] + ".predictions.csv"


def predictions_csv(predictions: Predictions) -> str:
    """One row per example: ``class,p0..`` (classification) or ``y0..`` (regression)."""
    if predictions.classes is None:
        values = predictions.outputs.reshape(len(predictions.outputs), -1)
        header = [f"y{i}" for i in range(values.shape[1])]
        rows = [",".join(repr(float(v)) for v in row) for row in values]
    else:
        header = ["class"] + [f"p{i}" for i in range(predictions.probabilities.shape[-1])]
        rows = [
            ",".join([str(int(c))] + [f"{float(p):.6g}" for p in probs])
            for c, probs in zip(predictions.classes, predictions.probabilities)
        ]
    return "\n".join([",".join(header), *rows]) + "\n"


def write_predictions(path: str, predictions: Predictions) -> None:
    """``predictions`` to ``path`` (``.csv``, ``.npz``, or ``-`` for stdout)."""
    if path == "-":
        sys.stdout.write(predictions_csv(predictions))
        return
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        atomic_write_bytes(path, predictions_csv(predictions).encode())
        return
    if extension != ".npz":
        raise ConfigError(f"--output {path!r}: unknown format {extension or '(none)'!r}; accepted: {', '.join(OUTPUT_FORMATS)} or '-'")
    arrays = {"outputs": predictions.outputs}
    if predictions.classes is not None:
        arrays = {"class": predictions.classes, "probabilities": predictions.probabilities}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def predict_command(target: str, *, input_path: str, output: str | None) -> int:
    output = output or default_output(input_path)
    if output != "-" and os.path.splitext(output)[1].lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {output!r}: unknown format; accepted: {', '.join(OUTPUT_FORMATS)} or '-'")
    run = load_run(target)
    try:
        x = run.preprocessing.check_inputs(read_inputs(input_path), source=f"--input {input_path!r}")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    predictions = run.predict(x)
    write_predictions(output, predictions)
    if output != "-":
        print(json.dumps({"run": run.directory, "input": input_path, "output": output, "examples": len(predictions.outputs)}))
    return 0
