"""Dropout: each unit is kept with probability α = 1 − rate, independently per example.

The notes' two implementations, which agree in expectation:

- ``"scale_at_test"``: training uses y = m ⊙ x, m_i ~ Bernoulli(α); at test
  the expected output α x is used. Equivalently the test-time α is pushed
  into the next layer's weights: W_test = α W_trained (``fold_into_dense``).
- ``"inverted"``: training uses y = m ⊙ x / α (the activation α⁻¹σ(·)), and
  test time is the identity, with weights unchanged.

Plain functions: ``keep_mask``, ``dropout_train``, ``dropout_eval``,
``fold_into_dense``. The module is callable: ``layers.dropout(0.2)`` builds the layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functional_nn._validation import check_in_range, is_concrete
from functional_nn.layers._checks import check_choice
from functional_nn.layers.base import LAYERS, Layer, callable_module

MODES = ("inverted", "scale_at_test")


def keep_probability(rate):
    """α = 1 − rate."""
    return 1.0 - rate


def keep_mask(key, rate, shape):
    """m with m_i ~ Bernoulli(α), α = 1 − rate (True = kept)."""
    return jax.random.bernoulli(key, keep_probability(rate), shape)


def dropout_train(key, x, rate, mode: str = "inverted"):
    """Training-mode dropout: m ⊙ x (``scale_at_test``) or m ⊙ x / α (``inverted``)."""
    check_choice("mode", mode, MODES)
    kept = jnp.where(keep_mask(key, rate, x.shape), x, jnp.zeros((), x.dtype))
    if mode == "inverted":
        return kept / jnp.asarray(keep_probability(rate), x.dtype)
    return kept


def dropout_eval(x, rate, mode: str = "inverted"):
    """Test-time dropout: the identity (``inverted``) or α x (``scale_at_test``)."""
    check_choice("mode", mode, MODES)
    if mode == "inverted":
        return x
    return x * jnp.asarray(keep_probability(rate), x.dtype)


def fold_into_dense(dense_params, rate):
    """Push the test-time α of a ``scale_at_test`` dropout into the next dense layer.

    z = W(α y) + b = (α W) y + b, so {"w": α W, "b": b} applied to the
    un-scaled activations y gives the same test output (W_test = α W_trained).
    """
    check_in_range("rate", rate, 0.0, 1.0)
    return {**dense_params, "w": dense_params["w"] * keep_probability(rate)}


def _is_zero(rate) -> bool:
    return is_concrete(rate) and bool(np.all(np.asarray(rate) == 0.0))


@LAYERS.register
def dropout(rate: float, *, mode: str = "inverted") -> Layer:
    """Dropout layer; ``rate`` = 1 − α is the drop probability, in [0, 1).

    ``rate`` may be a traced scalar (grid search). Training needs a PRNG key
    (``apply(..., train=True, key=k)``) unless ``rate`` is a concrete 0; no
    params, no state.
    """
    check_in_range("rate", rate, 0.0, 1.0)
    check_choice("mode", mode, MODES)

    def init(key, input_shape):
        del key
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params
        if not train:
            return dropout_eval(x, rate, mode), state
        if _is_zero(rate):
            return x, state
        if key is None:
            raise ValueError(
                f"dropout(rate={rate!r}) in training mode needs a PRNG key: call apply(..., train=True, key=key)"
            )
        return dropout_train(key, x, rate, mode), state

    return Layer(init, apply)


callable_module(__name__, dropout)
