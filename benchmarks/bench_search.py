"""Grid search speed: 16 learning rates x 5 epochs of the digits MLP (configs/digits_mlp.yaml).

Three ways to run the same 16 trainings, compile time included in each:

  (a) the loop users write: a fresh optimizer and a fresh compile per setting
      (``make_train_epoch`` + ``fit`` for each learning rate);
  (b) a sequential loop over ONE compiled epoch that takes the learning rate as
      a traced argument (``fit`` for each learning rate, no recompiles; the
      initial state built eagerly, as (c) builds it);
  (c) our vmapped grid: ``grid_search``, all 16 settings in one compiled program.

Every way evaluates on the validation split after each epoch, selects the
setting with the lowest validation loss and evaluates it once on the test split. The same three
strategies are also written with flax (linen) + optax, the reference, and run
in the same process, so the ratios are measured under the same load.

    python benchmarks/bench_search.py [--repeats 3] [--repeats-a 1] [--epochs 5]

Targets (issue 5): (c) >= 4x faster than (a); (c) no slower than (b).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_nn.experiment import build_data, build_early_stopping, build_loss, build_model, build_optimizer, load_config
from functional_nn.train import TrainState, fit, init_train_state, make_epoch, make_evaluate, make_train_epoch, make_train_step
from functional_nn.experiment.search import grid_search

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "digits_mlp.yaml")
LEARNING_RATES = [float(v) for v in np.geomspace(1e-4, 1e-1, 16)]


# --------------------------------------------------------------------------
# ours


class Trained(NamedTuple):
    final_val_loss: float
    best_val_loss: float
    state: Any
    evaluate: Callable


class Outcome(NamedTuple):
    """What every strategy returns: each setting's final validation loss, the
    setting selected on validation data and its test accuracy."""

    final_val_losses: list
    selected: int
    test_accuracy: float


def _fit(config, data, train_state, epoch_fn, evaluate) -> Trained:
    state, history = fit(train_state, epoch_fn, evaluate, data.train, data.val, epochs=config.training.epochs,
                         early_stopping=build_early_stopping(config.training), progress=False, log=lambda _: None)
    return Trained(history[-1]["val_loss"], min(r["val_loss"] for r in history), state, evaluate)


def _select_and_test(trained: list, data) -> Outcome:
    """The grid search's last step, as (c) does it: best on validation, then one test evaluation."""
    selected = int(np.argmin([t.best_val_loss for t in trained]))
    chosen = trained[selected]
    test = chosen.evaluate(chosen.state, data.test.x, data.test.y)
    return Outcome([t.final_val_loss for t in trained], selected, test["accuracy"])


def ours_fresh_compile_per_setting(config, data) -> Outcome:
    """(a): for each setting, build the optimizer and compile its epoch and evaluation."""
    trained = []
    for lr in LEARNING_RATES:
        model, loss = build_model(config.model), build_loss(config.loss)
        optimizer = build_optimizer(dataclasses.replace(config.optimizer, learning_rate=lr))
        batch = config.training.batch_size
        state = init_train_state(model, optimizer, jax.random.key(config.training.seed), (batch,) + data.train.x.shape[1:])
        trained.append(_fit(config, data, state, make_train_epoch(model, loss, optimizer, batch), make_evaluate(model, loss)))
    return _select_and_test(trained, data)


def eager_init(model, optimizer, key, input_shape) -> TrainState:
    """``init_train_state`` run op by op, as (c) initialises: eager JAX caches the
    random-number kernels per shape, so (b) and (c) pay the same for the init."""
    init_key, train_key = jax.random.split(key)
    _, params, model_state = model.init(init_key, input_shape)
    return TrainState(params, model_state, optimizer.init(params), jnp.zeros((), jnp.int32), train_key)


def ours_one_program_sequential(config, data):
    """(b): one compiled epoch with the learning rate as a traced argument, looped over settings."""
    model, loss, batch = build_model(config.model), build_loss(config.loss), config.training.batch_size
    optimizer_for = lambda lr: build_optimizer(config.optimizer, {"learning_rate": lr})  # noqa: E731
    input_shape = (batch,) + data.train.x.shape[1:]
    epoch = jax.jit(lambda lr, state, x, y: make_epoch(make_train_step(model, loss, optimizer_for(lr)), batch)(state, x, y), donate_argnums=(1,))
    evaluate = make_evaluate(model, loss)
    trained = []
    for lr in LEARNING_RATES:
        lr = jnp.float32(lr)
        state = eager_init(model, optimizer_for(lr), jax.random.key(config.training.seed), input_shape)
        trained.append(_fit(config, data, state, functools.partial(epoch, lr), evaluate))
    return _select_and_test(trained, data)


def ours_vmapped_grid(config, data) -> Outcome:
    """(c): every setting in one compiled program (``jax.vmap`` over the learning rate)."""
    search = dataclasses.replace(config, search={"optimizer.learning_rate": LEARNING_RATES})
    result = grid_search(search, data=data, progress=False)
    return Outcome([history[-1]["val_loss"] for history in result.histories], result.best_index, result.test_metrics["test_accuracy"])


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
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), jnp.mean(jnp.argmax(logits, -1) == y)

    return init, epoch, evaluate


def _flax_setup(config, data):
    model = flax_mlp(config)
    x, y, vx, vy = (jax.device_put(np.asarray(a)) for a in (data.train.x, data.train.y, data.val.x, data.val.y))
    return flax_functions(model, config.training.batch_size, x.shape[1]), (x, y, vx, vy)


