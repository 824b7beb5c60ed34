"""Composition and edge cases: ours inside optax.chain and optax's inside
ours, masks from parameter names, coupled L2 = gradient of ½λ‖W‖², clipping
(against optax / NumPy, and all-zero gradients), Adagrad's zero accumulator,
skip_nonfinite on NaN/Inf steps, gradient accumulation against
optax.MultiSteps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import optim


def mlp_params(dtype=jnp.float32, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "dense1": {"w": jnp.asarray(rng.randn(4, 8), dtype), "b": jnp.asarray(rng.randn(8), dtype)},
        "dense2": {"w": jnp.asarray(rng.randn(8, 3), dtype), "b": jnp.asarray(rng.randn(3), dtype)},
    }


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["dense1"]["w"] + params["dense1"]["b"])
    return 0.5 * jnp.mean(jnp.sum((h @ params["dense2"]["w"] + params["dense2"]["b"] - y) ** 2, -1))


def data(dtype=jnp.float32):
    rng = np.random.RandomState(1)
    return jnp.asarray(rng.randn(16, 4), dtype), jnp.asarray(rng.randn(16, 3), dtype)


def final(opt, params, loss, steps=30):
    """(params, state) after ``steps`` full-batch updates (traceable)."""

    def body(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[0]


def run(optimizers, params, loss, steps=30):
    """``final`` for each optimizer, all in one compiled program."""
    return jax.jit(lambda p: [final(opt, p, loss, steps) for opt in optimizers])(params)


def assert_trees_close(a, b, **tolerance):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, **tolerance)


def is_weight(path):
    return path[-1] == "w"


# ---------------------------------------------------------------- mixing

def test_ours_inside_optax_chain():
    x, y = data()
    loss = lambda p: mlp_loss(p, x, y)
    mixed = optax.chain(optax.clip_by_global_norm(1.0), optim.scale_by_adam(b1=0.8),
                        optax.add_decayed_weights(1e-2), optim.scale_by_learning_rate(0.05))
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(b1=0.8),
                            optax.add_decayed_weights(1e-2), optax.scale_by_learning_rate(0.05))
    (ours, _), (expected, _) = run([mixed, reference], mlp_params(), loss)
    assert_trees_close(ours, expected, rtol=1e-6, atol=1e-7)


def test_optax_inside_our_chain():
    x, y = data()
    loss = lambda p: mlp_loss(p, x, y)
    mixed = optim.chain(optim.clip_by_global_norm(1.0), optax.scale_by_rms(decay=0.95),
                        optim.scale_by_momentum(0.5), optax.scale_by_learning_rate(0.01))
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_rms(decay=0.95),
                            optax.trace(decay=0.5), optax.scale_by_learning_rate(0.01))
    (ours, state), (expected, _) = run([mixed, reference], mlp_params(), loss)
    assert_trees_close(ours, expected, rtol=1e-6, atol=1e-7)
    assert isinstance(state[2], optim.ScaleByMomentumState)


# ---------------------------------------------------------------- masks

def test_mask_by_name_builds_the_expected_tree():
    mask = optim.mask_by_name(is_weight)(mlp_params())
    assert mask == {"dense1": {"w": True, "b": False}, "dense2": {"w": True, "b": False}}
    serial_params = ({"w": jnp.ones(2), "b": jnp.ones(1)}, (), {"gamma": jnp.ones(2)})
    assert optim.mask_by_name(lambda path: path[-1] in ("w", "gamma"))(serial_params) == (
        {"w": True, "b": False}, (), {"gamma": True})


def test_masked_leaves_masked_out_leaves_untouched():
    params = mlp_params()
    grads = mlp_params(seed=3)
    opt = optim.masked(optim.scale(-2.0), optim.mask_by_name(is_weight))
    updates, state = opt.update(grads, opt.init(params), params)
    for layer in ("dense1", "dense2"):
        np.testing.assert_array_equal(updates[layer]["w"], -2.0 * grads[layer]["w"])
        np.testing.assert_array_equal(updates[layer]["b"], grads[layer]["b"])
    assert isinstance(state, optim.MaskedState)


def test_masked_inner_state_holds_only_masked_in_leaves():
    opt = optim.masked(optim.scale_by_adam(), optim.mask_by_name(is_weight))
    state = opt.init(mlp_params())
    shapes = [leaf.shape for leaf in jax.tree.leaves(state.inner_state.mu)]
    assert shapes == [(4, 8), (8, 3)]


def test_masked_accepts_a_prefix_mask():
    params, grads = mlp_params(), mlp_params(seed=3)
    opt = optim.masked(optim.scale(0.5), {"dense1": True, "dense2": False})
    updates, _ = opt.update(grads, opt.init(params), params)
    assert_trees_close(updates["dense1"], jax.tree.map(lambda g: 0.5 * g, grads["dense1"]), rtol=0)
    assert_trees_close(updates["dense2"], grads["dense2"], rtol=0)


def test_adamw_mask_from_names_matches_optax_mask_tree():
    x, y = data()
    loss = lambda p: mlp_loss(p, x, y)
    mask_tree = {"dense1": {"w": True, "b": False}, "dense2": {"w": True, "b": False}}
    (ours, _), (expected, _), (unmasked, _) = run(
        [optim.adamw(0.05, weight_decay=0.5, mask=optim.mask_by_name(is_weight)),
         optax.adamw(0.05, weight_decay=0.5, mask=mask_tree),
         optax.adamw(0.05, weight_decay=0.5)], mlp_params(), loss)
    assert_trees_close(ours, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours["dense1"]["b"], unmasked["dense1"]["b"])


# ---------------------------------------------------------------- L2

def l2_penalty(params, lam, mask_fn=None):
    """The notes' ½λ Σ‖W‖², over the leaves the mask selects."""
    mask = mask_fn(params) if mask_fn else jax.tree.map(lambda _: True, params)
    return 0.5 * lam * sum(jnp.sum(w**2) for w, keep in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if keep)


