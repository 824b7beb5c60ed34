"""Shared pieces of the experiment scripts: command line, configs, result files.

Every experiment is ``python experiments/expN_*.py [--smoke] [--out DIR]``:
it writes ``expN_*.md`` (a table and a plainly stated verdict) and one or more
PNGs into ``experiments/results/`` (or ``--out``). ``--smoke`` runs a tiny
version (a few settings, one or two epochs) for the test suite; its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NamedTuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
CONFIGS = os.path.join(ROOT, "configs")
DPI = 80


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which respects container limits)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_cpu_cores_as_devices() -> None:
    """One JAX CPU device per usable core, for a script run from the command line.

    The experiments shard each grid's settings × seeds axis over the devices
    (``devices="all"`` in :func:`_seeds._run_group`): XLA:CPU runs a batched
    matmul (every column's own weights) on about one core, so two devices on
    two cores train a grid epoch up to twice as fast (``experiments/README.md``
    gives the measurement). A device count the user set (``JAX_NUM_CPU_DEVICES``
    or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``) is kept.
    Call it before JAX computes anything (JAX fixes the device count when its
    backend starts). The device count changes float rounding, so the committed
    results reproduce exactly with the count ``results/summary.md`` gives. On
    GPU/TPU it only affects the unused CPU backend.
    """
    import jax

    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", usable_cores())
    except (AttributeError, KeyError, ValueError):  # a JAX without the option: the XLA flag, read when the backend starts
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={usable_cores()}".strip()


def use_compile_cache() -> None:
    """JAX's persistent compilation cache, the CLI's (same folder, same switch: ``FUNCTIONAL_NN_COMPILE_CACHE=0``
    turns it off): programs that recur within a run (the network's initialisation, the same in every group
    of experiment 2) compile once even in a cold run, and a second run loads every program from disk."""
    from functional_nn.experiment.compile_cache import compile_cache_wanted, enable_compile_cache

    if compile_cache_wanted():
        try:
            enable_compile_cache()
        except OSError as e:
            log(f"note: {e}; running without the compile cache")


def compile_cache_state() -> str:
    """Where the compile cache is and how many programs it held, for the summary (call before running)."""
    import jax

    folder = jax.config.jax_compilation_cache_dir
    if not folder:
        return "compile cache off"
    held = len(os.listdir(folder)) if os.path.isdir(folder) else 0
    return f"compile cache {'cold' if held == 0 else 'warm'} ({held} programs in it at the start)"


def run_script(main) -> None:
    """``sys.exit(main())`` for ``python experiments/<script>.py``: every CPU core a device, the compile cache on."""
    use_cpu_cores_as_devices()
    use_compile_cache()
    sys.exit(main())


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


# --------------------------------------------------------------------------
# seeds, effect sizes and verdicts

SEEDS = (0, 1, 2, 3, 4)
SMOKE_SEEDS = (0, 1)
HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive at this noise level"
RULE = ("Verdict rule (every claim): with Δ the difference of the seed means in the claimed direction and "
        "sd the standard deviation over seeds, the claim **held** if Δ > sd(A) + sd(B), **did not hold** if "
        "Δ < −(sd(A) + sd(B)), and is **inconclusive at this noise level** otherwise.")


def seeds(smoke: bool) -> list:
    """The training seeds of a run: 5 (2 in a smoke run)."""
    return list(SMOKE_SEEDS if smoke else SEEDS)


def mean_sd(values) -> tuple:
    """(mean, sample standard deviation) of ``values`` (sd 0 for one value)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def pm(values, digits: int = 3) -> str:
    """``values`` as 'mean ± sd'."""
    mean, sd = mean_sd(values)
    if abs(mean) >= 1e5:
        return f"{mean:.{digits}g} ± {sd:.{digits}g}"
    return f"{mean:.0f} ± {sd:.0f}" if abs(mean) >= 100 else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def censored(epochs, limit: int) -> np.ndarray:
    """Epochs to a target with 'never' (inf) counted as ``limit + 1``, so that means and sds exist."""
    epochs = np.asarray(epochs, np.float64)
    return np.where(np.isfinite(epochs), epochs, limit + 1.0)


class Verdict(NamedTuple):
    """A claim's outcome (:data:`HELD`, :data:`NOT_HELD` or :data:`INCONCLUSIVE`), its effect size Δ
    and the seed spread sd(A) + sd(B) it was judged against (both as text), and the numbers behind it."""

    claim: str
    outcome: str
    effect: str
    spread: str
    evidence: str


def outcome(effect: float, spread: float) -> str:
    """The rule (:data:`RULE`): held if Δ > spread, did not hold if Δ < −spread, else inconclusive."""
    if effect > spread:
        return HELD
    return NOT_HELD if effect < -spread else INCONCLUSIVE


def compare(claim: str, a, b, *, larger: bool, what: str, labels=("A", "B"), digits: int = 3) -> Verdict:
    """The claim 'A is larger (``larger``) / smaller than B' judged on seed samples ``a`` and ``b``.

    Δ = mean(a) − mean(b) (``larger``) or mean(b) − mean(a), spread = sd(a) + sd(b).
    """
    (mean_a, sd_a), (mean_b, sd_b) = mean_sd(a), mean_sd(b)
    effect = (mean_a - mean_b) if larger else (mean_b - mean_a)
    spread = sd_a + sd_b
    evidence = f"{what}: {labels[0]} {pm(a, digits)}, {labels[1]} {pm(b, digits)}; Δ = {effect:+.{digits}g} vs sd(A) + sd(B) = {spread:.{digits}g}"
    return Verdict(claim, outcome(effect, spread), f"Δ = {effect:+.{digits}g}", f"{spread:.{digits}g}", evidence)


def combine(claim: str, parts: list) -> Verdict:
    """A claim made of several comparisons: held if all held, did not hold if any did not, else inconclusive."""
    outcomes = [p.outcome for p in parts]
    result = HELD if all(o == HELD for o in outcomes) else NOT_HELD if NOT_HELD in outcomes else INCONCLUSIVE
    return Verdict(claim, result, "; ".join(f"{p.claim}: {p.effect}" for p in parts), "; ".join(f"{p.claim}: {p.spread}" for p in parts),
                   "; ".join(f"{p.evidence} ({p.outcome})" for p in parts))


def verdict_line(v: Verdict) -> str:
    """One plain line: the claim, its outcome, the effect against the spread and the numbers."""
    return f"**Verdict: {v.outcome.upper()}.** {v.claim} — {v.evidence}"


def header(title: str, script: str, config, seconds: float, smoke: bool, seeds=SEEDS, *, seed_note: str = "") -> str:
    """The results file's title, how to reproduce it (``config``: a name, a list of names or None), the seeds
    (``seed_note`` says what a seed is where it is not a training seed) and the rule."""
    import jax

    configs = [config] if isinstance(config, str) else list(config or [])
    run = f"`python experiments/{script}`" + (" (config " + ", ".join(f"`configs/{c}`" for c in configs) + ")" if configs else "")
    lines = [f"# {title}", ""]
    lines.append(f"Reproduce: {run}. Wall time {seconds:.0f} s on {usable_cores()} CPU cores as {len(jax.devices())} JAX devices "
                 "(the device count changes float rounding, not the settings).")
    lines.append("")
    lines.append(f"**{len(seeds)} seeds** ({', '.join(map(str, seeds))}{seed_note}), all in the same compiled program as the settings; "
                 "every number is mean ± standard deviation over the seeds, and curves are drawn with ±1 sd bands.")
    lines.append("")
    lines.append(RULE)
    if smoke:
        lines.append("")
        lines.append("**SMOKE RUN: tiny settings for the test suite; these numbers mean nothing.**")
    return "\n".join(lines) + "\n\n"


def write_text(out: str, name: str, text: str) -> str:
    path = os.path.join(out, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_report(out: str, name: str, text: str, verdicts) -> str:
    """``text`` followed by one line per :class:`Verdict`, written to ``<name>.md`` in ``out``
    (printed too); the verdicts also go to ``<name>.verdicts.json`` for ``run_all.py``'s summary."""
    for v in verdicts:
        text += verdict_line(v) + "\n\n"
        print(verdict_line(v))
    write_text(out, f"{name}.verdicts.json", json.dumps([v._asdict() for v in verdicts], ensure_ascii=False, indent=1))
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
    """Grid on every panel, a legend on each of ``legends`` (default: every panel), the title; saved at DPI."""
    for axes in panels:
        axes.grid(alpha=0.3)
    for axes in panels if legends is None else legends:
        axes.legend(fontsize=legend_fontsize)
    fig.suptitle(title)
    fig.savefig(path, dpi=DPI)


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
