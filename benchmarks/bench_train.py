"""Time per epoch of the digits MLP: ours vs flax.linen + optax (and PyTorch eager).

Network: 64-256-256-10, each hidden layer dense → batch norm → ReLU →
dropout(0.2); Adam(1e-3); softmax cross-entropy; batch 64 over the 80 %
training split of scikit-learn's digits (1437 examples, 22 steps per epoch).

- ``ours``: ``functional_nn`` layers and optimizer, ``make_train_epoch`` (one
  jitted ``lax.scan`` over the shuffled batches, donated state);
- ``flax+optax``: the same network as a ``flax.linen`` module with
  ``optax.adam``, the same on-device shuffle and a jitted ``lax.scan`` epoch
  with donated state, the usual flax idioms (``batch_stats`` collection,
  ``rngs={"dropout": fold_in(key, step)}``);
- ``torch eager`` (only if PyTorch is installed): the same network and
  ``torch.optim.Adam``, a Python loop over the batches.

Both JAX variants compute the same metrics (loss and accuracy per step). The
variants are interleaved epoch by epoch in one process; the table gives the
median time per epoch and the ratio to flax+optax (lower is faster).

``--scaling`` prints instead epoch time vs batch size (64 … 1024, hidden 256)
and hidden width (256 … 2048, batch 64), ours vs flax+optax, each
configuration interleaved on its own (a few minutes on 2 cores).

Run:  python benchmarks/bench_train.py [--rounds 7] [--epochs 10] [--scaling]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_nn import layers, optim
from functional_nn.data import load_digits, shuffled_batches
from functional_nn.losses import softmax_cross_entropy
from functional_nn.train import init_train_state, make_train_epoch

BATCH, HIDDEN, RATE, LR, CLASSES = 64, 256, 0.2, 1e-3, 10


def digits_train_split():
    data = load_digits(seed=0, val_fraction=0.0, test_fraction=0.2)
    return jnp.asarray(data.train.x), jnp.asarray(data.train.y)


# --------------------------------------------------------------------------
# ours


def ours(x, y, unroll=1, *, batch=BATCH, hidden=HIDDEN, flat=False):
    def block():
        return [layers.dense(hidden), layers.batchnorm(), layers.relu, layers.dropout(RATE)]

    model = layers.serial(*block(), *block(), layers.dense(CLASSES))
    if flat:
        model = layers.flat_params(model)
    optimizer = optim.adam(LR)
    state = init_train_state(model, optimizer, jax.random.key(0), (batch, x.shape[1]))
    epoch = make_train_epoch(model, softmax_cross_entropy, optimizer, batch, unroll=unroll)
    holder = {"state": state}

    def run_epoch():
        holder["state"], metrics = epoch(holder["state"], x, y)
        jax.block_until_ready((holder["state"], metrics))

    return run_epoch


# --------------------------------------------------------------------------
# flax.linen + optax


def flax_optax(x, y, *, batch=BATCH, hidden=HIDDEN):
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, h, train: bool):
            for _ in range(2):
                h = nn.Dense(hidden)(h)
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)
                h = nn.relu(h)
                h = nn.Dropout(RATE, deterministic=not train)(h)
            return nn.Dense(CLASSES)(h)

    model = MLP()
    init_key, dropout_key, shuffle_key = jax.random.split(jax.random.key(0), 3)
    variables = model.init(init_key, x[:batch], train=False)
    tx = optax.adam(LR)
    state = (
        variables["params"],
        variables["batch_stats"],
        tx.init(variables["params"]),
        jnp.zeros((), jnp.int32),
        shuffle_key,
    )

    def step(carry, batch):
        params, batch_stats, opt_state, count, key = carry
        xb, yb = batch

        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats},
                xb,
                train=True,
                rngs={"dropout": jax.random.fold_in(dropout_key, count)},
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
            return loss, (logits, updates["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == yb)
        return (params, batch_stats, opt_state, count + 1, key), {"loss": loss, "accuracy": accuracy}

    def epoch(carry, x, y):
        key, permutation_key = jax.random.split(carry[-1])
        batches = shuffled_batches(permutation_key, x, y, batch)
        carry, metrics = jax.lax.scan(step, carry[:-1] + (key,), batches)
        return carry, jax.tree.map(jnp.mean, metrics)

    epoch = jax.jit(epoch, donate_argnums=0)
    holder = {"state": state}

    def run_epoch():
        holder["state"], metrics = epoch(holder["state"], x, y)
        jax.block_until_ready((holder["state"], metrics))

    return run_epoch


# --------------------------------------------------------------------------
# PyTorch eager (optional)


def torch_eager(x, y):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    layers_ = []
    width = x.shape[1]
    for _ in range(2):
        layers_ += [
            torch.nn.Linear(width, HIDDEN),
            torch.nn.BatchNorm1d(HIDDEN, momentum=0.1),
            torch.nn.ReLU(),
            torch.nn.Dropout(RATE),
        ]
        width = HIDDEN
    model = torch.nn.Sequential(*layers_, torch.nn.Linear(width, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()
    steps = len(xt) // BATCH

    def run_epoch():
        model.train()
        order = torch.randperm(len(xt))[: steps * BATCH].view(steps, BATCH)
        for idx in order:
            logits = model(xt[idx])
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            (logits.argmax(-1) == yt[idx]).float().mean().item()

    return run_epoch


# --------------------------------------------------------------------------


def timed_first_calls(variants: dict) -> dict:
    """Seconds of each variant's first call (compilation included), then a second call to warm it."""
    seconds = {}
    for name, run in variants.items():
        started = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - started
        run()
    return seconds


