"""Each alias against optax's alias of the same name (or the iRprop− rule
written out in NumPy for rprop): 200-step trajectories on an ill-conditioned
quadratic and a small MLP, default and non-default settings, float32 (rtol
1e-6) and float64 (rtol 1e-10, x64 enabled inside the fixture only).

All trajectories of one (problem, dtype) are computed by a single jitted
function, so the module compiles four programs instead of eighty.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import optim

STEPS = 200
TOLERANCES = {"float32": dict(rtol=1e-6, atol=1e-7), "float64": dict(rtol=1e-10, atol=1e-14)}


# ---------------------------------------------------------------- problems

def quadratic_matrices():
    """A = Q diag(λ) Qᵀ with λ from 1e-2 to 10 (condition number 1e3), and c."""
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(10, 10))
    return q @ np.diag(np.logspace(-2, 1, 10)) @ q.T, rng.randn(10)


def quadratic_problem(dtype):
    """½(x-c)ᵀA(x-c) from x = 0."""
    a, c = (jnp.asarray(m, dtype) for m in quadratic_matrices())

    def loss(params):
        r = params["x"] - c
        return 0.5 * r @ a @ r

    return loss, {"x": jnp.zeros(10, dtype)}


def mlp_problem(dtype):
    """A 5-16-2 tanh network, squared error on 32 fixed examples."""
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.randn(32, 5), dtype)
    y = jnp.asarray(rng.randn(32, 2), dtype)
    params = {
        "dense1": {"w": jnp.asarray(0.5 * rng.randn(5, 16), dtype), "b": jnp.zeros(16, dtype)},
        "dense2": {"w": jnp.asarray(0.5 * rng.randn(16, 2), dtype), "b": jnp.zeros(2, dtype)},
    }

    def loss(p):
        h = jnp.tanh(x @ p["dense1"]["w"] + p["dense1"]["b"])
        out = h @ p["dense2"]["w"] + p["dense2"]["b"]
        return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))

    return loss, params


PROBLEMS = {"quadratic": quadratic_problem, "mlp": mlp_problem}


def trajectory(opt, loss, params, steps=STEPS):
    """Parameters after each of ``steps`` updates (leading axis = step)."""

    def body(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[1]


# ---------------------------------------------------------------- cases

def weights_only(path):
    return path[-1] != "b"


def weights_only_tree(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key != "b", params)


decay_schedule = optax.exponential_decay(0.05, transition_steps=50, decay_rate=0.5)
linear_schedule = optax.linear_schedule(0.02, 0.002, transition_steps=200)

# id -> (ours, optax's)
CASES = {
    "sgd-default": (lambda: optim.sgd(0.05), lambda: optax.sgd(0.05)),
    "sgd-schedule-nesterov": (
        lambda: optim.sgd(decay_schedule, momentum=0.5, nesterov=True),
        lambda: optax.sgd(decay_schedule, momentum=0.5, nesterov=True)),
    "momentum-default": (lambda: optim.momentum(0.02), lambda: optax.sgd(0.02, momentum=0.9)),
    "momentum-0.5": (lambda: optim.momentum(0.03, momentum=0.5), lambda: optax.sgd(0.03, momentum=0.5)),
    "nesterov-default": (lambda: optim.nesterov(0.02), lambda: optax.sgd(0.02, momentum=0.9, nesterov=True)),
    "nesterov-0.6": (lambda: optim.nesterov(0.03, momentum=0.6), lambda: optax.sgd(0.03, momentum=0.6, nesterov=True)),
    "rmsprop-default": (lambda: optim.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    "rmsprop-pytorch-form-momentum-bias": (
        lambda: optim.rmsprop(0.01, decay=0.95, eps=1e-6, initial_scale=0.1, eps_in_sqrt=False,
                              momentum=0.5, nesterov=True, bias_correction=True),
        lambda: optax.rmsprop(0.01, decay=0.95, eps=1e-6, initial_scale=0.1, eps_in_sqrt=False,
                              momentum=0.5, nesterov=True, bias_correction=True)),
    "rmsprop-centered": (
        lambda: optim.rmsprop(0.005, centered=True, eps=1e-4),
        lambda: optax.rmsprop(0.005, centered=True, eps=1e-4)),
    "adagrad-default": (lambda: optim.adagrad(0.1), lambda: optax.adagrad(0.1)),
    "adagrad-zero-init": (
        lambda: optim.adagrad(0.2, initial_accumulator_value=0.0, eps=1e-5),
        lambda: optax.adagrad(0.2, initial_accumulator_value=0.0, eps=1e-5)),
    # optax's default learning_rate=None climbs; ours defaults to 1.0.
    "adadelta-default": (lambda: optim.adadelta(), lambda: optax.adadelta(learning_rate=1.0)),
    "adadelta-decay": (
        lambda: optim.adadelta(0.5, rho=0.95, eps=1e-5, weight_decay=1e-2),
        lambda: optax.adadelta(0.5, rho=0.95, eps=1e-5, weight_decay=1e-2)),
    "adam-default": (lambda: optim.adam(0.01), lambda: optax.adam(0.01)),
    "adam-eps-root": (
        lambda: optim.adam(0.02, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10),
        lambda: optax.adam(0.02, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10)),
    "adam-nesterov": (lambda: optim.adam(0.01, nesterov=True), lambda: optax.adam(0.01, nesterov=True)),
    "adamw-default": (lambda: optim.adamw(0.01), lambda: optax.adamw(0.01)),
    "adamw-masked": (
        lambda: optim.adamw(0.02, b1=0.8, weight_decay=0.1, mask=optim.mask_by_name(weights_only)),
        lambda: optax.adamw(0.02, b1=0.8, weight_decay=0.1, mask=weights_only_tree)),
    "sign_sgd-default": (lambda: optim.sign_sgd(0.01), lambda: optax.sign_sgd(0.01)),
    "sign_sgd-schedule": (lambda: optim.sign_sgd(linear_schedule), lambda: optax.sign_sgd(linear_schedule)),
}


@functools.lru_cache(maxsize=None)
def all_trajectories(problem: str, dtype: str):
    """{case: (ours, optax's)} as flat NumPy arrays of shape (steps, n_params)."""
    with jax.enable_x64(dtype == "float64"):
        loss, params = PROBLEMS[problem](jnp.dtype(dtype))

        @jax.jit
        def run(params):
            return {case: (trajectory(ours(), loss, params), trajectory(ref(), loss, params))
                    for case, (ours, ref) in CASES.items()}

        results = jax.device_get(run(params))
    flatten = lambda tree: np.concatenate(
        [leaf.reshape(STEPS, -1) for leaf in jax.tree.leaves(tree)], axis=1)
    return {case: (flatten(a), flatten(b)) for case, (a, b) in results.items()}


def mismatch(ours, reference, dtype):
    """None if the trajectories agree, else a one-line description."""
    if not np.all(np.isfinite(reference)):
        return "reference trajectory diverged (pick a smaller learning rate)"
    if np.allclose(reference[-1], reference[0]):
        return "the parameters did not move"
    if ours.dtype != np.dtype(dtype):
        return f"dtype {ours.dtype}, expected {dtype}"
    try:
        np.testing.assert_allclose(ours, reference, **TOLERANCES[dtype])
    except AssertionError as error:
        first_bad_update = 1 + int(np.argmax(~np.all(np.isclose(ours, reference, **TOLERANCES[dtype]), axis=1)))
        return f"differs from update {first_bad_update}: " + str(error).strip().splitlines()[2]
    return None


# One test per (problem, dtype) rather than per case: each test compiles one
# program for all cases, and under xdist no two workers compile the same one.
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_every_alias_matches_optax(problem, dtype):
    trajectories = all_trajectories(problem, dtype)
    failures = {case: mismatch(ours, reference, dtype) for case, (ours, reference) in trajectories.items()}
    failures = {case: message for case, message in failures.items() if message}
    assert not failures, "\n".join(f"{case}: {message}" for case, message in failures.items())


# ---------------------------------------------------------------- adadelta

def test_adadelta_default_descends():
    loss, params = quadratic_problem(jnp.float32)
    final = jax.jit(lambda p: jax.tree.map(lambda x: x[-1], trajectory(optim.adadelta(), loss, p)))(params)
    assert float(loss(final)) < 0.5 * float(loss(params))


# ---------------------------------------------------------------- rprop

def irprop_minus_numpy(grad_fn, w0, steps, lr, eta_minus=0.5, eta_plus=1.2,
                       min_step=1e-6, max_step=50.0):
    """iRprop− written out (Igel & Hüsken 2000, PyTorch's Rprop), float64."""
    w = np.array(w0, np.float64)
    step = np.full_like(w, lr)
    prev_g = np.zeros_like(w)
    path = []
    for _ in range(steps):
        g = grad_fn(w)
        product = g * prev_g
        step = np.where(product > 0, np.minimum(step * eta_plus, max_step), step)
        step = np.where(product < 0, np.maximum(step * eta_minus, min_step), step)
        g = np.where(product < 0, 0.0, g)  # on a flip: no step, forget the gradient
        w = w - step * np.sign(g)
        prev_g = g
        path.append(w.copy())
    return np.array(path)


RPROP_SETTINGS = {
    "default": dict(learning_rate=0.1),
    "custom": dict(learning_rate=0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-4, max_step_size=0.5),
}


@pytest.mark.parametrize("setting", list(RPROP_SETTINGS))
def test_rprop_matches_irprop_minus_rule_float64(setting):
    kwargs = RPROP_SETTINGS[setting]
    with jax.enable_x64(True):
        loss, params = quadratic_problem(jnp.float64)
        ours = np.asarray(jax.jit(lambda p: trajectory(optim.rprop(**kwargs), loss, p))(params)["x"])
    a, c = quadratic_matrices()
    reference = irprop_minus_numpy(lambda w: a @ (w - c), np.zeros(10), STEPS, **kwargs_to_numpy(kwargs))
    np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)


def kwargs_to_numpy(kwargs):
    names = dict(learning_rate="lr", eta_minus="eta_minus", eta_plus="eta_plus",
                  min_step_size="min_step", max_step_size="max_step")
    return {names[k]: v for k, v in kwargs.items()}


def test_rprop_rule_on_random_sign_sequences_float32():
    """Gradients with agreeing, flipping and zero entries, fed directly."""
    rng = np.random.RandomState(2)
    grads = rng.choice([-2.0, -0.5, 0.0, 0.5, 2.0], size=(40, 3, 7)).astype(np.float32)
    opt = optim.scale_by_rprop(0.1, eta_minus=0.4, eta_plus=1.3, min_step_size=0.01, max_step_size=0.3)
    state = opt.init(jnp.zeros((3, 7), jnp.float32))
    update = jax.jit(opt.update)
    ours = []
    for g in grads:
        step, state = update(jnp.asarray(g), state)
        ours.append(np.asarray(step))
    sequence = iter(grads.astype(np.float64))
    reference = -irprop_minus_numpy(lambda w: next(sequence), np.zeros((3, 7)), len(grads), lr=0.1,
                                    eta_minus=0.4, eta_plus=1.3, min_step=0.01, max_step=0.3)
    np.testing.assert_allclose(np.cumsum(ours, axis=0), reference, rtol=1e-5, atol=1e-6)


def test_rprop_first_update_is_applied_at_once():
    """optax.rprop's first update is zero (it lags one step); ours moves at once."""
    loss, params = quadratic_problem(jnp.float32)
    grads = jax.grad(loss)(params)
    opt = optim.rprop(0.1)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates["x"], -0.1 * np.sign(grads["x"]))
    assert np.all(np.asarray(updates["x"]) != 0)
