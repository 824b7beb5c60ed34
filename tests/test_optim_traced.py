"""Traced hyperparameters and compiled use.

* Eight learning rates under ``jax.vmap`` (optimizer built inside the
  vmapped function) equal eight separate runs, for every alias.
* Other hyperparameters (β₁, momentum, decay, ρ, λ, ε) vmapped as a grid.
* A learning rate given as a Python float and as a traced scalar give the
  same trajectory.
* Every transformation runs under ``jax.jit`` with params and state donated:
  same result as without donation, the donated buffers are consumed, and JAX
  reports no unusable donation.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import optim

STEPS = 50
LEARNING_RATES = np.asarray([1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 1e-1], np.float32)


def quadratic_problem():
    """½Σλᵢ(xᵢ-cᵢ)² with λ from 1e-2 to 10, plus ½‖b‖².

    Diagonal on purpose: its gradient λ⊙(x-c) has no reduction, so batching
    under vmap cannot change its rounding, and runs compare to the last bit
    even for sign-like rules (RMSProp, Adam near the optimum) that amplify
    any rounding difference.
    """
    rng = np.random.RandomState(0)
    lam = jnp.asarray(np.logspace(-2, 1, 6), jnp.float32)
    c = jnp.asarray(rng.randn(6), jnp.float32)
    loss = lambda p: 0.5 * jnp.sum(lam * (p["x"] - c) ** 2) + 0.5 * jnp.sum(p["b"] ** 2)
    return loss, {"x": jnp.zeros(6, jnp.float32), "b": jnp.ones(2, jnp.float32)}


LOSS, PARAMS = quadratic_problem()


def final_params(opt, params=PARAMS, steps=STEPS):
    def body(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(LOSS)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[0][0]


ALIASES = {
    "sgd": lambda lr: optim.sgd(lr),
    "momentum": lambda lr: optim.momentum(lr),
    "nesterov": lambda lr: optim.nesterov(lr),
    "rmsprop": lambda lr: optim.rmsprop(lr, momentum=0.5),
    "adagrad": lambda lr: optim.adagrad(lr),
    "adadelta": lambda lr: optim.adadelta(10 * lr),
    "adam": lambda lr: optim.adam(lr),
    "adamw": lambda lr: optim.adamw(lr, weight_decay=0.1),
    "rprop": lambda lr: optim.rprop(lr),
    "sign_sgd": lambda lr: optim.sign_sgd(lr),
}


def all_aliases(lr):
    return {name: final_params(make(lr)) for name, make in ALIASES.items()}


@functools.lru_cache(maxsize=None)
def vmapped_and_separate_runs():
    vmapped = jax.jit(jax.vmap(all_aliases))(jnp.asarray(LEARNING_RATES))
    single = jax.jit(all_aliases)
    separate = [single(jnp.float32(lr)) for lr in LEARNING_RATES]
    return jax.device_get(vmapped), jax.device_get(separate)


@pytest.mark.parametrize("name", list(ALIASES))
def test_eight_learning_rates_under_vmap_equal_eight_separate_runs(name):
    vmapped, separate = vmapped_and_separate_runs()
    for i, run in enumerate(separate):
        for leaf, batched in zip(jax.tree.leaves(run[name]), jax.tree.leaves(vmapped[name])):
            np.testing.assert_allclose(batched[i], leaf, rtol=1e-6, atol=1e-7)
    finals = np.stack([np.asarray(run[name]["x"]) for run in separate])
    assert len(np.unique(finals.round(6), axis=0)) == len(LEARNING_RATES), "learning rates should matter"


def test_python_float_and_traced_learning_rate_agree():
    lr = float(LEARNING_RATES[3])
    traced = jax.jit(all_aliases)(jnp.float32(lr))
    python_float = jax.jit(lambda: all_aliases(lr))()
    for name in ALIASES:
        for a, b in zip(jax.tree.leaves(traced[name]), jax.tree.leaves(python_float[name])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)


GRIDS = {
    "adam-b1": (lambda v: optim.adam(0.05, b1=v), [0.0, 0.5, 0.9, 0.99]),
    "adam-eps": (lambda v: optim.adam(0.05, eps=v, eps_root=v), [0.0, 1e-8, 1e-3, 1e-1]),
    "momentum": (lambda v: optim.momentum(0.01, momentum=v), [0.0, 0.3, 0.6, 0.9]),
    "rmsprop-decay": (lambda v: optim.rmsprop(0.01, decay=v), [0.5, 0.8, 0.9, 0.99]),
    "adadelta-rho": (lambda v: optim.adadelta(0.5, rho=v), [0.5, 0.8, 0.9, 0.95]),
    "adamw-weight_decay": (lambda v: optim.adamw(0.05, weight_decay=v), [0.0, 0.01, 0.1, 1.0]),
    "l2-lam": (lambda v: optim.chain(optim.add_l2_penalty(v), optim.sgd(0.05)), [0.0, 0.1, 0.5, 1.0]),
    "clip-max_norm": (lambda v: optim.chain(optim.clip_by_global_norm(v), optim.sgd(0.05)), [0.1, 1.0, 5.0, 50.0]),
}


@functools.lru_cache(maxsize=None)
def grid_runs():
    values = {name: jnp.asarray(grid, jnp.float32) for name, (_, grid) in GRIDS.items()}
    run_one = lambda name, v: final_params(GRIDS[name][0](v))
    vmapped = jax.jit(lambda vs: {n: jax.vmap(functools.partial(run_one, n))(vs[n]) for n in GRIDS})(values)
    single = jax.jit(lambda vs: {n: run_one(n, vs[n]) for n in GRIDS})
    separate = [single({n: v[i] for n, v in values.items()}) for i in range(4)]
    return jax.device_get(vmapped), jax.device_get(separate)


@pytest.mark.parametrize("name", list(GRIDS))
def test_hyperparameter_grid_under_vmap_equals_separate_runs(name):
    vmapped, separate = grid_runs()
    for i, run in enumerate(separate):
        for leaf, batched in zip(jax.tree.leaves(run[name]), jax.tree.leaves(vmapped[name])):
            np.testing.assert_allclose(batched[i], leaf, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- jit + donation

def every_transformation():
    schedule = optax.exponential_decay(0.1, 10, 0.5)
    return {
        **{name: make(0.05) for name, make in ALIASES.items()},
        "sgd-schedule": optim.sgd(schedule, momentum=0.9),
        "rmsprop-centered": optim.rmsprop(0.01, centered=True),
        "adam-nesterov": optim.adam(0.01, nesterov=True, mu_dtype=jnp.float32),
        "scale_by_sign": optim.chain(optim.scale_by_sign(), optim.scale(-0.01)),
        "clip": optim.chain(optim.clip(0.1), optim.sgd(0.1)),
        "clip_by_norm": optim.chain(optim.clip_by_norm(0.1), optim.sgd(0.1)),
        "clip_by_global_norm": optim.chain(optim.clip_by_global_norm(0.1), optim.sgd(0.1)),
        "add_l2_penalty": optim.chain(optim.add_l2_penalty(0.1), optim.sgd(0.1)),
        "add_decayed_weights-schedule": optim.chain(optim.add_decayed_weights(schedule), optim.sgd(0.1)),
        "masked": optim.masked(optim.adam(0.1), optim.mask_by_name(lambda path: path[-1] == "x")),
        "skip_nonfinite": optim.skip_nonfinite(optim.adam(0.1)),
        "accumulate_gradients": optim.accumulate_gradients(optim.momentum(0.1), every_k=2),
    }


TRANSFORMATIONS = every_transformation()


def step(opt, params, state):
    updates, state = opt.update(jax.grad(LOSS)(params), state, params)
    return optax.apply_updates(params, updates), state


@functools.lru_cache(maxsize=None)
def undonated_results():
    def three_steps(opt):
        params, state = PARAMS, opt.init(PARAMS)
        for _ in range(3):
            params, state = step(opt, params, state)
        return params

    return jax.device_get(jax.jit(lambda: {n: three_steps(o) for n, o in TRANSFORMATIONS.items()})())


@pytest.mark.parametrize("name", list(TRANSFORMATIONS))
def test_runs_under_jit_with_donated_params_and_state(name):
    opt = TRANSFORMATIONS[name]
    donated_step = jax.jit(functools.partial(step, opt), donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, PARAMS)
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Some donated buffers were not usable" fails the test
        for _ in range(3):
            inputs = jax.tree.leaves((params, state))
            params, state = donated_step(params, state)
            assert all(leaf.is_deleted() for leaf in inputs), "donated buffers should be consumed"
    for ours, expected in zip(jax.tree.leaves(params), jax.tree.leaves(undonated_results()[name])):
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


def test_traced_float64_hyperparameters_keep_float32_params_and_state():
    """Under x64, float64 traced hyperparameters must not promote float32 leaves."""
    with jax.enable_x64(True):
        params = {"w": jnp.ones(3, jnp.float32)}
        grads = {"w": jnp.asarray([0.5, -1.0, 0.0], jnp.float32)}

        def two_updates(hp):
            optimizers = [
                optim.sgd(hp, momentum=hp), optim.rmsprop(hp, decay=hp, eps=hp, momentum=hp),
                optim.rmsprop(hp, centered=True, eps_in_sqrt=False, bias_correction=True),
                optim.adagrad(hp, eps=hp), optim.adadelta(hp, rho=hp, eps=hp, weight_decay=hp),
                optim.adam(hp, b1=hp, b2=hp, eps=hp, eps_root=hp, nesterov=True),
                optim.adamw(hp, weight_decay=hp), optim.sign_sgd(hp),
                optim.rprop(hp, eta_minus=hp, eta_plus=1 + hp, min_step_size=hp, max_step_size=1 + hp),
                optim.chain(optim.clip(hp), optim.clip_by_norm(hp), optim.clip_by_global_norm(hp),
                            optim.add_l2_penalty(hp)),
            ]
            outputs = []
            for opt in optimizers:
                state = opt.init(params)
                for _ in range(2):
                    updates, state = opt.update(grads, state, params)
                outputs.append((updates, state))
            return outputs

        outputs = jax.jit(two_updates)(jnp.float64(0.5))
        for path, leaf in jax.tree_util.tree_leaves_with_path(outputs):
            expected = jnp.int32 if "count" in jax.tree_util.keystr(path) else jnp.float32
            assert leaf.dtype == expected, jax.tree_util.keystr(path)
