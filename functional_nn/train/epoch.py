"""One epoch as one ``lax.scan`` over freshly shuffled minibatches.

``epoch(train_state, x, d)`` is pure: the shuffle key comes out of the train
state, so the same state gives the same epoch, and grid search can
``jax.vmap`` it over many train states (hyperparameters traced) while data
parallelism can ``jax.jit`` it with shardings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_nn.data.batching import shuffled_batches
from functional_nn.train.state import TrainState
from functional_nn.train.step import make_train_step


def first_nonfinite_step(losses: jax.Array) -> jax.Array:
    """Index (within the epoch) of the first step whose loss is NaN/±Inf, or −1."""
    bad = ~jnp.isfinite(losses)
    return jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32)


def summarize_steps(step_metrics: dict) -> dict:
    """Per-step metrics (arrays of length K) to the epoch's: each metric's mean
    over the K steps, plus ``first_nonfinite_step``."""
    summary = {name: jnp.mean(values) for name, values in step_metrics.items()}
    summary["first_nonfinite_step"] = first_nonfinite_step(step_metrics["loss"])
    return summary


def make_epoch(step, batch_size: int, *, unroll: int = 1, batch_sharding=None):
    """A pure ``epoch(train_state, x, d) -> (train_state, metrics)``.

    Splits the state's key into a shuffle key and the key carried on, cuts a
    fresh permutation of (x, d) into ⌊N/B⌋ minibatches (see
    ``functional_nn.data.batching``) and scans ``step`` over them.
    ``batch_sharding`` (data parallelism, see ``functional_nn.train.parallel``)
    constrains the stacked minibatches (K, B, ...), e.g. to split each
    minibatch's B examples over devices.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")

    def epoch(train_state: TrainState, x, targets):
        shuffle_key, key = jax.random.split(train_state.key)
        batches = shuffled_batches(shuffle_key, x, targets, batch_size)
        if batch_sharding is not None:
            batches = jax.lax.with_sharding_constraint(batches, batch_sharding)
        train_state, step_metrics = jax.lax.scan(step, train_state._replace(key=key), batches, unroll=unroll)
        return train_state, summarize_steps(step_metrics)

    return epoch


def compile_epoch(epoch, *, donate: bool = True):
    """``jax.jit`` of an epoch, donating the incoming train state's buffers
    (the caller must not use that state again; copy what it wants to keep)."""
    return jax.jit(epoch, donate_argnums=(0,) if donate else ())


def make_train_epoch(model, loss, optimizer, batch_size: int, *, augment=None, donate: bool = True, unroll: int = 1):
    """The compiled epoch for ``model`` / ``loss`` / ``optimizer`` (see :func:`make_train_step`)."""
    step = make_train_step(model, loss, optimizer, augment=augment)
    return compile_epoch(make_epoch(step, batch_size, unroll=unroll), donate=donate)
