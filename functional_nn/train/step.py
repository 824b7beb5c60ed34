"""One training step and evaluation, as pure functions.

A training step on minibatch (X, d) of B examples computes the minibatch
divergence  Div(MB) = (1/B) Σ_t Div(Y_t, d_t)  in training mode (batch
statistics, dropout on), its gradient ∂Div/∂W by reverse-mode autodiff, and
lets the optimizer turn the gradient into the update: W ← W + Δ(∇W, state).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_nn import losses
from functional_nn.train.state import TrainState

Metrics = dict


def make_train_step(model, loss: Callable, optimizer: optax.GradientTransformation, *, augment=None):
    """A pure ``step(train_state, (x, d)) -> (train_state, metrics)``.

    ``model`` is a ``Layer`` (``apply(params, state, x, *, train, key)``),
    ``loss(outputs, targets)`` the minibatch-averaged divergence, ``optimizer``
    an optax ``GradientTransformation`` and ``augment(key, x)`` an optional
    keyed augmentation. Metrics: ``loss`` and, for class labels (indices or
    one-hot / probability targets; :func:`functional_nn.losses.has_class_labels`),
    ``accuracy`` (:func:`functional_nn.losses.accuracy`). The state's key is split each step into the next state key,
    the dropout key and the augmentation key.
    """

    def step(train_state: TrainState, batch):
        x, targets = batch
        next_key, dropout_key, augment_key = jax.random.split(train_state.key, 3)
        if augment is not None:
            x = augment(augment_key, x)

        def divergence(params):
            outputs, model_state = model.apply(params, train_state.model_state, x, train=True, key=dropout_key)
            return loss(outputs, targets), (outputs, model_state)

        (value, (outputs, model_state)), grads = jax.value_and_grad(divergence, has_aux=True)(train_state.params)
        updates, opt_state = optimizer.update(grads, train_state.opt_state, train_state.params)
        new_state = TrainState(
            params=optax.apply_updates(train_state.params, updates),
            model_state=model_state,
            opt_state=opt_state,
            step=train_state.step + 1,
            key=next_key,
        )
        metrics = {"loss": value}
        if losses.has_class_labels(outputs, targets):
            metrics["accuracy"] = losses.accuracy(outputs, targets)
        return new_state, metrics

    return step


def make_eval_sums(model, loss: Callable):
    """A pure ``eval_sums(params, model_state, x, d, mask) -> sums`` in eval mode.

    Sums over the examples with mask 1 (padding has mask 0): ``loss_sum`` =
    Σ_t Div(Y_t, d_t), ``count`` and, for class labels, ``correct``. The loss is
    applied to each example alone, which is exact because evaluation treats
    examples independently (batch norm uses its running statistics).
    """

    def per_example_divergence(output, target):
        return loss(output[None], target[None])

    def per_example_correct(output, target):
        return losses.accuracy(output[None], target[None])

    def eval_sums(params, model_state, x, targets, mask):
        outputs, _ = model.apply(params, model_state, x, train=False)
        divergences = jax.vmap(per_example_divergence)(outputs, targets)
        sums = {"loss_sum": jnp.sum(mask * divergences), "count": jnp.sum(mask)}
        if losses.has_class_labels(outputs, targets):
            sums["correct"] = jnp.sum(mask * jax.vmap(per_example_correct)(outputs, targets))
        return sums

    return eval_sums


def chunk_rows(x, targets, size: int) -> tuple:
    """(x, d) cut on the host into C = ⌈n / size⌉ chunks of exactly ``size``
    rows, the last one zero-padded: ``(x (C, size, ...), d (C, size, ...),
    mask (C, size))`` with mask 1 for the n examples and 0 for the padding."""
    x, targets = np.asarray(x), np.asarray(targets)
    chunks = -(-len(x) // size)

    def pad(a):
        a = np.pad(a, [(0, chunks * size - len(a))] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((chunks, size) + a.shape[1:])

    return pad(x), pad(targets), pad(np.ones(len(x), np.float32))


def evaluate_host_chunks(eval_chunk: Callable, chunks) -> Metrics:
    """Metrics over host chunks from :func:`chunk_rows`: one call of ``eval_chunk(x,
    d, mask) -> {loss_sum, count, correct?}`` per chunk (a function compiled for one
    chunk shape serves data sets of every size), the sums added on the host, then
    divided by the count n (Python floats, :func:`summarize_sums`)."""
    totals = None
    for chunk in zip(*chunks):
        sums = jax.device_get(eval_chunk(*chunk))
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    return summarize_sums(totals)


def evaluate_device_chunks(eval_chunk: Callable, chunks) -> Metrics:
    """The same metrics inside a compiled program (chunks on the device or traced):
    one ``lax.scan`` over the chunk axis (no loop for a single chunk); the
    metrics stay arrays."""
    first = [a[0] for a in chunks]
    if chunks[-1].shape[0] == 1:
        return mean_metrics(eval_chunk(*first))

    def add_chunk(totals, chunk):
        return jax.tree.map(jnp.add, totals, eval_chunk(*chunk)), None

    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: eval_chunk(*first)))
    totals, _ = jax.lax.scan(add_chunk, zeros, tuple(chunks))
    return mean_metrics(totals)


def make_evaluate(model, loss: Callable, *, chunk_size: int = 1024):
    """``evaluate(train_state, x, d) -> {"loss", "accuracy"?}`` (Python floats).

    Runs the data in chunks of exactly ``chunk_size`` examples, the last one
    padded and masked, so one compiled function serves data sets of every size
    (validation and test alike).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be >= 1")
    eval_sums = jax.jit(make_eval_sums(model, loss))

    def evaluate(train_state: TrainState, x, targets) -> Metrics:
        if len(x) == 0:
            raise ValueError("cannot evaluate on an empty data set")
        params, model_state = train_state.params, train_state.model_state
        return evaluate_host_chunks(
            lambda *chunk: eval_sums(params, model_state, *chunk), chunk_rows(x, targets, chunk_size)
        )

    return evaluate


def mean_metrics(sums) -> Metrics:
    """Sums from ``eval_sums`` (arrays or numbers) to means: loss = Σ Div / n, accuracy = Σ correct / n."""
    metrics = {"loss": sums["loss_sum"] / sums["count"]}
    if "correct" in sums:
        metrics["accuracy"] = sums["correct"] / sums["count"]
    return metrics


def summarize_sums(sums) -> Metrics:
    """Sums from ``eval_sums`` to means: loss = Σ Div / n, accuracy = Σ correct / n."""
    return mean_metrics({name: float(value) for name, value in jax.device_get(sums).items()})
