"""Dropout: kept fraction, the two implementations of the notes, the folding identity, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers
from functional_nn.layers import dropout

RATE = 0.3
X = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (400, 250)).astype(np.float32))


def apply_fn(mode, train):
    layer = layers.dropout(RATE, mode=mode)
    return jax.jit(functools.partial(layer.apply, (), (), train=train))


inverted_train, inverted_eval = apply_fn("inverted", True), apply_fn("inverted", False)
scaled_train, scaled_eval = apply_fn("scale_at_test", True), apply_fn("scale_at_test", False)


def binomial_tolerance(n, p, sigmas=6.0):
    return sigmas * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("mode", ["inverted", "scale_at_test"])
def test_kept_fraction_is_one_minus_rate(mode):
    train = inverted_train if mode == "inverted" else scaled_train
    y, _ = train(X, key=jax.random.key(1))
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - (1 - RATE)) < binomial_tolerance(X.size, 1 - RATE)
    # per unit, the mask differs between examples
    assert not np.all(kept == kept[:1])


def test_inverted_divides_kept_units_by_alpha_and_preserves_the_mean():
    y, _ = inverted_train(X, key=jax.random.key(2))
    y, x = np.asarray(y), np.asarray(X)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - RATE), rtol=1e-6)
    # E[y] = x: the mean over units matches up to the Bernoulli noise (x in [0.5, 1.5])
    assert abs(y.mean() - x.mean()) < 1.5 / (1 - RATE) * binomial_tolerance(X.size, 1 - RATE)


def test_inverted_eval_is_identity():
    y, _ = inverted_eval(X)
    np.testing.assert_array_equal(y, X)


def test_scale_at_test_trains_unscaled_and_scales_by_alpha_at_test():
    y, _ = scaled_train(X, key=jax.random.key(3))
    y, x = np.asarray(y), np.asarray(X)
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    y_test, _ = scaled_eval(X)
    np.testing.assert_allclose(y_test, (1 - RATE) * x, rtol=1e-7)
    # test-time output is the training output's expectation
    assert abs(y.mean() - y_test.mean()) < 1.5 * binomial_tolerance(X.size, 1 - RATE)


def test_folding_alpha_into_next_dense_gives_the_same_eval_output():
    """W_test = α W_trained: the network without the dropout layer and with the next
    layer's weights scaled equals the scale_at_test network in eval mode."""
    with_dropout = layers.serial(
        layers.dense(16), layers.relu, layers.dropout(RATE, mode="scale_at_test"), layers.dense(5)
    )
    without_dropout = layers.serial(layers.dense(16), layers.relu, layers.dense(5))
    _, params, state = jax.jit(with_dropout.init, static_argnums=1)(jax.random.key(0), (8, 7))
    x = jax.random.normal(jax.random.key(1), (8, 7))

    y, _ = jax.jit(functools.partial(with_dropout.apply, train=False))(params, state, x)
    folded = (params[0], params[1], dropout.fold_into_dense(params[3], RATE))
    y_folded, _ = jax.jit(functools.partial(without_dropout.apply, train=False))(folded, ((), (), ()), x)

    np.testing.assert_allclose(y_folded, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(folded[2]["w"], (1 - RATE) * np.asarray(params[3]["w"]), rtol=1e-7)
    np.testing.assert_array_equal(folded[2]["b"], params[3]["b"])


def test_missing_key_in_training_is_a_clear_error():
    layer = layers.dropout(RATE)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layer.apply((), (), X, train=True)
    # no key is needed at test time, nor for a rate of exactly 0
    layer.apply((), (), X, train=False)
    y, _ = layers.dropout(0.0).apply((), (), X, train=True)
    np.testing.assert_array_equal(y, X)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rate_outside_zero_one_is_a_clear_error(rate):
    with pytest.raises(ValueError, match="rate"):
        layers.dropout(rate)
    with pytest.raises(ValueError, match="rate"):
        dropout.fold_into_dense({"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, rate)


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="mode"):
        layers.dropout(0.5, mode="scaled")


def test_traced_rate_under_vmap():
    rates = jnp.array([0.0, 0.25, 0.75])

    def kept_fraction(rate):
        y, _ = layers.dropout(rate).apply((), (), X, train=True, key=jax.random.key(4))
        return jnp.mean(y != 0), jnp.max(y * (1 - rate) / X)

    fractions, max_scaled = jax.jit(jax.vmap(kept_fraction))(rates)
    for rate, fraction, top in zip(np.asarray(rates), np.asarray(fractions), np.asarray(max_scaled)):
        assert abs(fraction - (1 - rate)) <= binomial_tolerance(X.size, 1 - rate)
        np.testing.assert_allclose(top, 1.0, rtol=1e-6)  # kept units are x / α