@pytest.mark.parametrize("mask", [None, optim.mask_by_name(is_weight)], ids=["all", "weights-only"])
def test_coupled_l2_equals_gradient_of_regularized_loss(mask):
    with jax.enable_x64(True):
        x, y = data(jnp.float64)
        params = mlp_params(jnp.float64)
        lam = 0.3
        opt = optim.add_l2_penalty(lam, mask=mask)
        regularized = lambda p: mlp_loss(p, x, y) + l2_penalty(p, lam, mask)

        @jax.jit
        def both(params):
            ours, _ = opt.update(jax.grad(mlp_loss)(params, x, y), opt.init(params), params)
            return ours, jax.grad(regularized)(params)

        ours, expected = both(params)
        assert_trees_close(ours, expected, rtol=1e-12, atol=1e-14)


def test_coupled_l2_with_adam_minimises_the_regularized_loss():
    with jax.enable_x64(True):
        x, y = data(jnp.float64)
        lam = 0.1
        plain_loss = lambda p: mlp_loss(p, x, y)
        regularized = lambda p: mlp_loss(p, x, y) + l2_penalty(p, lam)

        @jax.jit
        def both(params):
            ours, _ = final(optim.chain(optim.add_l2_penalty(lam), optim.adam(0.01)), params, plain_loss)
            expected, _ = final(optim.adam(0.01), params, regularized)
            return ours, expected

        ours, expected = both(mlp_params(jnp.float64))
        assert_trees_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weight_decay", [1e-2, optax.linear_schedule(0.1, 0.0, 10)], ids=["float", "schedule"])