def _flax_select_and_test(trained: list, data) -> Outcome:
    """Best validation loss over epochs selects; the selected setting's last state is tested once."""
    selected = int(np.argmin([best for _, best, _, _ in trained]))
    _, _, state, evaluate = trained[selected]
    _, accuracy = evaluate(state, jax.device_put(data.test.x), jax.device_put(data.test.y))
    return Outcome([final for final, _, _, _ in trained], selected, float(accuracy))


def flax_fresh_compile_per_setting(config, data) -> Outcome:
    trained = []
    for lr in LEARNING_RATES:
        (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)  # new closures: fresh compiles
        init, epoch, evaluate = jax.jit(functools.partial(init, lr)), jax.jit(functools.partial(epoch, lr)), jax.jit(evaluate)
        state, losses = init(jax.random.key(config.training.seed)), []
        for _ in range(config.training.epochs):
            state, _ = epoch(state, x, y)
            losses.append(float(evaluate(state, vx, vy)[0]))
        trained.append((losses[-1], min(losses), state, evaluate))
    return _flax_select_and_test(trained, data)


def flax_one_program_sequential(config, data) -> Outcome:
    (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)
    init, epoch, evaluate = jax.jit(init), jax.jit(epoch), jax.jit(evaluate)
    trained = []
    for lr in LEARNING_RATES:
        lr = jnp.float32(lr)
        state, losses = init(lr, jax.random.key(config.training.seed)), []
        for _ in range(config.training.epochs):
            state, _ = epoch(lr, state, x, y)
            losses.append(float(evaluate(state, vx, vy)[0]))
        trained.append((losses[-1], min(losses), state, evaluate))
    return _flax_select_and_test(trained, data)


def flax_vmapped_grid(config, data) -> Outcome:
    (init, epoch, evaluate), (x, y, vx, vy) = _flax_setup(config, data)
    single_evaluate = jax.jit(evaluate)
    init = jax.jit(jax.vmap(init, in_axes=(0, None)))
    epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None)))
    evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
    lrs = jnp.asarray(LEARNING_RATES, jnp.float32)
    state, losses = init(lrs, jax.random.key(config.training.seed)), []
    for _ in range(config.training.epochs):
        state, _ = epoch(lrs, state, x, y)
        losses.append(np.asarray(evaluate(state, vx, vy)[0]))
    losses = np.stack(losses)
    trained = [(float(losses[-1, i]), float(losses[:, i].min()), jax.tree.map(lambda a, i=i: a[i], state), single_evaluate) for i in range(len(lrs))]
    return _flax_select_and_test(trained, data)


# --------------------------------------------------------------------------


def time_once(fn, *args) -> tuple:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def interleaved_best_times(strategies, config, data, repeats: int, repeats_a: int) -> tuple:
    """Best wall time of each (strategy, implementation) over its repeats, the
    repeats interleaved (a, b, c, a, b, c, ...) so that a change in the machine's
    load hits every strategy alike; every run compiles afresh."""
    best, results = {}, {}
    for round_index in range(repeats):
        for label, ours, reference in strategies:
            if label.startswith("(a)") and round_index >= repeats_a:
                continue
            for name, fn in (("ours", ours), ("reference", reference)):
                seconds, result = time_once(fn, config, data)
                best[label, name] = min(best.get((label, name), float("inf")), seconds)
                results[label, name] = result
    return best, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of (b) and (c); the best time is reported")
    parser.add_argument("--repeats-a", type=int, default=1, help="runs of (a) (slow)")
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
    print(f"{len(LEARNING_RATES)} learning rates x {args.epochs} epochs, digits MLP ({os.path.relpath(CONFIG)}), "
          f"{len(data.train.x)} training examples, batch {config.training.batch_size}; jax {jax.__version__} on "
          f"{jax.devices()[0].platform} ({os.cpu_count()} CPU cores); compile included; best of {args.repeats_a} run(s) "
          f"for (a), {args.repeats} interleaved runs for (b) and (c)\n")
    best, results = interleaved_best_times(strategies, config, data, args.repeats, args.repeats_a)
    print("| strategy | functional_nn (s) | flax+optax (s) | ours / reference |")
    print("|---|---|---|---|")
    for label, _, _ in strategies:
        ours_s, ref_s = best[label, "ours"], best[label, "reference"]
        print(f"| {label} | {ours_s:.2f} | {ref_s:.2f} | {ours_s / ref_s:.2f} |")
    (a, ra), (b, rb), (c, rc) = ((best[label, "ours"], best[label, "reference"]) for label, _, _ in strategies)
    print()
    print(f"speedup of (c) over (a): ours {a / c:.1f}x (target >= 4x: {'met' if a / c >= 4 else 'NOT met'}), flax+optax {ra / rc:.1f}x")
    print(f"speedup of (c) over (b): ours {b / c:.2f}x (target >= 1: {'met' if c <= b else 'NOT met'}), flax+optax {rb / rc:.2f}x")
    small = [i for i, lr in enumerate(LEARNING_RATES) if lr <= 1e-3]
    outcome_a, outcome_c = results[strategies[0][0], "ours"], results[strategies[2][0], "ours"]
    spread = max(abs(outcome_a.final_val_losses[i] - outcome_c.final_val_losses[i]) for i in small)
    print(f"largest |final val_loss (a) - (c)| over the {len(small)} settings with lr <= 1e-3: {spread:.2e} (the same trainings)")
    for label, _, _ in strategies:
        outcome = results[label, "ours"]
        print(f"{label}: selected lr {LEARNING_RATES[outcome.selected]:.3g}, test accuracy {outcome.test_accuracy:.4f}")


if __name__ == "__main__":
    main()
