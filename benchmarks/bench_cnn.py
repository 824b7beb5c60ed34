"""The digits CNN and one conv layer: ours vs flax.linen (+ optax), side by side;
with ``--precision``, float32 vs ``model.compute_dtype: bfloat16`` on the digits configs.

(1) Epoch of configs/digits_cnn.yaml's network (reshape → conv–BN–ReLU →
residual block → max pool → conv–BN–ReLU → global average pool → dropout →
dense; Adam; batch 64; no augmentation, in both): ours (``build_model`` of
the config, ``make_train_epoch``), ours with JAX's own derivative of
``lax.conv_general_dilated`` instead of conv's custom VJP, and the same
network as a ``flax.linen`` module with ``optax.adam`` in an equally jitted
``lax.scan`` epoch. (2) One 3×3 SAME conv layer, forward + backward
(gradients of Σy² w.r.t. x, W, b) at (128, 32, 32, 64) → 64 and
(8, 16, 16, 16) → 16: ours (``layers.conv``) vs ``flax.linen.Conv``.

Variants are interleaved call by call in one process; the tables give medians
and the paired ratio (median over rounds of ours / flax in the same round;
lower is faster).

``--precision``: for configs/digits_mlp.yaml and configs/digits_cnn.yaml,
the test accuracy of the full ``train`` command (in-process) with float32
and with ``--set model.compute_dtype=bfloat16`` (``--seeds 0 1 2 3 4`` over
training seeds), and the epoch time bf16 / f32 of the built networks,
interleaved.

Run:  python benchmarks/bench_cnn.py [--quick] [--rounds 7]
      python benchmarks/bench_cnn.py --precision [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import digits_train_split, interleaved_times, load_text, paired_ratio, timed_first_calls  # noqa: E402

from functional_nn import layers, optim  # noqa: E402
from functional_nn.data import shuffled_batches  # noqa: E402
from functional_nn.experiment import build_loss, build_model, load_config  # noqa: E402
from functional_nn.layers import conv as conv_module  # noqa: E402
from functional_nn.train import init_train_state, make_train_epoch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"digits MLP": os.path.join(ROOT, "configs", "digits_mlp.yaml"),
           "digits CNN": os.path.join(ROOT, "configs", "digits_cnn.yaml")}
BATCH, LR = 64, 1e-3


@contextlib.contextmanager
def jax_conv_derivative():
    """Trace ``convolve`` with JAX's derivative of lax.conv (the custom VJP swapped out)."""
    fast = conv_module.conv_with_fast_backward
    conv_module.conv_with_fast_backward = conv_module._conv
    try:
        yield
    finally:
        conv_module.conv_with_fast_backward = fast


def epoch_runner(epoch, state, x, y, context=contextlib.nullcontext):
    holder = {"state": state}

    def run_epoch():
        with context():
            holder["state"], metrics = epoch(holder["state"], x, y)
        jax.block_until_ready((holder["state"], metrics))

    return run_epoch


def ours_epoch(x, y, overrides=(), context=contextlib.nullcontext, config="digits CNN"):
    """The config's network, loss and Adam(1e-3) (no schedule), as the CLI builds them."""
    cfg = load_config(CONFIGS[config], overrides=list(overrides))
    model, loss = build_model(cfg.model), build_loss(cfg.loss)
    optimizer = optim.adam(LR)
    state = init_train_state(model, optimizer, jax.random.key(0), (BATCH, x.shape[1]))
    return epoch_runner(make_train_epoch(model, loss, optimizer, BATCH), state, x, y, context)


