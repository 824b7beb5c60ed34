"""The notes' update rules written out in NumPy float64, against ours.

Each reference is a plain loop over k = 1..200 on the ill-conditioned
quadratic ½(w-c)ᵀA(w-c) (gradient A(w-c)), in the notes' notation. Ours runs
in float64 (x64 enabled inside the fixture only); trajectories must agree to
rtol 1e-10, and the final optimizer states (RMSProp's running mean E[g²],
Adam's m, v and k) must equal the reference's.

The reference orders floating-point operations as the formulas read, not as
ours does, so the two differ by rounding (~1e-16). Sign-like rules
(RMSProp/AdaDelta with a tiny ε near the optimum) amplify such differences
chaotically over 200 steps; the settings below keep the dynamics contracting
so that rounding stays at ~1e-13.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import optim

STEPS = 200


def quadratic_matrices():
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(10, 10))
    return q @ np.diag(np.logspace(-2, 1, 10)) @ q.T, rng.randn(10)


A, C = quadratic_matrices()


def gradient(w):
    return A @ (w - C)


def run_numpy(step_fn, state, steps=STEPS):
    """``step_fn(g, k, w, state) -> (Δw, state)`` iterated from w = 0."""
    w = np.zeros(10)
    path = []
    for k in range(1, steps + 1):
        delta, state = step_fn(gradient(w), k, w, state)
        w = w + delta
        path.append(w.copy())
    return np.array(path), state


# ------------------------------------------------------------ the notes' rules

def rmsprop_notes(eta, gamma, eps):
    """E[∂²D]_k = γE[∂²D]_{k-1} + (1-γ)(∂D)²;  w ← w - η/√(E[∂²D]_k + ε) ∂D."""
    def step(g, k, w, mean_square):
        mean_square = gamma * mean_square + (1 - gamma) * g**2
        return -eta / np.sqrt(mean_square + eps) * g, mean_square
    return step, np.zeros(10)


def rmsprop_pytorch(eta, gamma, eps):
    """ε outside the root: w ← w - η ∂D / (√E[∂²D]_k + ε)."""
    def step(g, k, w, mean_square):
        mean_square = gamma * mean_square + (1 - gamma) * g**2
        return -eta * g / (np.sqrt(mean_square) + eps), mean_square
    return step, np.zeros(10)


def adam_notes(eta, delta, gamma, eps):
    """m̂_k = m_k/(1-δ^k), v̂_k = v_k/(1-γ^k);  w ← w - η/√(v̂_k + ε) m̂_k."""
    def step(g, k, w, moments):
        m, v = moments
        m = delta * m + (1 - delta) * g
        v = gamma * v + (1 - gamma) * g**2
        m_hat, v_hat = m / (1 - delta**k), v / (1 - gamma**k)
        return -eta / np.sqrt(v_hat + eps) * m_hat, (m, v)
    return step, (np.zeros(10), np.zeros(10))


def adam_kingma(eta, delta, gamma, eps, weight_decay=0.0):
    """ε outside the root (Kingma & Ba); with λ: AdamW's decoupled decay."""
    def step(g, k, w, moments):
        m, v = moments
        m = delta * m + (1 - delta) * g
        v = gamma * v + (1 - gamma) * g**2
        m_hat, v_hat = m / (1 - delta**k), v / (1 - gamma**k)
        return -eta * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * w), (m, v)
    return step, (np.zeros(10), np.zeros(10))


def adagrad(eta, g0, eps, eps_in_sqrt):
    """G_k = G_{k-1} + g²;  w ← w - η g/√(G_k + ε)  (or g/(√G_k + ε))."""
    def step(g, k, w, total):
        total = total + g**2
        denominator = np.sqrt(total + eps) if eps_in_sqrt else np.sqrt(total) + eps
        return -eta * g / denominator, total
    return step, np.full(10, g0)


def adadelta(eta, rho, eps):
    """Zeiler: Δw = √(E[Δw²]_{k-1}+ε)/√(E[g²]_k+ε) g;  w ← w - η Δw."""
    def step(g, k, w, averages):
        mean_g2, mean_dx2 = averages
        mean_g2 = rho * mean_g2 + (1 - rho) * g**2
        dx = np.sqrt(mean_dx2 + eps) / np.sqrt(mean_g2 + eps) * g
        mean_dx2 = rho * mean_dx2 + (1 - rho) * dx**2
        return -eta * dx, (mean_g2, mean_dx2)
    return step, (np.zeros(10), np.zeros(10))


def momentum_notes(eta, mu):
    """Δw_k = μ Δw_{k-1} - η ∂D."""
    def step(g, k, w, previous_delta):
        delta = mu * previous_delta - eta * g
        return delta, delta
    return step, np.zeros(10)


def nesterov_lookahead(eta, mu):
    """t_k = g + μ t_{k-1};  w ← w - η(g + μ t_k)  (Sutskever / PyTorch form)."""
    def step(g, k, w, trace):
        trace = g + mu * trace
        return -eta * (g + mu * trace), trace
    return step, np.zeros(10)


def sign_descent(eta):
    def step(g, k, w, state):
        return -eta * np.sign(g), state
    return step, None


