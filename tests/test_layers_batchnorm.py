"""Batch norm: the custom VJP against autodiff and finite differences, running
statistics against the notes' formulas in NumPy float64, recompute_statistics,
numerical stability, traced hyperparameters, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers
from functional_nn.layers import batchnorm

EPS = 1e-5


def naive_batchnorm(z, gamma, beta, eps):
    """The notes' forward pass written directly; autodiff gives the reference gradient."""
    axes = tuple(range(z.ndim - 1))
    mu_B = jnp.mean(z, axis=axes)
    var_B = jnp.mean(jnp.square(z - mu_B), axis=axes)
    return gamma * (z - mu_B) / jnp.sqrt(var_B + eps) + beta, mu_B, var_B


def make_loss(normalize_fn, with_statistics_terms=False):
    """A scalar divergence of (ẑ, μ_B, σ_B²) with fixed random weights."""

    def loss(z, gamma, beta, eps, weights):
        z_hat, mu_B, var_B = normalize_fn(z, gamma, beta, eps)
        value = jnp.sum(weights * jnp.tanh(z_hat))
        if with_statistics_terms:
            value = value + jnp.sum(jnp.sin(mu_B)) + jnp.sum(jnp.sqrt(var_B))
        return value

    return loss


ours_grad = jax.jit(jax.grad(make_loss(batchnorm.batch_normalize), argnums=(0, 1, 2, 3)))
naive_grad = jax.jit(jax.grad(make_loss(naive_batchnorm), argnums=(0, 1, 2, 3)))
ours_grad_stats = jax.jit(jax.grad(make_loss(batchnorm.batch_normalize, True), argnums=(0, 1, 2, 3)))
naive_grad_stats = jax.jit(jax.grad(make_loss(naive_batchnorm, True), argnums=(0, 1, 2, 3)))


def random_inputs(shape, seed=0, dtype=np.float32, mean=0.5, std=2.0):
    rng = np.random.default_rng(seed)
    features = shape[-1]
    z = (mean + std * rng.standard_normal(shape)).astype(dtype)
    gamma = (1.0 + 0.5 * rng.standard_normal(features)).astype(dtype)
    beta = rng.standard_normal(features).astype(dtype)
    weights = rng.standard_normal(shape).astype(dtype)
    return z, gamma, beta, weights