def flax_cnn_epoch(x, y):
    import flax.linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, h, train: bool):
            def bn(h):
                return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)

            h = h.reshape(h.shape[0], 8, 8, 1)
            h = nn.relu(bn(nn.Conv(32, (3, 3))(h)))
            r = bn(nn.Conv(32, (3, 3))(nn.relu(bn(nn.Conv(32, (3, 3))(h)))))
            h = nn.max_pool(nn.relu(h + r), (2, 2), (2, 2))
            h = nn.relu(bn(nn.Conv(64, (3, 3))(h)))
            h = nn.Dropout(0.3, deterministic=not train)(h.mean(axis=(1, 2)))
            return nn.Dense(10)(h)

    model = CNN()
    init_key, dropout_key, shuffle_key = jax.random.split(jax.random.key(0), 3)
    variables = model.init(init_key, x[:BATCH], train=False)
    tx = optax.adam(LR)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]),
             jnp.zeros((), jnp.int32), shuffle_key)

    def step(carry, batch):
        params, batch_stats, opt_state, count, key = carry
        xb, yb = batch

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, xb, train=True,
                                          rngs={"dropout": jax.random.fold_in(dropout_key, count)},
                                          mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), (logits, updates["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, batch_stats, opt_state, count + 1, key), {"loss": loss,
                                                                  "accuracy": jnp.mean(jnp.argmax(logits, -1) == yb)}

    def epoch(carry, x, y):
        key, permutation_key = jax.random.split(carry[-1])
        carry, metrics = jax.lax.scan(step, carry[:-1] + (key,), shuffled_batches(permutation_key, x, y, BATCH))
        return carry, jax.tree.map(jnp.mean, metrics)

    return epoch_runner(jax.jit(epoch, donate_argnums=0), state, x, y)


def conv_step_runners(shape, out_channels):
    """Forward + backward of one 3×3 SAME conv: (ours, flax) callables."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), shape)
    layer = layers.conv(out_channels, 3)
    _, params, _ = layer.init(jax.random.key(1), shape)
    module = nn.Conv(out_channels, (3, 3))
    flax_params = module.init(jax.random.key(1), x)

    def ours_loss(params, x):
        return jnp.sum(layer.apply(params, (), x, train=True)[0] ** 2)

    def flax_loss(params, x):
        return jnp.sum(module.apply(params, x) ** 2)

    ours = jax.jit(jax.grad(ours_loss, argnums=(0, 1)))
    reference = jax.jit(jax.grad(flax_loss, argnums=(0, 1)))
    return (lambda: jax.block_until_ready(ours(params, x)),
            lambda: jax.block_until_ready(reference(flax_params, x)))


def table(times: dict, reference: str, first: dict) -> str:
    lines = ["| variant | ms (median) | IQR ms | paired ratio to flax (median) | first call (compile) s |",
             "|---|---|---|---|---|"]
    for name, samples in times.items():
        q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else (samples[0],) * 3
        lines.append(f"| {name} | {1e3 * statistics.median(samples):.2f} | {1e3 * q1:.2f}–{1e3 * q3:.2f} "
                     f"| {paired_ratio(samples, times[reference]):.2f}x | {first[name]:.2f} |")
    return "\n".join(lines)


def speed_tables(rounds: int, quick: bool) -> None:
    x, y = digits_train_split()
    cnn = {"ours (functional_nn)": ours_epoch(x, y),
           "ours, JAX's conv derivative": ours_epoch(x, y, context=jax_conv_derivative),
           "flax.linen + optax": flax_cnn_epoch(x, y)}
    first = timed_first_calls(cnn)
    before = load_text()
    times = interleaved_times(cnn, rounds)
    print(f"(1) digits CNN epoch, batch {BATCH}, {len(x) // BATCH} steps; {jax.devices()[0].platform}; "
          f"{rounds} rounds; {before} before, {load_text()} after\n")
    print(table(times, "flax.linen + optax", first) + "\n")
    shapes = [((8, 16, 16, 16), 16)] if quick else [((8, 16, 16, 16), 16), ((128, 32, 32, 64), 64)]
    for shape, out_channels in shapes:
        ours, reference = conv_step_runners(shape, out_channels)
        variants = {"ours layers.conv": ours, "flax.linen.Conv": reference}
        first = timed_first_calls(variants)
        times = interleaved_times(variants, rounds * 3)
        print(f"(2) 3x3 SAME conv fwd+bwd, {shape} -> {out_channels}; {load_text()}\n")
        print(table(times, "flax.linen.Conv", first) + "\n")


def train_accuracy(config: str, overrides: list) -> float:
    from functional_nn.__main__ import main

    with tempfile.TemporaryDirectory() as out:
        code = main(["train", config, "--out", out, "--no-progress", *sum((["--set", o] for o in overrides), [])])
        if code != 0:
            raise SystemExit(f"train {config} {overrides} failed with exit code {code}")
        with open(os.path.join(out, "summary.json")) as f:
            return json.load(f)["test_accuracy"]


def precision_table(seeds: list, rounds: int) -> None:
    x, y = digits_train_split()
    bf16 = "model.compute_dtype=bfloat16"
    rows = []
    for name, config in CONFIGS.items():
        accuracy = {dtype: [100 * train_accuracy(config, [f"training.seed={s}", *extra]) for s in seeds]
                    for dtype, extra in (("float32", []), ("bfloat16", [bf16]))}
        variants = {"float32": ours_epoch(x, y, config=name), "bfloat16": ours_epoch(x, y, [bf16], config=name)}
        timed_first_calls(variants)
        times = interleaved_times(variants, rounds)
        rows.append((name, accuracy, statistics.median(times["float32"]), statistics.median(times["bfloat16"]),
                     paired_ratio(times["bfloat16"], times["float32"])))
    print(f"mixed precision, training seeds {seeds}; {jax.devices()[0].platform}; {load_text()}\n")
    print("| config | test accuracy f32 % | test accuracy bf16 % | f32 ms / epoch | bf16 ms / epoch | bf16 / f32 (paired) |")
    print("|---|---|---|---|---|---|")

    def cell(values):
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{statistics.mean(values):.1f} ({min(values):.1f}–{max(values):.1f}: {', '.join(f'{v:.1f}' for v in values)})"

    for name, accuracy, f32, b16, ratio in rows:
        print(f"| {name} | {cell(accuracy['float32'])} | {cell(accuracy['bfloat16'])} | {1e3 * f32:.1f} "
              f"| {1e3 * b16:.1f} | {ratio:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (epochs / calls per variant)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and only the small conv shape")
    parser.add_argument("--precision", action="store_true", help="the float32 vs bfloat16 table instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds for --precision")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    if args.precision:
        precision_table(args.seeds, rounds)
    else:
        speed_tables(rounds, args.quick)


if __name__ == "__main__":
    main()
