"""Grid search speed: 16 learning rates x 5 epochs of the digits MLP (configs/digits_mlp.yaml).

Three ways to run the same 16 trainings, compile time included in each:

  (a) the loop users write: a fresh optimizer and a fresh compile per setting
      (``make_train_epoch`` + ``fit`` for each learning rate);
  (b) a sequential loop over ONE compiled epoch that takes the learning rate as
      a traced argument (``fit`` for each learning rate, no recompiles);
  (c) our vmapped grid: ``grid_search``, all 16 settings in one compiled program.

Every way evaluates on the validation split after each epoch. The same three
strategies are also written with flax (linen) + optax, the reference, and run
in the same process, so the ratios are measured under the same load.

    python benchmarks/bench_search.py [--repeats 2] [--epochs 5]

Targets (issue 5): (c) >= 4x faster than (a); (c) no slower than (b).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_nn.config import build_data, build_early_stopping, build_loss, build_model, build_optimizer, load_config
from functional_nn.train import fit, init_train_state, make_epoch, make_evaluate, make_train_epoch, make_train_step
from functional_nn.train.grid_search import grid_search

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "digits_mlp.yaml")
LEARNING_RATES = [float(v) for v in np.geomspace(1e-4, 1e-1, 16)]


# --------------------------------------------------------------------------
# ours


def _fit(config, data, train_state, epoch_fn, evaluate):
    _, history = fit(train_state, epoch_fn, evaluate, data.train, data.val, epochs=config.training.epochs,
                     early_stopping=build_early_stopping(config.training), progress=False, log=lambda _: None)
    return history[-1]["val_loss"]


def ours_fresh_compile_per_setting(config, data):
    """(a): for each setting, build the optimizer and compile its epoch and evaluation."""
    losses = []
    for lr in LEARNING_RATES:
        model, loss = build_model(config.model), build_loss(config.loss)
        optimizer = build_optimizer(dataclasses.replace(config.optimizer, learning_rate=lr))
        batch = config.training.batch_size
        state = init_train_state(model, optimizer, jax.random.key(config.training.seed), (batch,) + data.train.x.shape[1:])
        losses.append(_fit(config, data, state, make_train_epoch(model, loss, optimizer, batch), make_evaluate(model, loss)))
    return losses


def ours_one_program_sequential(config, data):
    """(b): one compiled epoch with the learning rate as a traced argument, looped over settings."""
    model, loss, batch = build_model(config.model), build_loss(config.loss), config.training.batch_size
    optimizer_for = lambda lr: build_optimizer(config.optimizer, {"learning_rate": lr})  # noqa: E731
    input_shape = (batch,) + data.train.x.shape[1:]
    init = jax.jit(lambda lr, key: init_train_state(model, optimizer_for(lr), key, input_shape))
    epoch = jax.jit(lambda lr, state, x, y: make_epoch(make_train_step(model, loss, optimizer_for(lr)), batch)(state, x, y), donate_argnums=(1,))
    evaluate = make_evaluate(model, loss)
    losses = []
    for lr in LEARNING_RATES:
        lr = jnp.float32(lr)
        state = init(lr, jax.random.key(config.training.seed))
        losses.append(_fit(config, data, state, functools.partial(epoch, lr), evaluate))
    return losses


def ours_vmapped_grid(config, data):
    """(c): every setting in one compiled program (``jax.vmap`` over the learning rate)."""
    search = dataclasses.replace(config, search={"optimizer.learning_rate": LEARNING_RATES})
    result = grid_search(search, data=data, progress=False)
    return [history[-1]["val_loss"] for history in result.histories]


# --------------------------------------------------------------------------
# the reference: flax (linen) + optax, the same three strategies


def flax_mlp(config):
    import flax.linen as nn

    hidden = [layer.args["out_dim"] for layer in config.model.layers if layer.type == "dense"]
    rates = [layer.args.get("rate", 0.0) for layer in config.model.layers if layer.type == "dropout"]

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            for width, rate in zip(hidden[:-1], rates):
                x = nn.Dense(width)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
                x = nn.relu(x)
                x = nn.Dropout(rate, deterministic=not train)(x)
            return nn.Dense(hidden[-1])(x)

    return MLP()


def flax_functions(model, batch_size: int, input_dim: int):
    """init(lr, key), epoch(lr, state, x, y), evaluate(state, x, y) for optax.adam(lr)."""

    def init(lr, key):
        init_key, key = jax.random.split(key)
        variables = model.init(init_key, jnp.zeros((batch_size, input_dim)), train=False)
        return (variables["params"], variables["batch_stats"], optax.adam(lr).init(variables["params"]), key)

    def step(lr, state, batch):
        params, stats, opt_state, key = state
        key, dropout_key = jax.random.split(key)
        x, y = batch

        def loss_fn(p):
            logits, updated = model.apply({"params": p, "batch_stats": stats}, x, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updated["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optax.adam(lr).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), stats, opt_state, key), loss

    def epoch(lr, state, x, y):
        shuffle_key, key = jax.random.split(state[3])
        k = x.shape[0] // batch_size
        order = jax.random.permutation(shuffle_key, x.shape[0])[: k * batch_size].reshape(k, batch_size)
        state, losses = jax.lax.scan(functools.partial(step, lr), state[:3] + (key,), (x[order], y[order]))
        return state, losses.mean()

    def evaluate(state, x, y):
        logits = model.apply({"params": state[0], "batch_stats": state[1]}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return init, epoch, evaluate


def _flax_setup(config, data):
    model = flax_mlp(config)
    x, y, vx, vy = (jax.device_put(np.asarray(a)) for a in (data.train.x, data.train.y, data.val.x, data.val.y))
    return flax_functions(model, config.training.batch_size, x.shape[1]), (x, y, vx, vy)


def flax_fresh_compile_per_setting(config, data):
    losses = []
    for lr in LEARNING_RATES:
        (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)  # new closures: fresh compiles
        init, epoch, evaluate = jax.jit(functools.partial(init, lr)), jax.jit(functools.partial(epoch, lr)), jax.jit(evaluate)
        state = init(jax.random.key(config.training.seed))
        for _ in range(config.training.epochs):
            state, _ = epoch(state, x, y)
            val_loss = float(evaluate(state, vx, vy))
        losses.append(val_loss)
    return losses


def flax_one_program_sequential(config, data):
    (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)
    init, epoch, evaluate = jax.jit(init), jax.jit(epoch), jax.jit(evaluate)
    losses = []
    for lr in LEARNING_RATES:
        lr = jnp.float32(lr)
        state = init(lr, jax.random.key(config.training.seed))
        for _ in range(config.training.epochs):
            state, _ = epoch(lr, state, x, y)
            val_loss = float(evaluate(state, vx, vy))
        losses.append(val_loss)
    return losses


def flax_vmapped_grid(config, data):
    (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)
    init = jax.jit(jax.vmap(init, in_axes=(0, None)))
    epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None)))
    evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
    lrs = jnp.asarray(LEARNING_RATES, jnp.float32)
    state = init(lrs, jax.random.key(config.training.seed))
    for _ in range(config.training.epochs):
        state, _ = epoch(lrs, state, x, y)
        val_loss = np.asarray(evaluate(state, vx, vy))
    return [float(v) for v in val_loss]


# --------------------------------------------------------------------------


def timed(fn, *args, repeats: int):
    """Best wall time over ``repeats`` runs (each compiles afresh) and the last result."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per strategy; the best time is reported")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    # no augmentation: the flax+optax reference has none, and (a)-(c) must train the same networks
    config = load_config(CONFIG, [("training.epochs", args.epochs), ("training.augmentation", None)])
    data = build_data(config.data)
    strategies = [
        ("(a) fresh optimizer + compile per setting", ours_fresh_compile_per_setting, flax_fresh_compile_per_setting),
        ("(b) one compiled program, lr traced, sequential", ours_one_program_sequential, flax_one_program_sequential),
        ("(c) vmapped grid, one compiled program", ours_vmapped_grid, flax_vmapped_grid),
    ]
    print(f"{len(LEARNING_RATES)} learning rates x {args.epochs} epochs, digits MLP ({CONFIG}), "
          f"{len(data.train.x)} training examples, batch {config.training.batch_size}; "
          f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPU cores); best of {args.repeats}, compile included\n")
    times, finals = {}, {}
    for label, ours, reference in strategies:
        times[label] = (timed(ours, config, data, repeats=args.repeats), timed(reference, config, data, repeats=args.repeats))
        finals[label] = times[label][0][1]
    print("| strategy | functional_nn (s) | flax+optax (s) | ours / reference |")
    print("|---|---|---|---|")
    for label, ((ours_s, _), (ref_s, _)) in times.items():
        print(f"| {label} | {ours_s:.2f} | {ref_s:.2f} | {ours_s / ref_s:.2f} |")
    a, b, c = (times[label][0][0] for label, _, _ in strategies)
    ra, rb, rc = (times[label][1][0] for label, _, _ in strategies)
    print()
    print(f"speedup of (c) over (a): ours {a / c:.1f}x (target >= 4x: {'met' if a / c >= 4 else 'NOT met'}), flax+optax {ra / rc:.1f}x")
    print(f"speedup of (c) over (b): ours {b / c:.2f}x (target >= 1: {'met' if c <= b else 'NOT met'}), flax+optax {rb / rc:.2f}x")
    small = [i for i, lr in enumerate(LEARNING_RATES) if lr <= 1e-3]
    spread = max(abs(finals[strategies[0][0]][i] - finals[strategies[2][0]][i]) for i in small)
    print(f"largest |final val_loss (a) - (c)| over the {len(small)} settings with lr <= 1e-3: {spread:.2e} (the same trainings)")


if __name__ == "__main__":
    main()
