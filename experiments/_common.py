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
    from functional_nn.config import load_config

    return load_config(config_path(name), list(overrides) + (list(smoke_overrides) if smoke else []))


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


def figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
