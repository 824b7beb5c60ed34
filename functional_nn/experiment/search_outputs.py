"""A grid search's run directory: the config, the results table (CSV,
markdown), the summary, every setting's per-epoch history, the plots and the
selected setting's parameters."""

from __future__ import annotations

import json
import os

from functional_nn.experiment import plots, search_report
from functional_nn.experiment.loading import dump_config
from functional_nn.experiment.schema import Config
from functional_nn.experiment.search import SearchResult
from functional_nn.train.checkpoint import atomic_write_bytes, save_pytrees

RESULTS_CSV = "results.csv"
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
    best_row = result.rows[result.best_index]
    return {
        "name": config.name,
        "selected_by": f"best {result.monitor} ({result.mode}) on the validation split",
        "settings": len(result.settings),
        "groups": len(result.groups),
        "best_setting": result.settings[result.best_index],
        "best_index": result.best_index,
        f"best_{result.monitor}": best_row[f"best_{result.monitor}"],
        "best_epoch": best_row["best_epoch"],
        **result.test_metrics,
        "wall_time_s": seconds,
    }


def markdown_report(result: SearchResult, config: Config) -> str:
    best = result.settings[result.best_index]
    lines = [
        f"# Grid search: {config.name}",
        "",
        f"{len(result.settings)} settings ({len(result.groups)} compiled group(s)); selection: best "
        f"{result.monitor} ({result.mode}) on the validation split; the selected setting alone is evaluated on test.",
        "",
        f"**Selected:** setting {result.best_index} ({setting_label(best)}), best {result.monitor} = "
        f"{search_report.format_value(result.rows[result.best_index][f'best_{result.monitor}'])} at epoch "
        f"{result.rows[result.best_index]['best_epoch']}; "
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


def write_outputs(result: SearchResult, config: Config, out_dir: str, seconds: float) -> None:
    """``runs/<name>/``: config, results table (CSV, markdown), summary, per-epoch
    history, plots and the selected setting's parameters."""
    os.makedirs(out_dir, exist_ok=True)
    write = lambda name, text: atomic_write_bytes(os.path.join(out_dir, name), text.encode())  # noqa: E731
    write("config.yaml", dump_config(config))
    write(RESULTS_CSV, search_report.csv_text(result.rows))
    write(RESULTS_MD, markdown_report(result, config))
    write(SUMMARY_FILE, json.dumps(summary(result, config, seconds), indent=2) + "\n")
    lines = [json.dumps({"setting": i, **r}) for i, history in enumerate(result.histories) for r in history]
    write(HISTORY_FILE, "\n".join(lines) + "\n")
    if plots.plotting_available():
        write_plots(result, config, out_dir)
    else:
        plots.note_plots_skipped()
    state = result.best_train_state
    save_pytrees(os.path.join(out_dir, BEST_FILE), {"params": state.params, "model_state": state.model_state}, {"setting": result.settings[result.best_index]})


def write_failed_outputs(error, config: Config, out_dir: str, seconds: float) -> None:
    """A search that selected nothing (``error``, a
    :class:`~functional_nn.experiment.search.NoFiniteSettingError`): the
    config, the results table, every setting's history and a summary with
    ``status: no_finite_setting`` and the message, so the failure can be read."""
    os.makedirs(out_dir, exist_ok=True)
    write = lambda name, text: atomic_write_bytes(os.path.join(out_dir, name), text.encode())  # noqa: E731
    write("config.yaml", dump_config(config))
    write(RESULTS_CSV, search_report.csv_text(error.rows))
    write(RESULTS_MD, f"# Grid search: {config.name}\n\n**Nothing selected:** {error}\n\n" + search_report.markdown_table(error.rows))
    summary = {"name": config.name, "status": "no_finite_setting", "message": str(error), "settings": len(error.rows), "wall_time_s": seconds}
    write(SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    lines = [json.dumps({"setting": i, **r}) for i, history in enumerate(error.histories or []) for r in history]
    write(HISTORY_FILE, "\n".join(lines) + "\n")
