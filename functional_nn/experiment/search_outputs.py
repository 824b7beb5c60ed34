"""A grid search's run directory: the config, the results table (CSV,
markdown), the summary, every setting's per-epoch history, the plots, the
selected setting's parameters, and ``best/``: the selected setting as a
complete run directory (config with the chosen values, training checkpoint,
metrics, summary, learning curves, preprocessing) that ``eval``, ``predict``,
``train --resume`` and ``load_run`` take like any run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import numpy as np

from functional_nn.experiment import plots, run_dir, search_report
from functional_nn.experiment.builders import build_early_stopping
from functional_nn.experiment.load import write_run_files
from functional_nn.experiment.run_dir import BEST_DIR, RESULTS_CSV
from functional_nn.experiment.loading import dump_config
from functional_nn.experiment.schema import Config
from functional_nn.experiment.search import SearchResult, setting_train_state
from functional_nn.train.checkpoint import atomic_write_bytes, save_pytrees, save_training_checkpoint, TrainingCheckpoint
from functional_nn.train.callbacks import write_metrics_lines
from functional_nn.train.early_stopping import EarlyStoppingState, host_copy

RESULTS_MD = "results.md"
SUMMARY_FILE = "summary.json"
HISTORY_FILE = "history.jsonl"
HEATMAP_FILE = "heatmap.png"
CURVE_FILE = "curve.png"
CURVES_FILE = "learning_curves.png"
BEST_FILE = "best_params.npz"


def varying_keys(result: SearchResult) -> list:
    """The grid keys that take more than one value."""
    return [k for k in result.keys if len(search_report.distinct_values(result.settings, k)) > 1]


def setting_label(setting: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={search_report.format_value(v)}" for k, v in setting.items())


def summary(result: SearchResult, config: Config, seconds: float) -> dict:
    """``summary.json``: the chosen setting, its validation value (mean and std
    over seeds when there are several), its best epoch (an int, the ``best/``
    run's, seed ``training.seed``; with seeds also ``best_epochs``, one per
    seed) and its test metrics (the ``best/`` run's; with seeds also their mean
    and std over seeds)."""
    best_row = result.rows[result.best_index]
    monitored = f"best_{result.monitor}"
    selected_by = f"best {result.monitor} ({result.mode}) on the validation split"
    spread = {}
    if result.seeds > 1:
        selected_by += f", mean over {result.seeds} training seeds"
        spread[f"{monitored}_std"] = best_row[f"{monitored}_std"]
        spread["best_epochs"] = best_row["best_epochs"]
        for name in result.seed_test_metrics[0]:
            values = np.array([m[name] for m in result.seed_test_metrics])
            spread.update({f"{name}_mean": float(values.mean()), f"{name}_std": float(values.std(ddof=1))})
    return {
        "name": config.name,
        "selected_by": selected_by,
        "settings": len(result.settings),
        "seeds": result.seeds,
        "groups": len(result.groups),
        "best_setting": result.settings[result.best_index],
        "best_index": result.best_index,
        monitored: best_row[monitored],
        "best_epoch": best_row["best_epoch"],
        **result.test_metrics,
        **spread,
        "best_run": BEST_DIR,
        "wall_time_s": seconds,
    }


def markdown_report(result: SearchResult, config: Config) -> str:
    best, best_row = result.settings[result.best_index], result.rows[result.best_index]
    monitored = f"best_{result.monitor}"
    value = search_report.format_value(best_row[monitored])
    epochs = search_report.format_value(best_row.get("best_epochs", best_row["best_epoch"]))  # one per seed
    seeds_note = ""
    if result.seeds > 1:
        value += " ± " + search_report.format_value(best_row[f"{monitored}_std"])
        seeds_note = f" Every setting trained with {result.seeds} seeds: mean ± sample std over seeds; selection on the mean."
    lines = [
        f"# Grid search: {config.name}",
        "",
        f"{len(result.settings)} settings ({len(result.groups)} compiled group(s)); selection: best "
        f"{result.monitor} ({result.mode}) on the validation split; the selected setting alone is evaluated on test."
        + seeds_note,
        "",
        f"**Selected:** setting {result.best_index} ({setting_label(best)}), best {result.monitor} = "
        f"{value} at epoch {epochs}; "
        + ", ".join(f"{k} = {search_report.format_value(v)}" for k, v in result.test_metrics.items()),
        "",
        "",
    ]
    rows = [{**r, "selected": "*" if i == result.best_index else ""} for i, r in enumerate(result.rows)]
    return "\n".join(lines) + search_report.markdown_table(rows)


def write_plots(result: SearchResult, config: Config, out_dir: str) -> list:
    """Heatmap (2-D grid) or curve (1-D grid) of the best validation value, and
    every setting's validation learning curve; returns the files written."""
    metric = f"best_{result.monitor}"
    varying, written = varying_keys(result), []
    if len(varying) == 2:
        plots.plot_heatmap(result.rows, varying[0], varying[1], metric, os.path.join(out_dir, HEATMAP_FILE), title=config.name, chosen=result.best_index)
        written.append(HEATMAP_FILE)
    elif len(varying) == 1:
        plots.plot_curve(result.rows, varying[0], metric, os.path.join(out_dir, CURVE_FILE), title=config.name, chosen=result.best_index)
        written.append(CURVE_FILE)
    labels = [setting_label({k: s[k] for k in varying} or s) for s in result.settings]
    plots.plot_setting_curves(result.histories, labels, result.monitor, os.path.join(out_dir, CURVES_FILE), title=config.name)
    written.append(CURVES_FILE)
    return written