def assert_close_scaled(actual, expected, rtol):
    """|a − e| ≤ rtol · (|e| + max|e| · 1e-2): relative, with a floor for entries near 0."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    floor = 1e-2 * np.max(np.abs(expected))
    np.testing.assert_array_less(np.abs(actual - expected), rtol * (np.abs(expected) + floor) + 1e-30)


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 3, 6)], ids=["B,D", "B,H,W,C"])
@pytest.mark.parametrize("with_statistics_terms", [False, True], ids=["z_hat", "z_hat+stats"])
def test_custom_vjp_matches_autodiff_of_naive_forward_float32(shape, with_statistics_terms):
    z, gamma, beta, weights = random_inputs(shape)
    ours_fn, naive_fn = (ours_grad_stats, naive_grad_stats) if with_statistics_terms else (ours_grad, naive_grad)
    ours = ours_fn(z, gamma, beta, jnp.float32(EPS), weights)
    naive = naive_fn(z, gamma, beta, jnp.float32(EPS), weights)
    for name, a, e in zip(("dz", "dgamma", "dbeta", "deps"), ours, naive):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        assert_close_scaled(a, e, rtol=1e-5)


def test_forward_matches_naive_and_numpy_float64():
    z, gamma, beta, _ = random_inputs((4, 3, 3, 6), seed=1)
    z_hat, mu_B, var_B = batchnorm.batch_normalize(z, gamma, beta, EPS)
    z64 = z.astype(np.float64).reshape(-1, 6)
    mu = z64.mean(0)
    var = ((z64 - mu) ** 2).mean(0)
    expected = gamma * (z64 - mu) / np.sqrt(var + EPS) + beta
    np.testing.assert_allclose(mu_B, mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var_B, var, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(z_hat).reshape(-1, 6), expected, rtol=1e-5, atol=1e-5)


def central_differences(f, args, argnum, h):
    """∂f/∂args[argnum] by (f(a + h e_k) − f(a − h e_k)) / 2h, for every entry k."""
    a = args[argnum]
    flat = a.reshape(-1)
    steps = h * jnp.eye(flat.size, dtype=a.dtype)

    def f_at(flat_arg):
        shifted = list(args)
        shifted[argnum] = flat_arg.reshape(a.shape)
        return f(*shifted)

    values_plus = jax.vmap(f_at)(flat + steps)
    values_minus = jax.vmap(f_at)(flat - steps)
    return ((values_plus - values_minus) / (2 * h)).reshape(a.shape)


@pytest.mark.parametrize("shape", [(6, 3), (2, 2, 2, 3)], ids=["B,D", "B,H,W,C"])
def test_custom_vjp_matches_central_finite_differences_float64(shape):
    with jax.enable_x64(True):
        z, gamma, beta, weights = (jnp.asarray(a) for a in random_inputs(shape, seed=2, dtype=np.float64))
        eps = jnp.float64(1e-3)
        loss = make_loss(batchnorm.batch_normalize, with_statistics_terms=True)

        @jax.jit
        def analytic_and_numeric(*args):
            numeric = tuple(central_differences(loss, args, argnum, h=1e-6) for argnum in range(4))
            return jax.grad(loss, argnums=(0, 1, 2, 3))(*args), numeric

        grads, numerics = analytic_and_numeric(z, gamma, beta, eps, weights)
        assert grads[0].dtype == jnp.float64
        for grad, numeric in zip(grads, numerics):
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- running statistics

bn_cumulative = layers.batchnorm(stats="cumulative", eps=EPS)
bn_ema = layers.batchnorm(stats="ema", ema_decay=0.8, eps=EPS)
train_cumulative = jax.jit(functools.partial(bn_cumulative.apply, train=True))
train_ema = jax.jit(functools.partial(bn_ema.apply, train=True))
eval_apply = jax.jit(functools.partial(bn_ema.apply, train=False))


def batches_of(sizes, features=4, seed=3):
    rng = np.random.default_rng(seed)
    return [(1.0 + 3.0 * rng.standard_normal((size, features))).astype(np.float32) for size in sizes]


def notes_test_time_statistics(batches):
    """μ_BN = (1/N) Σ μ_B, σ_BN² = (1/N) Σ B/(B−1) σ_B², each batch with its own B (float64)."""
    means, variances = [], []
    for x in batches:
        x = x.astype(np.float64).reshape(-1, x.shape[-1])
        b = x.shape[0]
        means.append(x.mean(0))
        variances.append(b / (b - 1) * x.var(0))
    return np.mean(means, 0), np.mean(variances, 0)


@pytest.mark.parametrize("sizes", [(8, 8, 8), (8, 8, 8, 3)], ids=["equal", "smaller-last"])
def test_cumulative_statistics_match_notes_formula(sizes):
    batches = batches_of(sizes)
    _, params, state = bn_cumulative.init(jax.random.key(0), batches[0].shape)
    for x in batches:
        _, state = train_cumulative(params, state, x)
    mean, var = notes_test_time_statistics(batches)
    np.testing.assert_allclose(state.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.var, var, rtol=1e-5)
    assert int(state.count) == len(batches)


def test_ema_statistics_match_recursion_with_unbiased_variance():
    batches = batches_of((8, 8, 5))
    _, params, state = bn_ema.init(jax.random.key(0), batches[0].shape)
    mean, var = np.zeros(4), np.ones(4)
    for x in batches:
        _, state = train_ema(params, state, x)
        x64 = x.astype(np.float64)
        b = x.shape[0]
        mean = 0.8 * mean + 0.2 * x64.mean(0)
        var = 0.8 * var + 0.2 * (b / (b - 1)) * x64.var(0)
    np.testing.assert_allclose(state.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.var, var, rtol=1e-5)


def test_eval_mode_uses_running_statistics():
    batches = batches_of((8, 8))
    _, params, state = bn_ema.init(jax.random.key(0), batches[0].shape)
    params = {"gamma": jnp.array([1.0, 2.0, -1.0, 0.5]), "beta": jnp.array([0.0, 1.0, 2.0, 3.0])}
    for x in batches:
        _, state = train_ema(params, state, x)
    x = batches_of((5,), seed=9)[0]
    y, same_state = eval_apply(params, state, x)
    expected = np.asarray(params["gamma"]) * (x - np.asarray(state.mean)) / np.sqrt(np.asarray(state.var) + EPS)
    np.testing.assert_allclose(y, expected + np.asarray(params["beta"]), rtol=1e-5, atol=1e-5)
    for a, e in zip(same_state, state):
        np.testing.assert_array_equal(a, e)
    # eval mode treats examples independently: one example gives the same output
    y_one, _ = eval_apply(params, state, x[:1])
    np.testing.assert_allclose(y_one, y[:1], rtol=1e-6)


def numpy_mlp_statistics(params, batches):
    """The notes' test-time statistics of both batch norms of
    dense → batchnorm → relu → dense → batchnorm, computed in float64 on the final network."""
    (d1, bn1, _, d2, bn2) = params
    stats = {0: ([], []), 1: ([], [])}

    def train_bn(h, bn_params, index):
        b = h.shape[0]
        mu, var = h.mean(0), h.var(0)
        stats[index][0].append(mu)
        stats[index][1].append(b / (b - 1) * var)
        return np.asarray(bn_params["gamma"]) * (h - mu) / np.sqrt(var + EPS) + np.asarray(bn_params["beta"])

    for x in batches:
        h = x.astype(np.float64) @ np.asarray(d1["w"], np.float64) + np.asarray(d1["b"])
        h = np.maximum(train_bn(h, bn1, 0), 0.0)
        h = h @ np.asarray(d2["w"], np.float64) + np.asarray(d2["b"])
        train_bn(h, bn2, 1)
    return [(np.mean(m, 0), np.mean(v, 0)) for m, v in (stats[0], stats[1])]


def test_recompute_statistics_matches_formula_on_final_network():
    model = layers.serial(
        layers.dense(6), layers.batchnorm(stats="ema"), layers.relu, layers.dense(3), layers.batchnorm(stats="cumulative")
    )
    _, params, state = model.init(jax.random.key(0), (8, 4))
    params = jax.tree.map(lambda p: p + 0.1, params)  # "trained": γ, β away from 1, 0
    batches = batches_of((8, 8, 8, 5), features=4, seed=4)
    stale = batchnorm.map_batchnorm_states(lambda s: s._replace(mean=s.mean + 7.0, count=s.count + 40), state)

    new_state = batchnorm.recompute_statistics(model, params, stale, [(x, None) for x in batches])

    expected = numpy_mlp_statistics(params, batches)
    for bn_state, (mean, var) in zip((new_state[1], new_state[4]), expected):
        np.testing.assert_allclose(bn_state.mean, mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bn_state.var, var, rtol=1e-4)
        assert int(bn_state.count) == len(batches)
    assert not bool(new_state[1].cumulative) and bool(new_state[4].cumulative)  # each layer keeps its rule
    assert new_state[0] == () and new_state[2] == ()


def test_reset_and_set_stats_mode():
    model = layers.serial(layers.batchnorm(stats="ema"), layers.serial(layers.relu, layers.batchnorm(stats="ema")))
    _, params, state = model.init(jax.random.key(0), (4, 3))
    x = batches_of((4,), features=3)[0]
    _, state = jax.jit(functools.partial(model.apply, train=True))(params, state, x)
    cumulative = batchnorm.set_stats_mode(state, "cumulative")
    assert bool(cumulative[0].cumulative) and bool(cumulative[1][1].cumulative)
    np.testing.assert_array_equal(cumulative[0].mean, state[0].mean)
    fresh = batchnorm.reset_statistics(state)
    for s in (fresh[0], fresh[1][1]):
        np.testing.assert_array_equal(s.mean, np.zeros(3))
        np.testing.assert_array_equal(s.var, np.ones(3))
        assert int(s.count) == 0 and not bool(s.cumulative)


# ---------------------------------------------------------------- stability, hyperparameters, errors


def large_mean_inputs(shape=(256, 8)):
    x = np.asarray(1e4 + jax.random.normal(jax.random.key(5), shape, jnp.float32), np.float32)
    return x, np.var(x.astype(np.float64), axis=0)


def test_two_pass_variance_is_stable_for_large_mean():
    x, reference = large_mean_inputs()
    _, var_B = batchnorm.batch_statistics(jnp.asarray(x))
    np.testing.assert_allclose(var_B, reference, rtol=1e-3)
    _, _, var_from_layer_path = batchnorm.batch_normalize(jnp.asarray(x), jnp.ones(8), jnp.zeros(8))
    np.testing.assert_allclose(var_from_layer_path, reference, rtol=1e-3)


def test_flax_default_one_pass_variance_is_not_stable_for_large_mean():
    nn = pytest.importorskip("flax.linen")
    x, reference = large_mean_inputs()
    module = nn.BatchNorm(use_running_average=False, momentum=0.0)
    _, updates = module.apply(module.init(jax.random.key(0), x), x, mutable=["batch_stats"])
    relative_error = np.abs(np.asarray(updates["batch_stats"]["var"], np.float64) - reference) / reference
    assert np.max(relative_error) > 1e-3


def test_traced_hyperparameters_under_vmap_match_python_floats():
    x = batches_of((8,), features=3)[0]
    decays, epsilons = jnp.array([0.5, 0.9]), jnp.array([1e-5, 1e-1])

    def train_once(ema_decay, eps):
        layer = layers.batchnorm(ema_decay=ema_decay, eps=eps)
        _, params, state = layer.init(jax.random.key(0), x.shape)

        def loss(params):
            y, new_state = layer.apply(params, state, x, train=True)
            return jnp.sum(jnp.tanh(y)), new_state

        grads, new_state = jax.grad(loss, has_aux=True)(params)
        return grads, new_state.mean, new_state.var

    batched = jax.jit(jax.vmap(train_once))(decays, epsilons)
    for i in range(2):
        single = train_once(float(decays[i]), float(epsilons[i]))
        for a, e in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], e, rtol=1e-5, atol=1e-6)


def test_training_batch_of_one_is_a_clear_error_at_trace_time():
    layer = layers.batchnorm()
    _, params, state = layer.init(jax.random.key(0), (1, 3))
    for shape in [(1, 3), (1, 4, 4, 3)]:
        with pytest.raises(ValueError, match="at least 2 examples"):
            jax.jit(functools.partial(layer.apply, train=True)).lower(params, state, jnp.ones(shape))
    y, _ = layer.apply(params, state, jnp.ones((1, 3)), train=False)  # eval mode is fine
    assert y.shape == (1, 3)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"eps": -1.0}, "eps"), ({"ema_decay": 1.5}, "ema_decay"), ({"ema_decay": -0.1}, "ema_decay"), ({"stats": "avg"}, "stats")],
)
def test_invalid_hyperparameters_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        layers.batchnorm(**kwargs)
