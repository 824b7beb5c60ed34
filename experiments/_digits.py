"""Helpers of the digits experiments: selection on seed means, learning curves with ±1 sd bands."""

from __future__ import annotations

import warnings

import numpy as np


def seed_means(values) -> np.ndarray:
    """(S,) mean over the seed axis of (S, N) ``values``; a setting with any non-finite seed is NaN."""
    values = np.asarray(values, np.float64)
    return np.where(np.isfinite(values).all(axis=1), values.mean(axis=1, where=np.isfinite(values)), np.nan)


def best_by_mean(values, candidates=None, *, mode: str = "min") -> int:
    """Index (among ``candidates``, default all) of the setting whose seed mean of (S, N) ``values`` is best.

    ``mode`` ``min`` or ``max``; settings with a non-finite seed (diverged, never reached) lose.
    """
    means = seed_means(values)
    candidates = list(range(len(means))) if candidates is None else list(candidates)
    worst = np.inf if mode == "min" else -np.inf
    scores = [means[i] if np.isfinite(means[i]) else worst for i in candidates]
    return candidates[int(np.argmin(scores) if mode == "min" else np.argmax(scores))]


def band(axes, samples, label: str, *, style: str = "-", color=None, x=None) -> None:
    """Mean over seeds of (N, E) ``samples`` against epochs 1..E (or ``x``), with a ±1 sd band (NaN ignored)."""
    samples = np.asarray(samples, np.float64)
    with warnings.catch_warnings():  # all-NaN epochs (every seed stopped) give NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(samples, axis=0)
        sd = np.nanstd(samples, axis=0, ddof=1) if len(samples) > 1 else np.zeros_like(mean)
    x = np.arange(1, samples.shape[-1] + 1) if x is None else np.asarray(x)
    line, = axes.plot(x, mean, style, label=label, color=color, linewidth=1.2, markersize=3)
    axes.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_band_curves(fig, series: list, metrics: list, *, title: str | None = None) -> None:
    """One panel per metric; ``series`` is a list of (label, {metric: (N, E) samples})."""
    for axes, metric in zip(fig.subplots(1, len(metrics)), metrics):
        for label, samples in series:
            band(axes, samples[metric], label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric + " (mean ± sd over seeds)")
        axes.grid(alpha=0.3)
        if metric.endswith("loss"):
            axes.set_yscale("log")
        axes.legend(fontsize=7)
    if title:
        fig.suptitle(title)

