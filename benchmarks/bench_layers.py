"""Batch norm forward+backward (training mode): ours vs autodiff of the naive formula vs flax.

Each variant is one jitted step  (x, params, running stats, ∂Div/∂ẑ) ->
(ẑ, updated running stats, ∂Div/∂x, ∂Div/∂γ, ∂Div/∂β):

- ``ours``:  ``functional_nn.layers.batchnorm`` (two-pass statistics, the
  notes' closed-form backward as a custom VJP);
- ``naive autodiff``: ``jax.vjp`` of the naive two-pass formula
  γ (x − μ_B)/√(σ_B² + ε) + β with the same running-statistics update;
- ``flax``: ``flax.linen.BatchNorm(use_running_average=False)`` with its
  defaults (one-pass variance E[x²] − E[x]²);
- ``ours, shifted one-pass statistics``: the same custom VJP with
  μ_B, σ_B² from one pass of shifted sums Σ(x−K), Σ(x−K)², K = the first
  row (stable when K is a typical sample); kept to show that on XLA:CPU it
  does not save a pass: the broadcast x − K is materialised before the
  reduction, as x − μ_B is;
- ``ours, variadic reduce (fewest passes)``: the same math with each pair
  of sums as one variadic ``lax.reduce`` over fused operands (Σ(x−K),
  Σ(x−K)²; Σ∂Div/∂ẑ, Σ∂Div/∂ẑ(x−μ_B)) and x kept as the residual: the
  fewest full-size passes, but XLA:CPU's own reduction emitter is several
  times slower than the YNNPACK reductions the other variants get.

The minimum for a training step is 6 full-size reads and 2 writes: forward,
one pass over x for both sums and one pass x → ẑ; backward, one pass over
(∂Div/∂ẑ, x) for both sums and one pass (∂Div/∂ẑ, x) → ∂Div/∂x.

All variants run side by side in the same process, interleaved round by
round (each round: the median of ``--calls`` calls per variant); the table
gives the median over rounds of each variant's time, and the median over
rounds of its time divided by flax's time in the same round (lower is
faster; robust to load that changes between rounds),
the full-size array reads/writes of the compiled program (passes over the
data), and the relative error of the batch variance for float32 inputs with
mean 1e4 and std 1 (reference: NumPy float64).

Run (from the repository root, with the package and flax installed, e.g.
``pip install -e ".[bench]"``):  python benchmarks/bench_layers.py [--rounds 11] [--calls 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from functional_nn.layers import batchnorm

SHAPES = ((256, 1024), (4096, 1024))
EPS = 1e-5
DECAY = 0.9


def ours_step():
    layer = batchnorm(eps=EPS, ema_decay=DECAY)

    def step(x, params, state, cotangent):
        def forward(x, params):
            return layer.apply(params, state, x, train=True)

        (y, new_state), vjp = jax.vjp(forward, x, params)
        dx, dparams = vjp((cotangent, jax.tree.map(jnp.zeros_like, new_state)))
        return y, new_state, dx, dparams

    return jax.jit(step)


def _shifted_forward(axis_name, z, gamma, beta, eps):
    del axis_name
    shift = jax.lax.stop_gradient(z[0])
    d = z - shift
    s1, s2 = jnp.mean(d, axis=0), jnp.mean(d * d, axis=0)
    mu_B, var_B = shift + s1, jnp.maximum(s2 - s1 * s1, 0.0)
    inv_std = jax.lax.rsqrt(var_B + eps)
    centered = z - mu_B
    return (centered * (gamma * inv_std) + beta, mu_B, var_B), (centered, gamma, beta, inv_std, eps)


def shifted_step():
    """Ours with one-pass shifted statistics (same closed-form backward)."""
    import functools

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def normalize(axis_name, z, gamma, beta, eps):
        return _shifted_forward(axis_name, z, gamma, beta, eps)[0]

    normalize.defvjp(_shifted_forward, batchnorm._batch_normalize_backward)

    def step(x, params, state, cotangent):
        def forward(x, params):
            y, mu, var = normalize(None, x, params["gamma"], params["beta"], jnp.float32(EPS))
            return y, batchnorm.update_running_statistics(state, mu, var, x.shape[0], DECAY)

        (y, new_state), vjp = jax.vjp(forward, x, params)
        dx, dparams = vjp((cotangent, jax.tree.map(jnp.zeros_like, new_state)))
        return y, new_state, dx, dparams

    return jax.jit(step)


def _pair_sum(a, b):
    """(Σ a, Σ b) over axis 0 as one variadic reduce (one pass over fused operands)."""
    zero = jnp.zeros((), a.dtype)
    return jax.lax.reduce((a, b), (zero, zero), lambda x, y: (x[0] + y[0], x[1] + y[1]), (0,))


def _variadic_statistics(z):
    """(μ_B, σ_B²) from one variadic reduce of shifted sums, K = the first row."""
    b = z.shape[0]
    shift = jax.lax.stop_gradient(z[0])
    s1, s2 = _pair_sum(z - shift, jnp.square(z - shift))
    return shift + s1 / b, jnp.maximum(s2 / b - jnp.square(s1 / b), 0.0)


def variadic_step():
    """Batch norm with the fewest full-size passes: variadic reductions, x as the residual."""

    @jax.custom_vjp
    def normalize(z, gamma, beta):
        return forward(z, gamma, beta)[0]

    def forward(z, gamma, beta):
        mu_B, var_B = _variadic_statistics(z)
        inv_std = jax.lax.rsqrt(var_B + EPS)
        return ((z - mu_B) * (gamma * inv_std) + beta, mu_B, var_B), (z, mu_B, gamma, inv_std)

    def backward(residuals, cotangents):
        z, mu_B, gamma, inv_std = residuals
        dzhat, dmu_direct, dvar_direct = cotangents
        b = z.shape[0]
        dbeta, sum_dzhat_centered = _pair_sum(dzhat, dzhat * (z - mu_B))
        dvar = -0.5 * inv_std**3 * gamma * sum_dzhat_centered + dvar_direct
        dmu = -inv_std * gamma * dbeta + dmu_direct
        dz = dzhat * (gamma * inv_std) + (z - mu_B) * (2.0 / b * dvar) + dmu / b
        return dz, sum_dzhat_centered * inv_std, dbeta

    normalize.defvjp(forward, backward)

    def step(x, params, state, cotangent):
        def forward_with_state(x, params):
            y, mu, var = normalize(x, params["gamma"], params["beta"])
            return y, batchnorm.update_running_statistics(state, mu, var, x.shape[0], DECAY)

        (y, new_state), vjp = jax.vjp(forward_with_state, x, params)
        dx, dparams = vjp((cotangent, jax.tree.map(jnp.zeros_like, new_state)))
        return y, new_state, dx, dparams

    return jax.jit(step)


def naive_step():
    def step(x, params, state, cotangent):
        def forward(x, params):
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            y = params["gamma"] * (x - mean) / jnp.sqrt(var + EPS) + params["beta"]
            return y, (mean, var)

        (y, (mean, var)), vjp = jax.vjp(forward, x, params)
        dx, dparams = vjp((cotangent, (jnp.zeros_like(mean), jnp.zeros_like(var))))
        b = x.shape[0]
        new_state = state._replace(
            mean=DECAY * state.mean + (1 - DECAY) * mean,
            var=DECAY * state.var + (1 - DECAY) * var * b / (b - 1),
            count=state.count + 1,
        )
        return y, new_state, dx, dparams

    return jax.jit(step)


def flax_step():
    import flax.linen as nn

    module = nn.BatchNorm(use_running_average=False, momentum=DECAY, epsilon=EPS)

    def step(x, params, batch_stats, cotangent):
        def forward(x, params):
            return module.apply({"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"])

        (y, updates), vjp = jax.vjp(forward, x, params)
        dx, dparams = vjp((cotangent, jax.tree.map(jnp.zeros_like, updates)))
        return y, updates, dx, dparams

    return jax.jit(step), module


def make_inputs(shape):
    kx, kc = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, shape, jnp.float32) * 2.0 + 0.5
    cotangent = jax.random.normal(kc, shape, jnp.float32)
    return x, cotangent


def time_calls(fn, args, calls: int) -> float:
    """Median seconds per call over ``calls`` calls (after a warm-up call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_size_passes(fn, args, shape) -> tuple[int, int]:
    """(reads, writes) of full-size arrays by the compiled program's top-level ops.

    An op that takes a full-size operand counts as one read of it, even if it
    reads only a slice (the shifted variants read the first row of x that way).
    """
    text = fn.lower(*args).compile().as_text()
    entry = text[text.index("ENTRY") :]
    full = "f32[" + ",".join(str(d) for d in shape) + "]"
    shapes, reads, writes = {}, 0, 0
    for line in entry.splitlines()[1:]:
        match = re.match(r"\s*(ROOT )?%(\S+) = (\(.*?\)|\S+) (\w[\w-]*)\((.*?)\)", line)
        if not match:
            continue
        _, name, out_shape, op, operands = match.groups()
        shapes[name] = out_shape
        if op in ("parameter", "tuple", "constant", "bitcast", "get-tuple-element"):
            continue
        operand_names = [re.sub(r"/\*.*?\*/", "", o).strip().lstrip("%") for o in operands.split(",")]
        reads += sum(shapes.get(o, "").startswith(full) for o in operand_names)
        writes += out_shape.count(full)
    return reads, writes


def variance_relative_errors(shape) -> dict:
    """Max relative error of σ_B² for float32 inputs with mean 1e4, std 1, per variant."""
    import flax.linen as nn

    x = np.asarray(1e4 + jax.random.normal(jax.random.key(1), shape, jnp.float32), np.float32)
    reference = np.var(x.astype(np.float64), axis=0)
    _, ours_var = batchnorm.batch_statistics(jnp.asarray(x))
    naive_var = jnp.mean(jnp.square(x - jnp.mean(x, axis=0)), axis=0)
    module = nn.BatchNorm(use_running_average=False, momentum=0.0, epsilon=EPS)
    variables = module.init(jax.random.key(0), x)
    _, updates = module.apply(variables, x, mutable=["batch_stats"])
    flax_var = np.asarray(updates["batch_stats"]["var"])  # momentum 0: the batch variance itself

    def rel(v):
        return float(np.max(np.abs(np.asarray(v, np.float64) - reference) / reference))

    (_, _, shifted_var), _ = _shifted_forward(None, jnp.asarray(x), jnp.ones(shape[-1]), jnp.zeros(shape[-1]), EPS)
    _, variadic_var = jax.jit(_variadic_statistics)(jnp.asarray(x))
    return {"ours (custom VJP)": rel(ours_var), "ours, shifted one-pass statistics": rel(shifted_var),
            "ours, variadic reduce (fewest passes)": rel(variadic_var),
            "naive autodiff": rel(naive_var), "flax.linen.BatchNorm": rel(flax_var)}


def run(rounds: int, calls: int):
    ours, shifted, variadic, naive = ours_step(), shifted_step(), variadic_step(), naive_step()
    flax_fn, module = flax_step()
    rows = []
    for shape in SHAPES:
        x, cotangent = make_inputs(shape)
        layer = batchnorm(eps=EPS, ema_decay=DECAY)
        _, params, state = layer.init(jax.random.key(0), shape)
        flax_vars = module.init(jax.random.key(0), x)
        variants = {
            "ours (custom VJP)": (ours, (x, params, state, cotangent)),
            "ours, shifted one-pass statistics": (shifted, (x, params, state, cotangent)),
            "ours, variadic reduce (fewest passes)": (variadic, (x, params, state, cotangent)),
            "naive autodiff": (naive, (x, params, state, cotangent)),
            "flax.linen.BatchNorm": (flax_fn, (x, flax_vars["params"], flax_vars["batch_stats"], cotangent)),
        }
        for fn, args in variants.values():  # warm-up: compile, and let the allocator settle
            time_calls(fn, args, calls)
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (fn, args) in variants.items():
                times[name].append(time_calls(fn, args, calls))
        flax_times = times["flax.linen.BatchNorm"]
        errors = variance_relative_errors(shape)
        for name, (fn, args) in variants.items():
            ratio = statistics.median(t / f for t, f in zip(times[name], flax_times))
            reads, writes = full_size_passes(fn, args, shape)
            rows.append((shape, name, statistics.median(times[name]), ratio, reads, writes, errors[name]))
    return rows


def markdown(rows) -> str:
    lines = [
        "| shape (B, D) | variant | fwd+bwd time | vs flax | full-size reads / writes | σ_B² rel. error (mean 1e4, f32) |",
        "|---|---|---|---|---|---|",
    ]
    for shape, name, t, ratio, reads, writes, err in rows:
        lines.append(f"| {shape} | {name} | {t * 1e6:.0f} µs | {ratio:.2f}x | {reads} / {writes} | {err:.1e} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds (median over rounds)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per round (median per round)")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} cores, load average {load:.1f}; "
          f"{args.rounds} rounds x {args.calls} calls")
    print(markdown(run(args.rounds, args.calls)))


if __name__ == "__main__":
    main()
