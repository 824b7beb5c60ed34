"""Helpers of the digits experiments: best setting per group of a grid, curves, epochs-to-target."""

from __future__ import annotations

import math

import numpy as np


def best_index_where(result, predicate) -> int:
    """The setting with the best validation value among those ``predicate(setting)`` accepts."""
    metric = f"best_{result.monitor}"
    candidates = [i for i, s in enumerate(result.settings) if predicate(s)]
    worst = math.inf if result.mode == "min" else -math.inf
    values = [result.rows[i][metric] if np.isfinite(result.rows[i][metric]) else worst for i in candidates]
    pick = np.argmin(values) if result.mode == "min" else np.argmax(values)
    return candidates[int(pick)]


def curve(result, index: int, metric: str) -> tuple:
    history = result.histories[index]
    return [r["epoch"] for r in history], [r.get(metric, math.nan) for r in history]


def epochs_to_reach(result, index: int, metric: str, target: float, *, higher: bool = True) -> float:
    """First epoch whose ``metric`` reaches ``target`` (inf if never)."""
    for record in result.histories[index]:
        value = record.get(metric, math.nan)
        if (value >= target) if higher else (value <= target):
            return record["epoch"]
    return math.inf


def plot_curves(fig, series: list, metrics: list, *, title: str | None = None) -> None:
    """One panel per metric; ``series`` is a list of (label, result, index, style)."""
    for axes, metric in zip(fig.subplots(1, len(metrics)), metrics):
        for label, result, index, style in series:
            epochs, values = curve(result, index, metric)
            axes.plot(epochs, values, style, label=label, linewidth=1.2, markersize=3)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        if metric.endswith("loss"):
            axes.set_yscale("log")
        axes.legend(fontsize=7)
    if title:
        fig.suptitle(title)