def test_add_decayed_weights_matches_optax(weight_decay):
    params, grads = mlp_params(), mlp_params(seed=3)
    ours, reference = optim.add_decayed_weights(weight_decay), optax.add_decayed_weights(weight_decay)
    state, reference_state = ours.init(params), reference.init(params)
    for _ in range(3):
        updates, state = ours.update(grads, state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        assert_trees_close(updates, expected, rtol=1e-7)


def test_weight_decay_needs_params():
    opt = optim.add_decayed_weights(1e-2)
    with pytest.raises(ValueError, match="params"):
        opt.update(mlp_params(), opt.init(mlp_params()))


# ---------------------------------------------------------------- clipping

def test_clip_by_value_matches_optax():
    grads = mlp_params(seed=3)
    ours, _ = optim.clip(0.5).update(grads, optax.EmptyState())
    expected, _ = optax.clip(0.5).update(grads, optax.EmptyState())
    assert_trees_close(ours, expected, rtol=0)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ours)) == 0.5


@pytest.mark.parametrize("max_norm", [0.5, 2.0, 100.0])
def test_clip_by_global_norm_matches_optax_and_numpy(max_norm):
    grads = mlp_params(seed=3)
    ours, expected = jax.jit(lambda g: (optim.clip_by_global_norm(max_norm).update(g, optax.EmptyState())[0],
                                        optax.clip_by_global_norm(max_norm).update(g, optax.EmptyState())[0]))(grads)
    assert_trees_close(ours, expected, rtol=1e-7)
    leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
    norm = np.sqrt(sum(np.sum(g**2) for g in leaves))
    factor = min(1.0, max_norm / norm)
    for got, g in zip(jax.tree.leaves(ours), leaves):
        np.testing.assert_allclose(got, g * factor, rtol=1e-6)


@pytest.mark.parametrize("clipper, reference", [(optim.clip_by_global_norm, optax.clip_by_global_norm),
                                                (optim.clip_by_norm, optax.clip_by_block_rms)],
                         ids=["global_norm", "per_leaf_norm"])
def test_norm_clipping_with_inf_max_norm_returns_updates_unchanged(clipper, reference):
    # max_norm=inf used to be rejected; optax accepts it as "no clipping".
    # (clip_by_block_rms(inf) is only an identity reference for the per-leaf case.)
    grads = jax.tree.map(lambda g: 1e3 * g, mlp_params(seed=3))
    ours, expected = jax.jit(lambda g: (clipper(jnp.inf).update(g, optax.EmptyState())[0],
                                        reference(jnp.inf).update(g, optax.EmptyState())[0]))(grads)
    assert_trees_close(ours, grads, rtol=0)
    assert_trees_close(ours, expected, rtol=0)


def test_clip_by_norm_per_leaf_matches_numpy():
    grads = mlp_params(seed=3)
    ours, _ = optim.clip_by_norm(1.5).update(grads, optax.EmptyState())
    for got, g in zip(jax.tree.leaves(ours), jax.tree.leaves(grads)):
        g = np.asarray(g, np.float64)
        np.testing.assert_allclose(got, g * min(1.0, 1.5 / np.linalg.norm(g)), rtol=1e-6)


@pytest.mark.parametrize("clipper", [optim.clip_by_global_norm(1.0), optim.clip_by_norm(1.0)],
                         ids=["global_norm", "per_leaf_norm"])
def test_norm_clipping_of_zero_gradients_gives_zeros_not_nan(clipper):
    zeros = jax.tree.map(jnp.zeros_like, mlp_params())
    clip = lambda g: clipper.update(g, optax.EmptyState())[0]
    total = lambda g: sum(jnp.sum(c) for c in jax.tree.leaves(clip(g)))
    clipped, through = jax.jit(lambda g: (clip(g), jax.grad(total)(g)))(zeros)
    for leaf in jax.tree.leaves(clipped):
        np.testing.assert_array_equal(leaf, 0.0)
    # Differentiating through the clipping at zero stays finite too (identity there).
    for leaf in jax.tree.leaves(through):
        np.testing.assert_array_equal(leaf, 1.0)


# ---------------------------------------------------------------- Adagrad edge case