def write_search_files(out_dir: str, config: Config, rows: list, markdown: str, summary_record: dict, histories) -> None:
    """The files every search writes, successful or not: ``config.yaml``, the
    results table (CSV, markdown), ``summary.json`` and every setting's
    per-epoch history; an earlier search's selection and plots are removed first."""
    os.makedirs(out_dir, exist_ok=True)
    remove_selected_outputs(out_dir)
    write = lambda name, text: atomic_write_bytes(os.path.join(out_dir, name), text.encode())  # noqa: E731
    write(run_dir.CONFIG_FILE, dump_config(config))
    write(RESULTS_CSV, search_report.csv_text(rows))
    write(RESULTS_MD, markdown)
    write(SUMMARY_FILE, json.dumps(summary_record, indent=2) + "\n")
    lines = [json.dumps({"setting": i, **r}) for i, history in enumerate(histories) for r in history]
    write(HISTORY_FILE, "\n".join(lines) + "\n")


def write_outputs(result: SearchResult, config: Config, out_dir: str, seconds: float) -> None:
    """``runs/<name>/``: config, results table (CSV, markdown), summary, per-epoch
    history, plots and the selected setting's parameters. An earlier search's
    selection and plots are removed first (a plot this search does not draw
    must not stay)."""
    write_search_files(out_dir, config, result.rows, markdown_report(result, config),
                       summary(result, config, seconds), result.histories)
    if plots.plotting_available():
        write_plots(result, config, out_dir)
    else:
        plots.note_plots_skipped()
    state = result.best_train_state
    save_pytrees(os.path.join(out_dir, BEST_FILE), {"params": state.params, "model_state": state.model_state}, {"setting": result.settings[result.best_index]})
    write_best_run(result, os.path.join(out_dir, BEST_DIR), seconds)


def best_run_config(result: SearchResult) -> Config:
    """The chosen setting's full config, named ``<search name>.best``: ``train
    runs/<search>/best/config.yaml`` without ``--out`` trains a copy into
    ``runs/<search name>.best/``, never into the search's directory (only
    ``--resume`` continues ``best/`` in place)."""
    return dataclasses.replace(result.best_config, name=f"{result.best_config.name}.best")


def best_checkpoint(result: SearchResult, config: Config) -> TrainingCheckpoint:
    """The chosen setting's training checkpoint, as ``fit`` would have written it
    at its last epoch: its kept weights, history and early-stopping state. The
    optimizer state is the one the setting ended the grid run with (a setting
    that stopped early went on stepping it), so ``train --resume`` continues
    from the chosen weights rather than bit-exactly."""
    index = result.best_index
    state = jax.device_get(setting_train_state(result, index))
    history = result.histories[index]
    best_epoch = max((r["epoch"] for r in history if r["is_best"]), default=0)
    best_value = next((r[result.monitor] for r in history if r["epoch"] == best_epoch), float("nan"))
    kept = build_early_stopping(config.training).restore_best and best_epoch > 0
    stopping = EarlyStoppingState(
        best_value=float(best_value),
        best_epoch=best_epoch,
        wait=len(history) - best_epoch,
        best_params=host_copy(state.params) if kept else None,
        best_model_state=host_copy(state.model_state) if kept else None,
    )
    return TrainingCheckpoint(state, len(history), history, stopping, run_dir.plain_config(config))


def write_best_run(result: SearchResult, directory: str, seconds: float) -> None:
    """``best/``: the chosen setting as a run directory (see the module docstring)."""
    config = best_run_config(result)
    write_run_files(directory, config, result.best_data)
    checkpoint = best_checkpoint(result, config)
    save_training_checkpoint(os.path.join(directory, run_dir.CHECKPOINT_FILE), checkpoint)
    write_metrics_lines(os.path.join(directory, run_dir.METRICS_FILE), checkpoint.history)
    if plots.plotting_available():  # write_outputs has said once when it is not
        png = plots.learning_curves_png(checkpoint.history, config.name)
        atomic_write_bytes(os.path.join(directory, run_dir.PLOT_FILE), png)
    run_summary = run_dir.run_summary(config, checkpoint.history, result.test_metrics, seconds)
    run_dir.write_json(os.path.join(directory, run_dir.SUMMARY_FILE), {**run_summary, "selected_by_search": True})


def remove_selected_outputs(out_dir: str) -> list:
    """Delete what an earlier search of ``out_dir`` selected: its chosen run
    ``best/``, ``best_params.npz`` and its plots (a symlink is removed, never
    followed). Returns the names removed."""
    removed = []
    for name in (BEST_DIR, BEST_FILE, HEATMAP_FILE, CURVE_FILE, CURVES_FILE):
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        else:
            continue
        removed.append(name)
    return removed


def write_failed_outputs(error, config: Config, out_dir: str, seconds: float) -> None:
    """A search that selected nothing (``error``, a
    :class:`~functional_nn.experiment.search.NoFiniteSettingError`): the
    config, the results table, every setting's history and a summary with
    ``status: no_finite_setting`` and the message, so the failure can be read.
    An earlier search's selection (``best/``, ``best_params.npz``, plots) is
    removed, so that ``eval`` and ``predict`` cannot use it."""
    markdown = f"# Grid search: {config.name}\n\n**Nothing selected:** {error}\n\n" + search_report.markdown_table(error.rows)
    failure = {"name": config.name, "status": "no_finite_setting", "message": str(error), "settings": len(error.rows), "wall_time_s": seconds}
    write_search_files(out_dir, config, error.rows, markdown, failure, error.histories or [])
