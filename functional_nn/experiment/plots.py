"""Every figure a run or a search writes, as PNG files: a run's learning
curves, and a grid search's curve (1-D grid), heatmap (2-D grid) and
per-setting learning curves.

matplotlib's object-oriented API on an Agg canvas (no pyplot, no global
backend state), imported only when plotting. matplotlib is an optional
extra: callers check :func:`plotting_available` and otherwise print
:data:`PLOTS_SKIPPED` once and write everything else.
"""

from __future__ import annotations

import io
import sys

import numpy as np

from functional_nn.experiment.search_report import distinct_values, format_value


PLOTS_SKIPPED = (
    'plots skipped: matplotlib is not installed (pip install "functional_nn[experiments]", or pip install matplotlib)'
)


def plotting_available() -> bool:
    """Whether matplotlib can be imported (it is the ``experiments`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def note_plots_skipped() -> None:
    """Say on stderr, in one line, that plots were skipped and how to get them."""
    print(PLOTS_SKIPPED, file=sys.stderr)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_learning_curves(history: list, path: str, *, title: str | None = None) -> None:
    """Training and validation loss (left) and accuracy (right, when recorded) per epoch.

    """
    epochs = [r["epoch"] for r in history]
    panels = [name for name in ("loss", "accuracy") if any(f"train_{name}" in r for r in history)]
    figure = _figure(5 * len(panels), 3.8)
    for axes, metric in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for split, style in (("train", "-"), ("val", "--")):
            values = [r.get(f"{split}_{metric}") for r in history]
            if any(v is not None for v in values):
                axes.plot(epochs, values, style, marker="o", markersize=3, label=split)
        best = [r["epoch"] for r in history if r.get("is_best")]
        if best:
            axes.axvline(best[-1], color="gray", linewidth=0.8, linestyle=":", label=f"best (epoch {best[-1]})")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)


def learning_curves_png(history: list, title: str | None = None) -> bytes:
    """The learning-curve PNG (:func:`plot_learning_curves`), rendered in memory,
    so that callers write it atomically (a symlink at its path is replaced
    rather than written through)."""
    buffer = io.BytesIO()
    plot_learning_curves(history, buffer, title=title)
    return buffer.getvalue()


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _wants_log_scale(values) -> bool:
    """Positive numbers spanning at least a factor 10 (learning rates, λ)."""
    if not values or not all(_is_number(v) for v in values):
        return False
    low, high = min(values), max(values)
    return low > 0 and high / low >= 10


def plot_curve(rows: list, key: str, metric: str, path: str, *, title: str | None = None, chosen: int | None = None) -> None:
    """``metric`` (e.g. best ``val_loss``) against the values of ``key`` (1-D grid)."""
    values = distinct_values(rows, key)
    numeric = all(_is_number(v) for v in values)
    positions = values if numeric else list(range(len(values)))
    metric_values = [next(r[metric] for r in rows if r[key] == v) for v in values]
    figure = _figure(5.5, 3.8)
    axes = figure.subplots()
    axes.plot(positions, metric_values, marker="o")
    if chosen is not None:
        axes.plot([positions[values.index(rows[chosen][key])]], [rows[chosen][metric]], "r*", markersize=14, label="selected")
        axes.legend()
    if _wants_log_scale(values):
        axes.set_xscale("log")
    if not numeric:
        axes.set_xticks(positions, [str(v) for v in values])
    axes.set_xlabel(key)
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    figure.savefig(path, dpi=100)


def heatmap_matrix(rows: list, row_key: str, column_key: str, metric: str):
    """(row values, column values, matrix of ``metric``; NaN where no setting)."""
    row_values, column_values = distinct_values(rows, row_key), distinct_values(rows, column_key)
    matrix = np.full((len(row_values), len(column_values)), np.nan)
    for row in rows:
        matrix[row_values.index(row[row_key]), column_values.index(row[column_key])] = row[metric]
    return row_values, column_values, matrix


def plot_heatmap(rows: list, row_key: str, column_key: str, metric: str, path: str, *, title: str | None = None, chosen: int | None = None) -> None:
    """``metric`` over a 2-D grid: rows ``row_key``, columns ``column_key``; each
    cell annotated with its value, diverged settings (NaN) shown gray, the
    selected setting outlined."""
    row_values, column_values, matrix = heatmap_matrix(rows, row_key, column_key, metric)
    figure = _figure(1.2 + 1.1 * len(column_values), 1.2 + 0.6 * len(row_values))
    axes = figure.subplots()
    axes.set_facecolor("0.8")
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap="viridis", aspect="auto", norm=_color_norm(matrix))
    figure.colorbar(image, ax=axes, label=metric)
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, "diverged" if np.isnan(value) else f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    if chosen is not None:
        i, j = row_values.index(rows[chosen][row_key]), column_values.index(rows[chosen][column_key])
        axes.add_patch(_outline(i, j))
    axes.set_xticks(range(len(column_values)), [format_value(v) for v in column_values])
    axes.set_yticks(range(len(row_values)), [format_value(v) for v in row_values])
    axes.set_xlabel(column_key)
    axes.set_ylabel(row_key)
    if title:
        axes.set_title(title)
    figure.savefig(path, dpi=100)


def _color_norm(matrix: np.ndarray):
    """A logarithmic color scale when the finite values are positive and span more than 100x."""
    from matplotlib.colors import LogNorm

    finite = matrix[np.isfinite(matrix)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        return LogNorm(finite.min(), finite.max())
    return None


def _outline(i: int, j: int):
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)


def plot_setting_curves(histories: list, labels: list, metric: str, path: str, *, title: str | None = None) -> None:
    """A grid search's ``metric`` per epoch, one line per setting (the epochs it trained)."""
    figure = _figure(6.5, 4.2)
    axes = figure.subplots()
    for history, label in zip(histories, labels):
        epochs = [r["epoch"] for r in history]
        axes.plot(epochs, [r.get(metric, np.nan) for r in history], marker=".", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    if len(labels) <= 16:
        axes.legend(fontsize=7)
    if title:
        axes.set_title(title)
    figure.savefig(path, dpi=100)