def interleaved_times(variants: dict, repeats: int) -> dict:
    """Per-variant epoch times, alternating epoch by epoch so load drifts hit all alike."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run_epoch in variants.items():
            started = time.perf_counter()
            run_epoch()
            times[name].append(time.perf_counter() - started)
    return times


def paired_ratio(samples, reference) -> float:
    """Median over rounds of (this variant's epoch / the reference's epoch in the same round)."""
    return statistics.median(a / b for a, b in zip(samples, reference))


SCALING = [(b, 256) for b in (64, 128, 256, 512, 1024)] + [(64, h) for h in (512, 1024, 2048)] + [(256, 2048)]


def scaling_table(x, y, epochs: int) -> str:
    """Epoch time vs batch size and hidden width: ours vs flax+optax, interleaved per configuration."""
    lines = [
        "| batch | hidden | steps / epoch | ours ms / epoch | flax+optax ms / epoch | ours / flax (paired median) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, hidden in SCALING:
        variants = {"ours": ours(x, y, batch=batch, hidden=hidden), "flax": flax_optax(x, y, batch=batch, hidden=hidden)}
        for run_epoch in variants.values():
            run_epoch()  # compile
            run_epoch()
        times = interleaved_times(variants, epochs)
        ours_ms, flax_ms = (1e3 * statistics.median(times[k]) for k in ("ours", "flax"))
        ratio = paired_ratio(times["ours"], times["flax"])
        lines.append(f"| {batch} | {hidden} | {len(x) // batch} | {ours_ms:.2f} | {flax_ms:.2f} | {ratio:.2f}x |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def load_text() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--epochs", type=int, default=10, help="timed epochs per variant per round (rounds x epochs in all)"
    )
    parser.add_argument("--scaling", action="store_true",
                        help="the scaling table instead: epoch time vs batch size and hidden width, ours vs flax+optax")
    parser.add_argument("--scaling-epochs", type=int, default=15, help="timed epochs per variant and configuration")
    args = parser.parse_args()

    x, y = digits_train_split()
    if args.scaling:
        print(f"# scaling: digits MLP 64-h-h-10, {jax.devices()[0].platform}, {load_text()} at start")
        table = scaling_table(x, y, args.scaling_epochs)
        print(f"# {load_text()} at end\n")
        print(table)
        return
    variants = {
        "ours (functional_nn)": ours(x, y),
        "ours, scan unroll=2": ours(x, y, unroll=2),
        "ours + layers.flat_params": ours(x, y, flat=True),
        "flax.linen + optax": flax_optax(x, y),
    }
    try:
        variants["torch eager"] = torch_eager(x, y)
    except ImportError:
        pass
    compile_seconds = {}
    for name, run_epoch in variants.items():
        started = time.perf_counter()
        run_epoch()  # compile + first epoch
        compile_seconds[name] = time.perf_counter() - started
        run_epoch()
    load_before = load_text()
    times = interleaved_times(variants, args.rounds * args.epochs)

    reference = times["flax.linen + optax"]
    print(
        f"digits MLP 64-256-256-10 (batch norm, ReLU, dropout {RATE}), Adam, batch {BATCH}, "
        f"{len(x) // BATCH} steps/epoch; {jax.devices()[0].platform}, {args.rounds} rounds x {args.epochs} epochs; "
        f"{load_before} before, {load_text()} after"
    )
    print()
    print("| variant | ms / epoch (median) | IQR ms | ratio of medians | paired ratio (median) | first call (compile) s |")
    print("|---|---|---|---|---|---|")
    for name, samples in times.items():
        median = statistics.median(samples)
        q1, _, q3 = statistics.quantiles(samples, n=4)
        row = [name, f"{1e3 * median:.2f}", f"{1e3 * q1:.2f}–{1e3 * q3:.2f}",
               f"{median / statistics.median(reference):.2f}x", f"{paired_ratio(samples, reference):.2f}x"]
        print("| " + " | ".join(row + [f"{compile_seconds[name]:.2f}"]) + " |")


if __name__ == "__main__":
    main()
