"""Training step, epoch, evaluation and fit: each against a reference (optax,
jax.grad of a hand-written forward, a Python loop, NumPy), plus learning on the
synthetic sets and digits, early stopping, NaN handling and seeding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import data, layers, losses, optim
from functional_nn.data import Split
from functional_nn.train import (
    EarlyStopping,
    NonFiniteLossError,
    TrainState,
    fit,
    init_train_state,
    load_training_checkpoint,
    make_epoch,
    make_evaluate,
    make_train_epoch,
    make_train_step,
)


def _mlp(hidden: int, classes: int, rate: float = 0.0):
    return layers.serial(layers.dense(hidden), layers.relu, layers.dropout(rate), layers.dense(classes))


def _toy_classification(n=32, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --------------------------------------------------------------------------
# step and epoch


def test_train_step_is_gradient_descent_on_the_minibatch_divergence():
    x, y = _toy_classification(8)
    model = layers.serial(layers.dense(4), layers.relu, layers.dense(3))
    state = init_train_state(model, optim.sgd(0.1), jax.random.key(0), x.shape)
    new_state, metrics = jax.jit(make_train_step(model, losses.softmax_cross_entropy, optim.sgd(0.1)))(state, (x, y))

    def reference_loss(params):
        first, _, second = params
        logits = jax.nn.relu(x @ first["w"] + first["b"]) @ second["w"] + second["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), grads = jax.jit(jax.value_and_grad(reference_loss, has_aux=True))(state.params)
    expected = jax.tree.map(lambda w, g: w - 0.1 * g, state.params, grads)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert float(metrics["accuracy"]) == np.mean(np.argmax(np.asarray(logits), -1) == y)
    assert int(new_state.step) == 1 and not np.array_equal(
        jax.random.key_data(new_state.key), jax.random.key_data(state.key)
    )


def test_augmentation_is_applied_inside_the_step():
    x, y = _toy_classification(8)
    model = layers.serial(layers.dense(3))
    state = init_train_state(model, optim.sgd(0.0), jax.random.key(0), x.shape)
    step = make_train_step(model, losses.softmax_cross_entropy, optim.sgd(0.0), augment=lambda key, xb: xb + 10.0)
    _, metrics = jax.jit(step)(state, (x, y))  # one compilation, not one per operation
    logits, _ = model.apply(state.params, state.model_state, x + 10.0, train=False)
    np.testing.assert_allclose(metrics["loss"], losses.softmax_cross_entropy(logits, y), rtol=1e-6)


def test_epoch_scan_equals_a_python_loop_over_the_shuffled_batches():
    x, y = _toy_classification(30)
    model = _mlp(8, 3, rate=0.3)
    optimizer = optim.adam(1e-2)
    step = make_train_step(model, losses.softmax_cross_entropy, optimizer)
    state = init_train_state(model, optimizer, jax.random.key(1), x.shape)
    got_state, got_metrics = jax.jit(make_epoch(step, 8))(state, x, y)

    shuffle_key, key = jax.random.split(state.key)
    indices = np.asarray(data.epoch_batch_indices(shuffle_key, len(x), 8))
    loop_state, losses_seen = state._replace(key=key), []
    for batch in indices:
        loop_state, metrics = jax.jit(step)(loop_state, (x[batch], y[batch]))
        losses_seen.append(float(metrics["loss"]))
    for got, want in zip(jax.tree.leaves(got_state.params), jax.tree.leaves(loop_state.params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_metrics["loss"], np.mean(losses_seen), rtol=1e-5)
    assert int(got_state.step) == 3 and int(got_metrics["first_nonfinite_step"]) == -1


def test_epoch_vmaps_over_traced_learning_rates():
    x, y = _toy_classification(32)
    model = _mlp(8, 3, rate=0.2)

    def one_epoch(learning_rate):
        optimizer = optim.adam(learning_rate)
        state = init_train_state(model, optimizer, jax.random.key(2), x.shape)
        state, metrics = make_epoch(make_train_step(model, losses.softmax_cross_entropy, optimizer), 8)(state, x, y)
        return state.params, metrics["loss"]

    rates = jnp.array([1e-3, 3e-2])
    params, loss = jax.jit(jax.vmap(one_epoch))(rates)
    for i, rate in enumerate([1e-3, 3e-2]):
        single_params, single_loss = jax.jit(one_epoch)(rate)
        np.testing.assert_allclose(loss[i], single_loss, rtol=1e-5)
        for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(single_params)):
            np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-6)


def _order_recording_step(train_state, batch):
    """A probe 'step' that writes each batch's example ids into the state."""
    _, ids = batch
    order = train_state.params.at[train_state.step % train_state.params.shape[0]].set(ids)
    return train_state._replace(params=order, step=train_state.step + 1), {"loss": jnp.zeros(())}


_record_epoch = jax.jit(make_epoch(_order_recording_step, 4))


