"""Dropout: kept fraction, the two implementations of the notes, the folding identity, errors,
and the fast mask: Threefry bits equal to JAX's, quantised keep probability, independence."""

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
    alpha_q = float(dropout.quantized_keep_probability(RATE))
    np.testing.assert_allclose(y[kept], x[kept] / alpha_q, rtol=1e-6)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - RATE), rtol=2.0**-16)
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


# ---------------------------------------------------------------- the fast mask


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("num", [2, 64, 1000])
def test_unrolled_threefry_words_equal_jax_threefry(seed, num):
    """The written-out hash is bit for bit JAX's ``threefry_2x32`` over the counter 0 … num − 1."""
    import jax.extend.random as jex_random

    key = jax.random.key(seed)
    expected = jex_random.threefry_2x32(jax.random.key_data(key), jax.lax.iota(jnp.uint32, num))
    np.testing.assert_array_equal(jax.jit(dropout.random_words, static_argnums=1)(key, num), expected)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3, 0.5, 0.9, 0.99, 1 - 2.0**-20])
def test_quantised_keep_probability_is_within_half_a_step_of_alpha(rate):
    alpha_q = float(dropout.quantized_keep_probability(rate))
    alpha = 1 - rate
    assert abs(alpha_q - alpha) <= 2.0**-17 * (1 + 1e-6) or alpha < 2.0**-17
    assert alpha_q > 0  # never drop everything (the threshold is at least 1)
    if rate in (0.0, 0.5):
        assert alpha_q == alpha  # multiples of 2^-16 are exact


def test_uint16_bits_are_uniform():
    """Chi-square over 256 bins of the top 8 bits and of the low 8 bits of 2^18 draws (6 sigma)."""
    bits = np.asarray(dropout.random_uint16(jax.random.key(7), 2**18))
    assert bits.max() < 2**16
    for values in (bits >> 8, bits & 0xFF):
        counts = np.bincount(values, minlength=256)
        expected = len(bits) / 256
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert abs(chi2 - 255) < 6 * np.sqrt(2 * 255)


def _agreement_bound(alpha, n):
    """Two independent Bernoulli(α) masks agree on α² + (1−α)² of the units, ± 6 σ."""
    p = alpha**2 + (1 - alpha) ** 2
    return p, binomial_tolerance(n, p)


def test_masks_are_independent_across_examples_and_units():
    mask = np.asarray(dropout.keep_mask(jax.random.key(3), RATE, (400, 250)), np.float64)
    alpha = 1 - RATE
    # correlation between consecutive examples (rows) and consecutive units (columns) ~ 0
    for a, b in ((mask[:-1], mask[1:]), (mask[:, :-1], mask[:, 1:]), (mask[:, ::2], mask[:, 1::2])):
        p, tol = _agreement_bound(alpha, a.size)
        assert abs(np.mean(a == b) - p) < tol
    # every unit is kept at rate α over the examples, every example at rate α over units
    assert np.all(np.abs(mask.mean(0) - alpha) < binomial_tolerance(400, alpha))
    assert np.all(np.abs(mask.mean(1) - alpha) < binomial_tolerance(250, alpha))


def test_masks_are_independent_across_steps_and_layers_and_reproducible():
    """Two dropout layers in one serial, over two training steps' keys: four masks, pairwise independent;
    the same key gives the same masks."""
    model = layers.serial(layers.dropout(RATE), layers.dropout(RATE))
    ones = jnp.ones((200, 250))

    def masks(key):
        first = layers.dropout(RATE)  # the mask of layer 1 is visible as y1 != 0
        keys = layers.split_key(key, 2)
        y1, _ = first.apply((), (), ones, train=True, key=keys[0])
        y2, _ = model.apply(((), ()), ((), ()), ones, train=True, key=key)
        return np.asarray(y1 != 0), np.asarray(y2 != 0)

    step_keys = jax.random.split(jax.random.key(11), 2)
    layer1_a, both_a = masks(step_keys[0])
    layer1_b, both_b = masks(step_keys[1])
    alpha = 1 - RATE
    # y2 = m1 ⊙ m2 ⊙ x / α²: kept fraction α² means the layers' masks are independent
    assert abs(both_a.mean() - alpha**2) < binomial_tolerance(both_a.size, alpha**2)
    p, tol = _agreement_bound(alpha, layer1_a.size)
    assert abs(np.mean(layer1_a == layer1_b) - p) < tol  # steps
    again, _ = masks(step_keys[0])
    np.testing.assert_array_equal(again, layer1_a)


def test_raw_and_rbg_keys_work():
    raw = jax.random.PRNGKey(5)
    typed = jax.random.wrap_key_data(raw)
    np.testing.assert_array_equal(dropout.keep_mask(raw, RATE, (8, 16)), dropout.keep_mask(typed, RATE, (8, 16)))
    mask = np.asarray(dropout.keep_mask(jax.random.key(5, impl="rbg"), RATE, (400, 250)))
    assert abs(mask.mean() - (1 - RATE)) < binomial_tolerance(mask.size, 1 - RATE)


@pytest.mark.parametrize("mode", ["inverted", "scale_at_test"])
def test_bfloat16_inputs_keep_their_dtype_and_values(mode):
    x = X.astype(jnp.bfloat16)
    layer = layers.dropout(RATE, mode=mode)
    key = jax.random.key(9)
    y, _ = jax.jit(functools.partial(layer.apply, train=True))((), (), x, key=key)
    assert y.dtype == jnp.bfloat16
    kept = np.asarray(dropout.keep_mask(key, RATE, x.shape))
    np.testing.assert_array_equal(np.asarray(y, np.float32) == 0, ~kept)
    scale = 1 / float(dropout.quantized_keep_probability(RATE)) if mode == "inverted" else 1.0
    expected = (np.asarray(x, np.float32) * scale).astype(jnp.bfloat16)  # one rounding, from float32
    np.testing.assert_array_equal(np.asarray(y)[kept], expected[kept])
    y_eval, _ = layer.apply((), (), x, train=False)
    assert y_eval.dtype == jnp.bfloat16


def test_vmapped_keys_give_the_per_key_masks():
    keys = jax.random.split(jax.random.key(2), 3)
    batched = jax.vmap(lambda k: dropout.keep_mask(k, RATE, (16, 32)))(keys)
    for key, mask in zip(keys, batched):
        np.testing.assert_array_equal(mask, dropout.keep_mask(key, RATE, (16, 32)))
