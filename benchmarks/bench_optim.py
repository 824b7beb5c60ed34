"""Per-step time of our optimizers against optax's, side by side.

For each optimizer and parameter tree, both sides run the same jitted step

    params, state = step(params, state, grads)   # update + apply_updates

with ``params`` and ``state`` donated (without donation every call
page-faults fresh output buffers and runs at a fraction of the bandwidth).
Time is *pipelined*: calls back to back for about ``--seconds``, one wait at
the end, divided by the number of calls. Each round times the donated copy,
ours and optax's one after the other (rotating who goes first); the table
gives median times and the median of the per-round ratios ours/optax. The effective bandwidth counts the bytes each
rule must move per parameter (adam: read w, g, m, v and write w, m, v = 28 B)
and is compared with a donated ``x + 1`` over the same tree (8 B/param),
measured in the same run.

    python benchmarks/bench_optim.py            # full table (about a minute)
    python benchmarks/bench_optim.py --quick    # smaller trees, fewer rounds
    python benchmarks/bench_optim.py --control  # optax vs optax: the noise floor
    python benchmarks/bench_optim.py --flat     # only the flat-buffer table (layers.flat_params)

The flat-buffer table times Adam on the same trees after
``layers.ravel_by_dtype`` (what ``layers.flat_params(model)`` gives an
optimizer: one leaf per dtype), against optax on the per-leaf tree, in the
same rounds; gradients are given flat too (in training they come out of the
backward pass already concatenated).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from functional_nn import optim
from functional_nn.layers import ravel_by_dtype

# Bytes that must move per float32 parameter: (reads + writes) x 4 B.
BYTES_PER_PARAM = {"sgd": 12, "momentum": 20, "rmsprop": 20, "adam": 28, "adamw": 28}

OPTIMIZERS: dict[str, tuple[Callable, Callable]] = {
    "sgd": (lambda: optim.sgd(1e-3), lambda: optax.sgd(1e-3)),
    "momentum": (lambda: optim.momentum(1e-3, 0.9), lambda: optax.sgd(1e-3, momentum=0.9)),
    "rmsprop": (lambda: optim.rmsprop(1e-3), lambda: optax.rmsprop(1e-3)),
    "adam": (lambda: optim.adam(1e-3), lambda: optax.adam(1e-3)),
    "adamw": (lambda: optim.adamw(1e-3), lambda: optax.adamw(1e-3)),
}


def make_tree(total: int, leaves: int, seed: int = 0) -> dict:
    """A dict of ``leaves`` float32 vectors holding ``total`` parameters in all."""
    sizes = [total // leaves] * leaves
    sizes[-1] += total - sum(sizes)
    keys = jax.random.split(jax.random.PRNGKey(seed), leaves)
    return {f"w{i:03d}": jax.random.normal(k, (n,), jnp.float32) for i, (k, n) in enumerate(zip(keys, sizes))}


def make_step(opt: optax.GradientTransformation):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def compiled_ops(step, *args) -> collections.Counter:
    """The (shape, opcode) of every instruction XLA compiled, names ignored."""
    text = step.lower(*args).compile().as_text()
    return collections.Counter(re.findall(r"^\s*(?:ROOT )?%\S+ = (\S+) (\w+)\(", text, re.M))


class Runner:
    """A compiled step with its own donated params and state."""

    def __init__(self, opt, params, grads):
        self.step = make_step(opt)
        self.params = jax.tree.map(jnp.copy, params)
        self.state = opt.init(self.params)
        self.grads = grads
        self.ops = compiled_ops(self.step, self.params, self.state, self.grads)
        self.run(2)  # compile and warm up

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        params, state = self.params, self.state
        for _ in range(steps):
            params, state = self.step(params, state, self.grads)
        jax.block_until_ready((params, state))
        self.params, self.state = params, state
        return (time.perf_counter() - start) / steps


class CopyRunner(Runner):
    """A donated ``x + 1`` over the tree: 8 B/param, the bandwidth reference."""

    def __init__(self, params):
        self.step = jax.jit(lambda p: jax.tree.map(lambda x: x + 1.0, p), donate_argnums=0)
        self.params = jax.tree.map(jnp.copy, params)
        self.run(2)

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        params = self.params
        for _ in range(steps):
            params = self.step(params)
        jax.block_until_ready(params)
        self.params = params
        return (time.perf_counter() - start) / steps


def steps_for(runner: Runner, target_seconds: float) -> int:
    """Enough pipelined steps for one timing to last about ``target_seconds``."""
    return max(5, int(target_seconds / runner.run(5)))


def timed_rounds(runners: list[Runner], rounds: int, target_seconds: float) -> list[list[float]]:
    """Per-step times of each runner in every round; who goes first rotates,
    so the runners of one round see the same machine load."""
    steps = [steps_for(runner, target_seconds) for runner in runners]
    times: list[list[float]] = [[] for _ in runners]
    for r in range(rounds):
        order = list(range(len(runners)))
        order = order[r % len(order):] + order[: r % len(order)]
        for i in order:
            times[i].append(runners[i].run(steps[i]))
    return times


def benchmark_tree(total: int, leaves: int, names: list[str], rounds: int, target_seconds: float,
                   control: bool = False) -> list[dict]:
    params = make_tree(total, leaves)
    grads = make_tree(total, leaves, seed=1)
    rows = []
    for name in names:
        ours_factory, optax_factory = OPTIMIZERS[name]
        if control:  # A/A: optax against itself shows the timing noise floor
            ours_factory = optax_factory
        runners = [CopyRunner(params), Runner(ours_factory(), params, grads), Runner(optax_factory(), params, grads)]
        copy_times, ours_times, optax_times = timed_rounds(runners, rounds, target_seconds)
        copy_time, ours_time, optax_time = (statistics.median(t) for t in (copy_times, ours_times, optax_times))
        # The ratio of each round's back-to-back pair, then the median: robust to load changes.
        ratio = statistics.median(o / r for o, r in zip(ours_times, optax_times))
        bandwidth = BYTES_PER_PARAM[name] * total / ours_time
        copy_bandwidth = 8 * total / copy_time
        rows.append(dict(
            optimizer=name, params=total, leaves=leaves, optax_ms=optax_time * 1e3,
            ours_ms=ours_time * 1e3, ratio=ratio,
            bandwidth=bandwidth / 1e9, copy_bandwidth=copy_bandwidth / 1e9,
            fraction=bandwidth / copy_bandwidth, same_program=runners[1].ops == runners[2].ops))
        del runners
    return rows


def benchmark_flat(total: int, leaves: int, rounds: int, target_seconds: float) -> dict:
    """Adam per step: optax per leaf, ours per leaf, ours on one flat buffer, optax on it; same rounds."""
    params, grads = make_tree(total, leaves), make_tree(total, leaves, seed=1)
    flat_params_, flat_grads = ravel_by_dtype(params), ravel_by_dtype(grads)
    runners = [
        Runner(optax.adam(1e-3), params, grads),
        Runner(optim.adam(1e-3), params, grads),
        Runner(optim.adam(1e-3), flat_params_, flat_grads),
        Runner(optax.adam(1e-3), flat_params_, flat_grads),
    ]
    times = timed_rounds(runners, rounds, target_seconds)
    optax_times = times[0]
    row = dict(params=total, leaves=leaves)
    for name, t in zip(("optax", "ours", "ours_flat", "optax_flat"), times):
        row[name + "_ms"] = statistics.median(t) * 1e3
        row[name + "_ratio"] = statistics.median(a / b for a, b in zip(t, optax_times))
    row["flat_gbs"] = 28 * total / (row["ours_flat_ms"] * 1e-3) / 1e9
    return row


def flat_table(rows: list[dict]) -> str:
    lines = [
        "| adam | params | leaves | optax per-leaf ms | ours per-leaf ms (ratio) | ours flat ms (ratio) | optax flat ms (ratio) | ours flat GB/s (28 B/param) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| adam | {format_params(r['params'])} | {r['leaves']} | {r['optax_ms']:.3f} "
            f"| {r['ours_ms']:.3f} ({r['ours_ratio']:.2f}x) | {r['ours_flat_ms']:.3f} ({r['ours_flat_ratio']:.2f}x) "
            f"| {r['optax_flat_ms']:.3f} ({r['optax_flat_ratio']:.2f}x) | {r['flat_gbs']:.1f} |")
    return "\n".join(lines)


def format_params(total: int) -> str:
    return f"{total / 1e6:g}M"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| optimizer | params | leaves | optax ms/step | ours ms/step | ours/optax | same XLA ops | ours GB/s (B/param) | donated copy GB/s | % of copy |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['optimizer']} | {format_params(row['params'])} | {row['leaves']} "
            f"| {row['optax_ms']:.3f} | {row['ours_ms']:.3f} | {row['ratio']:.3f} "
            f"| {'yes' if row['same_program'] else 'no'} "
            f"| {row['bandwidth']:.1f} ({BYTES_PER_PARAM[row['optimizer']]}) "
            f"| {row['copy_bandwidth']:.1f} | {100 * row['fraction']:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds per side (median taken)")
    parser.add_argument("--seconds", type=float, default=0.02,
                        help="duration of one timing (pipelined steps back to back)")
    parser.add_argument("--quick", action="store_true", help="1M-parameter trees only, 5 rounds")
    parser.add_argument("--control", action="store_true",
                        help="A/A run: optax in the 'ours' column too, to see the noise floor of the ratio")
    parser.add_argument("--flat", action="store_true", help="only the flat-buffer table (Adam, per-leaf vs flat)")
    args = parser.parse_args()
    device = jax.devices()[0]
    flat_trees = [(1_000_000, 200), (1_000_000, 20), (10_000_000, 20)]
    if args.flat:
        rows = [benchmark_flat(total, leaves, args.rounds, args.seconds) for total, leaves in flat_trees]
        print(f"# {device.platform}, jax {jax.__version__}, optax {optax.__version__}, {args.rounds} rounds; "
              "ratio: median of per-round ratios to optax per-leaf\n")
        print(flat_table(rows))
        return

    trees = [(1_000_000, 20), (10_000_000, 20), (1_000_000, 200)]
    if args.quick:
        trees, args.rounds = [(1_000_000, 20), (1_000_000, 200)], 5
    rows = []
    for total, leaves in trees:
        rows += benchmark_tree(total, leaves, args.optimizers, args.rounds, args.seconds, args.control)
    device = jax.devices()[0]
    if args.control:
        print("# CONTROL RUN: the 'ours' column is optax too\n")
    print(f"# {device.platform} ({device.device_kind}), jax {jax.__version__}, optax {optax.__version__}, "
          f"{args.rounds} rounds of ~{1e3 * args.seconds:g} ms of pipelined steps; times: median per step; "
          f"ours/optax: median of the per-round ratios\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