def _orders(seed: int, epochs: int = 2):
    ids = np.arange(10, dtype=np.int32)
    state = TrainState(jnp.zeros((2, 4), jnp.int32), (), (), jnp.zeros((), jnp.int32), jax.random.key(seed))
    orders = []
    for _ in range(epochs):
        state, _ = _record_epoch(state, np.zeros((10, 1), np.float32), ids)
        orders.append(np.asarray(state.params).copy())
    return orders


def test_same_seed_same_shuffles_different_seed_different_shuffles():
    first, again, other = _orders(0), _orders(0), _orders(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])  # a new permutation each epoch
    assert all(len(set(order.ravel().tolist())) == 8 for order in first)


# --------------------------------------------------------------------------
# evaluation


def test_evaluate_matches_the_full_batch_computation():
    x, y = _toy_classification(30)
    model = layers.serial(layers.dense(8), layers.batchnorm(), layers.relu, layers.dense(3))
    state = init_train_state(model, optim.sgd(0.1), jax.random.key(3), x.shape)
    state, _ = make_train_epoch(model, losses.softmax_cross_entropy, optim.sgd(0.1), 10, donate=False)(state, x, y)
    logits, _ = model.apply(state.params, state.model_state, x, train=False)
    logits = np.asarray(logits, np.float64)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    for chunk_size in (1024, 7):  # one padded chunk; several chunks, the last padded
        metrics = make_evaluate(model, losses.softmax_cross_entropy, chunk_size=chunk_size)(state, x, y)
        assert metrics["loss"] == pytest.approx(-log_softmax[np.arange(len(y)), y].mean(), rel=1e-5)
        assert metrics["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))


# --------------------------------------------------------------------------
# fit


def _fit(splits, model, loss, optimizer, *, epochs, batch_size, seed=0, **kwargs):
    state = init_train_state(model, optimizer, jax.random.key(seed), (batch_size,) + splits.train.x.shape[1:])
    epoch = make_train_epoch(model, loss, optimizer, batch_size)
    return fit(
        state, epoch, make_evaluate(model, loss), splits.train, splits.val, epochs=epochs, progress=False, **kwargs
    )


def test_loss_falls_and_accuracy_rises_on_spirals():
    splits = data.spirals(100, 3, 0.1, seed=0)
    _, history = _fit(splits, _mlp(64, 3), losses.softmax_cross_entropy, optim.adam(1e-2), epochs=30, batch_size=32)
    first, last = history[0], history[-1]
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert last["val_accuracy"] > first["val_accuracy"] and last["val_accuracy"] >= 0.85


def test_loss_falls_on_the_noisy_function():
    splits = data.noisy_function(256, 0.1, seed=0)
    _, history = _fit(splits, _mlp(32, 1), losses.l2_divergence, optim.adam(1e-2), epochs=40, batch_size=32)
    assert "val_accuracy" not in history[-1]
    assert history[-1]["val_loss"] < 0.2 * history[0]["val_loss"]
    assert history[-1]["val_loss"] < 0.02  # noise floor ½σ² = 0.005


def test_fit_on_digits_reaches_95_percent_validation_accuracy():
    splits = data.load_digits(seed=0, val_fraction=0.25)
    model = layers.serial(layers.dense(256), layers.relu, layers.dense(10))
    _, history = _fit(splits, model, losses.softmax_cross_entropy, optim.adam(3e-3), epochs=5, batch_size=32)
    assert max(r["val_accuracy"] for r in history) >= 0.95


@functools.lru_cache(maxsize=None)
def _scripted_setup():
    """(initial state, epoch) shared by the early-stopping tests: compiled once."""
    model = _mlp(4, 3)
    state = init_train_state(model, optim.sgd(0.1), jax.random.key(0), (8, 5))
    return state, make_train_epoch(model, losses.softmax_cross_entropy, optim.sgd(0.1), 8)


def _scripted_fit(values, settings, epochs=12):
    """Fit whose validation metric follows ``values``; records the params seen at each epoch."""
    x, y = _toy_classification(16)
    initial, epoch = _scripted_setup()
    state = jax.tree.map(jnp.copy, initial)  # the epoch donates its input state
    snapshots = []

    def scripted_evaluate(train_state, xv, yv):
        snapshots.append(jax.tree.map(np.array, jax.device_get(train_state.params)))
        value = values[len(snapshots) - 1]
        return {"loss": value, "accuracy": value}

    state, history = fit(
        state,
        epoch,
        scripted_evaluate,
        Split(x, y),
        Split(x, y),
        epochs=epochs,
        early_stopping=settings,
        progress=False,
        log=lambda m: None,
    )
    return state, history, snapshots


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best():
    values = [1.0, 0.8, 0.85, 0.7, 0.71, 0.72, 0.69, 0.5, 0.4]
    state, history, snapshots = _scripted_fit(values, EarlyStopping(patience=3, min_delta=0.02))
    # 0.8 and 0.7 improve by more than δ = 0.02; 0.69 does not (0.69 > 0.7 − 0.02): three misses after epoch 4
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["is_best"] for r in history] == [True, True, False, True, False, False, False]
    assert _leaves_equal(state.params, snapshots[3])
    assert not _leaves_equal(state.params, snapshots[-1])


