"""The training state: everything a training run carries from step to step."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class TrainState(NamedTuple):
    """A pytree: the network's ``params`` and ``model_state`` (e.g. batch norm's
    running statistics), the optimizer's ``opt_state``, the number of steps taken
    ``step`` (int32 scalar) and the PRNG ``key`` that every later random choice
    (shuffles, dropout masks, augmentation) is split from."""

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


def _initialise(model, optimizer, input_shape, key) -> TrainState:
    init_key, train_key = jax.random.split(key)
    _, params, model_state = model.init(init_key, input_shape)
    return TrainState(
        params=params,
        model_state=model_state,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        key=train_key,
    )


def init_train_state(model, optimizer, key: jax.Array, input_shape) -> TrainState:
    """Initialise the network for inputs of ``input_shape`` (batch axis included)
    and the optimizer; ``key`` is split into the initialisation key and the
    state's own key.

    Runs as one compiled function (one compilation per call instead of one per
    initializer op; nothing is cached at module level, so no model or
    optimizer is kept alive after the call); works under ``jax.vmap`` /
    ``jax.jit`` too, e.g. with an optimizer built from traced hyperparameters.
    """
    shape = tuple(input_shape)
    return jax.jit(lambda k: _initialise(model, optimizer, shape, k))(key)
