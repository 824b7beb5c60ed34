"""Divergences and metrics against their formulas in NumPy float64, optax, and
closed-form gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import layers, losses

RNG = np.random.default_rng(0)
B, K = 6, 5


def softmax64(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def random_probabilities(shape, zero_fraction=0.0):
    p = RNG.uniform(0.1, 1.0, shape)
    p[RNG.uniform(size=shape) < zero_fraction] = 0.0
    p[..., 0] += 1e-3  # no all-zero rows
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_l2_divergence_matches_formula():
    y, d = RNG.standard_normal((B, K)).astype(np.float32), RNG.standard_normal((B, K)).astype(np.float32)
    expected = np.mean(0.5 * np.sum((y.astype(np.float64) - d) ** 2, axis=1))
    np.testing.assert_allclose(losses.l2_divergence(y, d), expected, rtol=1e-6)
    # one scalar target per example: Div = ½ (y − d)²
    np.testing.assert_allclose(losses.l2_divergence(y[:, 0], d[:, 0]), np.mean(0.5 * (y[:, 0] - d[:, 0]) ** 2), rtol=1e-6)


def test_l2_gradient_wrt_linear_output_preactivation_is_the_error():
    """∇_z ½‖y − d‖² = (y − d) J_y(z) = (y − d) for a linear output y = z; the
    minibatch average divides by B. Through the dense layer z = x W + b the
    error is propagated back: ∂Div/∂W = xᵀ (y − d)/B."""
    layer = layers.dense(K)
    _, params, _ = layer.init(jax.random.key(0), (B, 3))
    x = RNG.standard_normal((B, 3)).astype(np.float32)
    d = RNG.standard_normal((B, K)).astype(np.float32)

    def divergence_of_preactivation(z):
        return losses.l2_divergence(z, d)  # linear output: y = z

    z, _ = layer.apply(params, (), x, train=True)
    error = np.asarray(z, np.float64) - d
    np.testing.assert_allclose(jax.grad(divergence_of_preactivation)(z), error / B, rtol=1e-5, atol=1e-7)

    def divergence_of_params(params):
        return losses.l2_divergence(layer.apply(params, (), x, train=True)[0], d)

    grads = jax.grad(divergence_of_params)(params)
    np.testing.assert_allclose(grads["w"], x.T.astype(np.float64) @ error / B, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["b"], error.sum(0) / B, rtol=1e-5, atol=1e-6)


def kl_formula(y, d):
    """Σ d log d − Σ d log y per example (0 log 0 = 0), averaged over the minibatch (float64)."""
    y, d = np.asarray(y, np.float64), np.asarray(d, np.float64)
    terms = np.where(d > 0, d * (np.log(np.where(d > 0, d, 1.0)) - np.log(y)), 0.0)
    return terms.sum(-1).mean()


def test_kl_divergence_matches_formula_with_zero_targets():
    y, d = random_probabilities((B, K)), random_probabilities((B, K), zero_fraction=0.4)
    assert np.any(d == 0)
    np.testing.assert_allclose(losses.kl_divergence(y, d), kl_formula(y, d), rtol=1e-5)
    np.testing.assert_allclose(losses.kl_divergence(d, d), 0.0, atol=1e-6)


def test_kl_divergence_gradients_are_finite_with_zero_targets_and_zero_outputs():
    y, d = random_probabilities((B, K)), random_probabilities((B, K), zero_fraction=0.4)
    y = np.where(d == 0, 0.0, y).astype(np.float32)  # y_i = 0 exactly where d_i = 0
    value = losses.kl_divergence(y, d)
    assert np.isfinite(value)
    grad_y, grad_d = jax.grad(losses.kl_divergence, argnums=(0, 1))(y, d)
    assert np.all(np.isfinite(grad_y)) and np.all(np.isfinite(grad_d))
    # ∂Div/∂y_i = −d_i / (B y_i) where d_i > 0, and 0 where d_i = 0
    expected = np.where(d > 0, -d / np.where(d > 0, y, 1.0) / B, 0.0)
    np.testing.assert_allclose(grad_y, expected, rtol=1e-5, atol=1e-7)


def test_kl_divergence_with_logits_matches_formula_and_gradient():
    logits = (5 * RNG.standard_normal((B, K))).astype(np.float32)
    d = random_probabilities((B, K), zero_fraction=0.4)
    np.testing.assert_allclose(losses.kl_divergence_with_logits(logits, d), kl_formula(softmax64(logits), d), rtol=1e-5)
    grad = jax.grad(losses.kl_divergence_with_logits)(logits, d)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, (softmax64(logits) - d) / B, rtol=1e-4, atol=1e-6)  # Σ d = 1


def cross_entropy_formula(logits, one_hot):
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    log_y = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return -(one_hot * log_y).sum(-1).mean()


def test_softmax_cross_entropy_integer_and_one_hot_labels():
    logits = (3 * RNG.standard_normal((B, K))).astype(np.float32)
    logits[0, 2] = 1000.0  # large logits must not overflow
    labels = RNG.integers(0, K, B)
    one_hot = np.eye(K, dtype=np.float32)[labels]
    expected = cross_entropy_formula(logits, one_hot)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, one_hot), expected, rtol=1e-5)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, labels), optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), rtol=1e-6
    )
    grad = jax.grad(losses.softmax_cross_entropy)(logits, labels)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, (softmax64(logits) - one_hot) / B, rtol=1e-4, atol=1e-6)


def test_softmax_cross_entropy_soft_targets_with_zeros():
    logits = RNG.standard_normal((B, K)).astype(np.float32)
    d = random_probabilities((B, K), zero_fraction=0.4)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, d), cross_entropy_formula(logits, d), rtol=1e-5)
    # cross-entropy = KL + entropy of the targets
    entropy = -np.sum(np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0), -1).mean()
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, d), losses.kl_divergence_with_logits(logits, d) + entropy, rtol=1e-5
    )


def test_accuracy_integer_and_one_hot():
    logits = RNG.standard_normal((50, K)).astype(np.float32)
    labels = RNG.integers(0, K, 50)
    expected = np.mean(np.argmax(logits, -1) == labels)
    np.testing.assert_allclose(losses.accuracy(logits, labels), expected)
    np.testing.assert_allclose(losses.accuracy(logits, np.eye(K)[labels]), expected)


def test_label_format_is_chosen_by_shape_not_dtype():
    # B == K: integer one-hot labels have the shape of the logits and must be
    # read as targets, not as class indices (the old dtype rule did that).
    n = K
    logits = (3 * RNG.standard_normal((n, K))).astype(np.float32)
    labels = RNG.permutation(K)
    float_one_hot = np.eye(K, dtype=np.float32)[labels]
    int_one_hot = np.eye(K, dtype=np.int32)[labels]
    reference = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(reference, cross_entropy_formula(logits, float_one_hot), rtol=1e-5)
    expected_accuracy = np.mean(np.argmax(logits, -1) == labels)
    for targets in (float_one_hot, int_one_hot, int_one_hot.astype(np.bool_)):
        np.testing.assert_allclose(losses.softmax_cross_entropy(logits, targets), reference, rtol=1e-6)
        np.testing.assert_allclose(losses.accuracy(logits, targets), expected_accuracy)
    # Class indices stored as floats are indices, like the int ones.
    for indices in (labels, labels.astype(np.float32), jnp.asarray(labels, jnp.int8)):
        np.testing.assert_allclose(losses.softmax_cross_entropy(logits, indices), reference, rtol=1e-6)
        np.testing.assert_allclose(losses.accuracy(logits, indices), expected_accuracy)
    # Under jit too.
    np.testing.assert_allclose(jax.jit(losses.softmax_cross_entropy)(logits, int_one_hot), reference, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.accuracy)(logits, labels.astype(np.float32)), expected_accuracy)


@pytest.mark.parametrize("fn", [losses.softmax_cross_entropy, losses.accuracy])
@pytest.mark.parametrize("labels_shape", [(B, K + 1), (B + 1,), (B, K, 1), ()])
def test_labels_of_any_other_shape_raise_naming_both_shapes(fn, labels_shape):
    logits = np.zeros((B, K), np.float32)
    with pytest.raises(ValueError) as error:
        fn(logits, np.zeros(labels_shape, np.int32))
    message = str(error.value)
    assert str(labels_shape) in message and str((B, K)) in message


PARAMS = {
    "dense": {"w": RNG.standard_normal((3, 4)).astype(np.float32), "b": RNG.standard_normal(4).astype(np.float32)},
    "bn": {"gamma": RNG.standard_normal(4).astype(np.float32), "beta": RNG.standard_normal(4).astype(np.float32)},
}


def test_l2_penalty_all_leaves_and_weights_only():
    lam = 0.3
    all_sq = sum(np.sum(np.asarray(p, np.float64) ** 2) for p in jax.tree.leaves(PARAMS))
    np.testing.assert_allclose(losses.l2_penalty(PARAMS, lam), 0.5 * lam * all_sq, rtol=1e-6)
    w_sq = np.sum(PARAMS["dense"]["w"].astype(np.float64) ** 2)
    np.testing.assert_allclose(losses.l2_penalty(PARAMS, lam, mask=losses.weights_mask), 0.5 * lam * w_sq, rtol=1e-6)
    explicit = {"dense": {"w": True, "b": False}, "bn": {"gamma": False, "beta": False}}
    np.testing.assert_allclose(losses.l2_penalty(PARAMS, lam, mask=explicit), 0.5 * lam * w_sq, rtol=1e-6)
    grads = jax.grad(losses.l2_penalty)(PARAMS, lam, losses.weights_mask)
    np.testing.assert_allclose(grads["dense"]["w"], lam * PARAMS["dense"]["w"], rtol=1e-6)
    np.testing.assert_array_equal(grads["dense"]["b"], np.zeros(4))


def test_l2_penalty_traced_lambda_and_errors():
    lams = jnp.array([0.0, 0.1, 1.0])
    values = jax.vmap(lambda lam: losses.l2_penalty(PARAMS, lam))(lams)
    all_sq = sum(np.sum(np.asarray(p, np.float64) ** 2) for p in jax.tree.leaves(PARAMS))
    np.testing.assert_allclose(values, 0.5 * np.asarray(lams) * all_sq, rtol=1e-6)
    with pytest.raises(ValueError, match="lam"):
        losses.l2_penalty(PARAMS, -0.1)
    with pytest.raises(ValueError, match="mask"):
        losses.l2_penalty(PARAMS, 0.1, mask={"dense": {"w": True}})


# ---------------------------------------------------------------- bad input (issue 11)

@pytest.mark.parametrize("fn, name, y_name", [
    (losses.l2_divergence, "l2_divergence", "prediction"),
    (losses.kl_divergence, "kl_divergence", "prediction"),
    (losses.kl_divergence_with_logits, "kl_divergence_with_logits", "logits"),
])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_divergences_reject_different_shapes_instead_of_broadcasting(fn, name, y_name, jit):
    # l2_divergence(zeros((4, 1)), ones((4,))) used to broadcast to (4, 4) and return 2.0, not 0.5.
    call = jax.jit(fn) if jit else fn
    with pytest.raises(ValueError) as error:
        call(jnp.full((4, 1), 0.5), jnp.full((4,), 0.5))
    assert str(error.value) == (f"{name}: {y_name} shape (4, 1) and target shape (4,) differ; "
                                "they must be equal (no broadcasting)")


def test_l2_divergence_of_matching_column_vectors_is_the_formula():
    y, d = np.zeros((4, 1), np.float32), np.ones((4, 1), np.float32)
    np.testing.assert_allclose(losses.l2_divergence(y, d), 0.5)  # ½·1 per example, averaged


@pytest.mark.parametrize("fn", [losses.softmax_cross_entropy, losses.accuracy])
@pytest.mark.parametrize("labels, count, first", [
    ([0, 1, -1, 2, 4, 3], "1 of 6", "index 2: -1"),
    ([0, 5, 1, 7, 2, 3], "2 of 6", "index 1: 5"),
    ([0.0, 1.0, 2.5, 3.0, 4.0, np.nan], "2 of 6", "index 2: 2.5"),
    ([0.0, 1.0, 2.0, 3.0, np.nan, 1.0], "1 of 6", "index 4: nan"),
])
def test_concrete_out_of_range_class_indices_are_an_error(fn, labels, count, first):
    # −1 used to wrap to the last class, 5 to give NaN or a clamped log-probability.
    logits = jnp.zeros((6, K))
    with pytest.raises(ValueError) as error:
        fn(logits, np.asarray(labels))
    message = str(error.value)
    assert message.startswith(f"{fn.__name__}: labels must be class indices, integers in [0, {K}); ")
    assert f"{count} (the first at {first}) are not" in message


def test_class_indices_are_not_checked_when_traced():
    # Under jit the values are unknown; the check is skipped, not run on a tracer.
    logits = jnp.zeros((2, K))
    value = jax.jit(losses.softmax_cross_entropy)(logits, jnp.asarray([0, K - 1]))
    np.testing.assert_allclose(value, np.log(K), rtol=1e-6)


@pytest.mark.parametrize("fn", [losses.kl_divergence, losses.kl_divergence_with_logits])
def test_negative_kl_targets_are_an_error_when_concrete(fn):
    y = random_probabilities((B, K))
    d = random_probabilities((B, K)).copy()
    d[1, 3] = -0.25
    d[4, 0] = -0.5
    with pytest.raises(ValueError) as error:
        fn(y, d)
    assert str(error.value) == (f"{fn.__name__}: targets must be probabilities (>= 0); "
                                "2 of 30 (the first at index (1, 3): -0.25) are not")
    jax.jit(fn)(y, d)  # traced: not checked


@pytest.mark.parametrize("fn, name", [(losses.l2_divergence, "prediction"), (losses.kl_divergence, "prediction"),
                                      (losses.kl_divergence_with_logits, "logits"),
                                      (losses.softmax_cross_entropy, "logits"), (losses.accuracy, "logits")])
@pytest.mark.parametrize("integer_labels", [False, True])
def test_empty_batch_is_a_clear_error(fn, name, integer_labels):
    # used to be ZeroDivisionError (softmax_cross_entropy) or nan (accuracy).
    logits = jnp.zeros((0, K))
    labels = jnp.zeros((0,), jnp.int32) if integer_labels and fn in (losses.softmax_cross_entropy,
                                                                      losses.accuracy) else jnp.zeros((0, K))
    with pytest.raises(ValueError) as error:
        fn(logits, labels)
    assert str(error.value) == (f"{fn.__name__}: empty batch: {name} shape (0, {K}) has no examples; "
                                "need at least one")
