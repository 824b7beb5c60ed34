"""Run the six experiments and write ``results/summary.md``: one row per claim.

``python experiments/run_all.py [--smoke] [--out DIR]`` runs every script in
this process (one after the other, sharing JAX's compiled kernels), then reads
the ``<name>.verdicts.json`` each wrote and writes the summary table (claim,
verdict, effect size, seed spread, link to the results file) to
``<out>/summary.md``, with each experiment's wall time.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

EXPERIMENTS = ("exp1_surfaces", "exp2_optimizers_digits", "exp3_batchnorm", "exp4_dropout", "exp5_divergence", "exp6_regularization")


def summary_rows(out: str) -> list:
    """(number, link, claim, outcome, effect, spread) for every verdict the experiments wrote to ``out``."""
    rows = []
    for number, name in enumerate(EXPERIMENTS, start=1):
        with open(os.path.join(out, f"{name}.verdicts.json")) as f:
            for verdict in json.load(f):
                rows.append((number, name, verdict))
    return rows


def summary_table(rows: list, link_prefix: str = "") -> str:
    """The markdown table: #, claim, verdict, effect size Δ, seed spread sd(A) + sd(B), link."""
    lines = ["| # | claim | verdict | effect size Δ | seed spread sd(A)+sd(B) | results |", "|---|---|---|---|---|---|"]
    for number, name, v in rows:
        bold = f"**{v['outcome']}**" if v["outcome"] != _common.INCONCLUSIVE else v["outcome"]
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731
        lines.append(f"| {number} | {cell(v['claim'])} | {bold} | {cell(v['effect'])} | {cell(v['spread'])} | [{name}]({link_prefix}{name}.md) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    passed = (["--smoke"] if args.smoke else []) + ["--out", args.out]
    cache = _common.compile_cache_state()
    seconds, cpu_started = {}, time.process_time()
    for name in EXPERIMENTS:
        _common.log(f"== {name}")
        started = time.perf_counter()
        if importlib.import_module(name).main(passed) != 0:
            return 1
        seconds[name] = time.perf_counter() - started
    total, cpu = sum(seconds.values()), time.process_time() - cpu_started
    load = os.getloadavg()[1] if hasattr(os, "getloadavg") else float("nan")
    text = "# Summary of the experiments\n\n"
    text += (f"`python experiments/run_all.py`: all six in {total:.0f} s wall, {cpu:.0f} s of CPU time, on {_common.usable_cores()} CPU cores "
             f"as {len(jax.devices())} JAX devices, {cache} (5-minute load average at the end {load:.1f}; wall per experiment: "
             + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()) + "). "
             f"Every number is a mean over {len(_common.seeds(args.smoke))} seeds (experiment 1: random starting points).\n\n")
    if args.smoke:
        text += "**SMOKE RUN: tiny settings for the test suite; these numbers mean nothing.**\n\n"
    text += _common.RULE + "\n\n" + summary_table(summary_rows(args.out))
    _common.write_text(args.out, "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    _common.run_script(main)