def sgd_on_regularized_loss(eta, lam):
    """The notes' L = Loss + ½λ‖W‖²: w ← w - η(∂Loss + λw)."""
    def step(g, k, w, state):
        return -eta * (g + lam * w), state
    return step, None


# id -> (ours, NumPy reference)
CASES = {
    "rmsprop-notes": (lambda: optim.rmsprop(0.01, decay=0.9, eps=1e-2),
                      lambda: rmsprop_notes(0.01, 0.9, 1e-2)),
    "rmsprop-pytorch": (lambda: optim.rmsprop(0.01, decay=0.99, eps=1e-6, eps_in_sqrt=False),
                        lambda: rmsprop_pytorch(0.01, 0.99, 1e-6)),
    "adam-notes": (lambda: optim.adam(0.05, b1=0.9, b2=0.999, eps=0.0, eps_root=1e-8),
                   lambda: adam_notes(0.05, 0.9, 0.999, 1e-8)),
    "adam-default": (lambda: optim.adam(0.05), lambda: adam_kingma(0.05, 0.9, 0.999, 1e-8)),
    "adamw": (lambda: optim.adamw(0.05, weight_decay=0.1), lambda: adam_kingma(0.05, 0.9, 0.999, 1e-8, 0.1)),
    "adagrad-eps-inside": (lambda: optim.adagrad(0.3, eps=1e-7),
                           lambda: adagrad(0.3, 0.1, 1e-7, eps_in_sqrt=True)),
    "adagrad-pytorch": (lambda: optim.adagrad(0.3, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
                        lambda: adagrad(0.3, 0.0, 1e-10, eps_in_sqrt=False)),
    "adadelta": (lambda: optim.adadelta(0.1, rho=0.9, eps=1e-2), lambda: adadelta(0.1, 0.9, 1e-2)),
    "momentum-notes": (lambda: optim.momentum(0.02, momentum=0.9), lambda: momentum_notes(0.02, 0.9)),
    "nesterov": (lambda: optim.nesterov(0.02, momentum=0.9), lambda: nesterov_lookahead(0.02, 0.9)),
    "sign_sgd": (lambda: optim.sign_sgd(0.01), lambda: sign_descent(0.01)),
    "sgd-coupled-l2": (lambda: optim.chain(optim.add_l2_penalty(0.5), optim.sgd(0.05)),
                       lambda: sgd_on_regularized_loss(0.05, 0.5)),
}


@functools.lru_cache(maxsize=None)
def our_runs():
    """{case: (trajectory (steps, 10), final state)} computed in float64."""
    with jax.enable_x64(True):
        a, c = jnp.asarray(A), jnp.asarray(C)
        loss = lambda p: 0.5 * (p["x"] - c) @ a @ (p["x"] - c)

        def run(opt, params):
            def body(carry, _):
                params, state = carry
                updates, state = opt.update(jax.grad(loss)(params), state, params)
                params = optax.apply_updates(params, updates)
                return (params, state), params["x"]

            (_, state), path = jax.lax.scan(body, (params, opt.init(params)), None, length=STEPS)
            return path, state

        params = {"x": jnp.zeros(10, jnp.float64)}
        runs = jax.jit(lambda p: {case: run(ours(), p) for case, (ours, _) in CASES.items()})(params)
        return jax.device_get(runs)


@pytest.mark.parametrize("case", list(CASES))
def test_rule_matches_notes_formula_in_float64(case):
    ours, _ = our_runs()[case]
    reference, _ = run_numpy(*CASES[case][1]())
    assert ours.dtype == np.float64
    assert np.linalg.norm(reference[-1] - reference[0]) > 1e-3, "the parameters should move"
    np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)


def test_rmsprop_state_is_the_running_mean_of_squared_gradients():
    _, state = our_runs()["rmsprop-notes"]
    _, mean_square = run_numpy(*rmsprop_notes(0.01, 0.9, 1e-2))
    rms_state = state[0]
    assert isinstance(rms_state, optim.ScaleByRmsState)
    np.testing.assert_allclose(rms_state.nu["x"], mean_square, rtol=1e-10)


def test_adam_state_holds_uncorrected_moments_and_count():
    _, state = our_runs()["adam-notes"]
    _, (m, v) = run_numpy(*adam_notes(0.05, 0.9, 0.999, 1e-8))
    adam_state = state[0]
    assert isinstance(adam_state, optim.ScaleByAdamState)
    assert adam_state.count.dtype == np.int32 and int(adam_state.count) == STEPS
    np.testing.assert_allclose(adam_state.mu["x"], m, rtol=1e-10)
    np.testing.assert_allclose(adam_state.nu["x"], v, rtol=1e-10)


def test_adam_first_step_is_bias_corrected():
    """With m̂, v̂ the first update is η·g/|g| = η·sign(g); without the
    correction it would be η(1-δ)g/√((1-γ)g²) ≈ 3.2η·sign(g)."""
    grads = {"x": jnp.asarray([0.3, -2.0, 1e-3], jnp.float32)}
    opt = optim.adam(0.1, eps=0.0)
    updates, _ = opt.update(grads, opt.init(grads))
    # float32: 1-γ (rounded from float64) and 1-γ^1 (computed in float32)
    # differ by 1.3e-5 relative, as in optax.
    np.testing.assert_allclose(updates["x"], -0.1 * np.sign(grads["x"]), rtol=1e-5)