def test_early_stopping_on_accuracy_maximises_and_can_keep_the_last():
    values = [0.5, 0.6, 0.55, 0.58, 0.9]
    settings = EarlyStopping(patience=2, monitor="val_accuracy", restore_best=False)
    state, history, snapshots = _scripted_fit(values, settings)
    assert len(history) == 4 and [r["is_best"] for r in history] == [True, True, False, False]
    assert _leaves_equal(state.params, snapshots[-1])


def _nan_after(update_index: int):
    """Multiplies the ``update_index``-th update (0-based) by NaN."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        factor = jnp.where(count == update_index, jnp.nan, 1.0)
        return jax.tree.map(lambda u: u * factor, updates), count + 1

    return optax.GradientTransformation(init, update)


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    x, y = _toy_classification(32)
    model = _mlp(4, 3)
    optimizer = optim.chain(optim.sgd(0.1), _nan_after(5))  # 4 steps per epoch: loss NaN from global step 6
    path = str(tmp_path / "ck.npz")

    initial = init_train_state(model, optimizer, jax.random.key(0), (8, 5))

    def fresh():  # a copy: the epoch donates its input state
        return jax.tree.map(jnp.copy, initial)

    epoch = make_train_epoch(model, losses.softmax_cross_entropy, optimizer, 8)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 2 of the epoch \\(global step 6\\)") as raised:
        fit(fresh(), epoch, None, Split(x, y), epochs=5, checkpoint_path=path, progress=False)
    assert (raised.value.epoch, raised.value.step, raised.value.checkpoint_path) == (2, 2, path)
    kept = load_training_checkpoint(path, fresh())
    after_one_epoch, _ = epoch(fresh(), x, y)
    assert kept.epoch == 1 and _leaves_equal(kept.train_state.params, after_one_epoch.params)


def test_same_seed_same_history():
    splits = data.spirals(30, 3, 0.1, seed=1)
    model, optimizer = _mlp(8, 3, rate=0.1), optim.adam(1e-2)
    epoch = make_train_epoch(model, losses.softmax_cross_entropy, optimizer, 16)
    evaluate = make_evaluate(model, losses.softmax_cross_entropy)

    init = jax.jit(lambda key: init_train_state(model, optimizer, key, (16, 2)))  # one compilation for all runs

    def run(seed):
        state = init(jax.random.key(seed))
        _, history = fit(state, epoch, evaluate, splits.train, splits.val, epochs=3, progress=False)
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in history]

    assert run(0) == run(0)
    assert run(0) != run(1)


# --------------------------------------------------------------------------
# the label rule: one home (losses), by shape


def test_one_hot_targets_report_the_same_accuracy_as_class_indices():
    """The step and evaluation call ``losses.accuracy``: one-hot targets report
    accuracy too, equal to the NumPy argmax reference and to integer labels'."""
    x, y = _toy_classification(12)
    one_hot = np.eye(3, dtype=np.float32)[y]
    model = layers.serial(layers.dense(4), layers.relu, layers.dense(3))
    state = init_train_state(model, optim.sgd(0.1), jax.random.key(0), x.shape)
    outputs, _ = model.apply(state.params, state.model_state, x, train=False)
    reference = float(np.mean(np.argmax(np.asarray(outputs), axis=-1) == y))
    evaluate = make_evaluate(model, losses.softmax_cross_entropy, chunk_size=5)
    by_index, by_one_hot = evaluate(state, x, y), evaluate(state, x, one_hot)
    assert by_index["accuracy"] == pytest.approx(reference) and by_one_hot["accuracy"] == pytest.approx(reference)
    assert by_index["loss"] == pytest.approx(by_one_hot["loss"], rel=1e-6)
    step = jax.jit(make_train_step(model, losses.softmax_cross_entropy, optim.sgd(0.0)))
    _, metrics_index = step(state, (x, y))
    _, metrics_one_hot = step(state, (x, one_hot))
    assert float(metrics_one_hot["accuracy"]) == float(metrics_index["accuracy"])


def test_regression_targets_report_no_accuracy():
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)
    d = x[:, :1] * 2.0
    model = layers.dense(1)
    state = init_train_state(model, optim.sgd(0.1), jax.random.key(0), x.shape)
    _, metrics = jax.jit(make_train_step(model, losses.l2_divergence, optim.sgd(0.1)))(state, (x, d))
    assert set(metrics) == {"loss"}
    assert set(make_evaluate(model, losses.l2_divergence)(state, x, d)) == {"loss"}
