"""Shuffling into minibatches on the device (pure, jit-able).

The notes ask for "better randomization of training data order": each epoch
draws a fresh permutation π of the N examples and cuts it into
K = ⌊N / B⌋ minibatches of B examples, batch k being {π(kB), …, π(kB + B − 1)}.
When B does not divide N, the N − KB examples left out are π's last ones, so a
different random subset is left out each epoch (never silently the same
examples), and every example is seen with probability KB / N per epoch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def num_batches(num_examples: int, batch_size: int) -> int:
    """K = ⌊N / B⌋, with a clear error when there is not a single full batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1")
    if num_examples < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {num_examples} training examples")
    return num_examples // batch_size


def epoch_batch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """The example indices of each minibatch of one epoch, shape (K, B)."""
    k = num_batches(num_examples, batch_size)
    permutation = jax.random.permutation(key, num_examples)
    return permutation[: k * batch_size].reshape(k, batch_size)


def shuffled_batches(key: jax.Array, x, y, batch_size: int):
    """(x, y) gathered into a fresh random order of minibatches: shapes (K, B, ...).

    ``x`` and ``y`` may be arrays or pytrees of arrays with the same leading axis.
    """
    n = jax.tree.leaves(x)[0].shape[0]
    indices = epoch_batch_indices(key, n, batch_size)
    gather = lambda a: jnp.take(a, indices, axis=0)  # noqa: E731
    return jax.tree.map(gather, x), jax.tree.map(gather, y)
