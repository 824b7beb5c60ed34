"""Shared pieces of the experiment scripts: command line, configs, result files.

Every experiment is ``python experiments/expN_*.py [--smoke] [--out DIR]``:
it writes ``expN_*.md`` (a table and a plainly stated verdict) and one or more
PNGs into ``experiments/results/`` (or ``--out``). ``--smoke`` runs a tiny
version (a few settings, one or two epochs) for the test suite; its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
CONFIGS = os.path.join(ROOT, "configs")


def parse_args(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite (numbers mean nothing)")
    parser.add_argument("--out", default=RESULTS, help="directory for the table and plots (default: experiments/results)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    return args


def config_path(name: str) -> str:
    return os.path.join(CONFIGS, name)


def load(name: str, overrides=(), *, smoke_overrides=(), smoke: bool = False):
    """``configs/<name>`` with ``overrides`` (and ``smoke_overrides`` in smoke mode)."""
    from functional_nn.experiment import load_config

    return load_config(config_path(name), list(overrides) + (list(smoke_overrides) if smoke else []))


def tiny_overrides(hidden_layers, search: dict) -> list:
    """Overrides of a smoke run: 2 epochs, width 8 for the layers at ``hidden_layers``, the small ``search`` grid."""
    widths = [(f"model.layers.{index}.out_dim", 8) for index in hidden_layers]
    return [("training.epochs", 2)] + widths + [("search", search)]


def start_experiment(doc: str, config_name: str, smoke_overrides, argv=None):
    """The command line (described by ``doc``'s first line), the config (smoke overrides in smoke mode) and its data: (args, config, data)."""
    from functional_nn.experiment import build_data

    args = parse_args(doc.splitlines()[0], argv)
    config = load(config_name, smoke_overrides=smoke_overrides, smoke=args.smoke)
    return args, config, build_data(config.data)


def verdict(held: bool, claim: str, evidence: str) -> str:
    """One plain line: whether the claim held on this data, and the numbers."""
    word = "HELD" if held else "DID NOT HOLD"
    return f"**Verdict: the claim {word}.** {claim} — {evidence}"


def header(title: str, script: str, config: str | None, seconds: float, smoke: bool) -> str:
    lines = [f"# {title}", ""]
    run = f"`python experiments/{script}`" + (f" (config `configs/{config}`)" if config else "")
    lines.append(f"Reproduce: {run}. Wall time {seconds:.0f} s on {os.cpu_count()} CPU cores.")
    if smoke:
        lines.append("")
        lines.append("**SMOKE RUN: tiny settings for the test suite; these numbers mean nothing.**")
    return "\n".join(lines) + "\n\n"


def write_text(out: str, name: str, text: str) -> str:
    path = os.path.join(out, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_report(out: str, name: str, text: str, verdicts, *, spacing: str = "\n\n") -> str:
    """``text`` followed by one verdict line per (held, claim, evidence), each ended by ``spacing``,
    written to ``<name>.md`` in ``out``; the verdict lines are printed too."""
    for held, claim, evidence in verdicts:
        line = verdict(held, claim, evidence)
        text += line + spacing
        print(line)
    return write_text(out, f"{name}.md", text)


def figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_row(count: int):
    """A 15 × 4.5 inch figure with ``count`` panels side by side: (figure, panels)."""
    fig = figure(15, 4.5)
    return fig, fig.subplots(1, count)


def finish_panels(fig, panels, title: str, path: str, *, legends=None, legend_fontsize: float = 8) -> None:
    """Grid on every panel, a legend on each of ``legends`` (default: every panel), the title; saved at 90 dpi."""
    for axes in panels:
        axes.grid(alpha=0.3)
    for axes in panels if legends is None else legends:
        axes.legend(fontsize=legend_fontsize)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
