"""Learning curves as a PNG (matplotlib imported only here, only when plotting)."""

from __future__ import annotations


def plot_learning_curves(history: list, path: str, *, title: str | None = None) -> None:
    """Training and validation loss (left) and accuracy (right, when recorded) per epoch.

    Uses matplotlib's object-oriented API with the Agg canvas, so no global
    backend or pyplot state is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    panels = [name for name in ("loss", "accuracy") if any(f"train_{name}" in r for r in history)]
    figure = Figure(figsize=(5 * len(panels), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
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