@pytest.mark.parametrize("eps_in_sqrt", [True, False])
@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_adagrad_zero_accumulator_and_zero_gradient_give_zero_update(eps_in_sqrt, eps):
    opt = optim.adagrad(0.1, initial_accumulator_value=0.0, eps=eps, eps_in_sqrt=eps_in_sqrt)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([0.0, 2.0, 0.0])}
    updates, state = opt.update(grads, opt.init(params), params)
    expected_second = -0.1 * 2.0 / (np.sqrt(4.0 + eps) if eps_in_sqrt else 2.0 + eps)
    np.testing.assert_allclose(updates["w"], [0.0, expected_second, 0.0], rtol=1e-6)
    updates, _ = opt.update({"w": jnp.zeros(3)}, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)


# ---------------------------------------------------------------- skip_nonfinite

def jitted_step(opt):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step)


SKIPPING_ADAM = optim.skip_nonfinite(optim.adam(0.1))
skipping_step = jitted_step(SKIPPING_ADAM)
reference_step = jitted_step(optax.adam(0.1))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_skip_nonfinite_leaves_params_and_state_untouched(bad_value):
    params = mlp_params()
    good = [mlp_params(seed=s) for s in (3, 4)]
    bad = jax.tree.map(lambda g: g.at[0].set(bad_value), mlp_params(seed=5))
    opt, step = SKIPPING_ADAM, skipping_step

    p1, s1 = step(params, opt.init(params), good[0])
    p2, s2 = step(p1, s1, bad)
    assert_trees_close(p2, p1, rtol=0)
    assert_trees_close(s2.inner_state, s1.inner_state, rtol=0)
    assert int(s2.num_skipped) == 1
    p3, s3 = step(p2, s2, good[1])
    assert int(s3.num_skipped) == 1

    # Same as an Adam that never saw the bad step.
    r, rs = params, optax.adam(0.1).init(params)
    for g in good:
        r, rs = reference_step(r, rs, g)
    assert_trees_close(p3, r, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- accumulation

def test_accumulate_gradients_matches_optax_multisteps():
    params = mlp_params()
    grads = [mlp_params(seed=s) for s in range(10, 16)]
    ours = optim.accumulate_gradients(optim.adam(0.1), every_k=3)
    reference = optax.MultiSteps(optax.adam(0.1), every_k_schedule=3)
    state, reference_state = ours.init(params), reference.init(params)
    ours_update, reference_update = jax.jit(ours.update), jax.jit(reference.update)
    for k, g in enumerate(grads):
        updates, state = ours_update(g, state, params)
        expected, reference_state = reference_update(g, reference_state, params)
        assert_trees_close(updates, expected, rtol=1e-6, atol=1e-8)
        moved = any(np.any(np.asarray(u) != 0) for u in jax.tree.leaves(updates))
        assert moved == (k % 3 == 2)


# ---------------------------------------------------------------- states

def test_learning_rate_state_keeps_a_count_only_for_schedules():
    params = mlp_params()
    assert optim.scale_by_learning_rate(0.1).init(params) == optax.EmptyState()
    state = optim.scale_by_learning_rate(optax.constant_schedule(0.1)).init(params)
    assert isinstance(state, optim.ScheduleState) and state.count.dtype == jnp.int32


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adadelta",
                                  "adam", "adamw", "rprop", "sign_sgd"])
def test_states_are_namedtuples_with_int32_counts(name):
    opt = getattr(optim, name)(0.1)
    state = opt.init(mlp_params())

    def is_namedtuple(node):
        return isinstance(node, tuple) and type(node) is not tuple and hasattr(node, "_fields")

    def check(node):
        # Below the chain's container, every tuple must be a NamedTuple state.
        if isinstance(node, tuple):
            assert is_namedtuple(node), f"{type(node).__name__} in {name}'s state is not a NamedTuple"
        children = node.values() if isinstance(node, dict) else node if isinstance(node, (tuple, list)) else ()
        for child in children:
            check(child)

    # The state is chain's plain tuple (the only place a plain tuple is allowed)
    # of one NamedTuple per transformation.
    assert type(state) is tuple and len(state) >= 1
    for transform_state in state:
        assert is_namedtuple(transform_state)
        check(transform_state)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if "count" in jax.tree_util.keystr(path):
            assert leaf.dtype == jnp.int32
        else:
            assert leaf.dtype == jnp.float32
