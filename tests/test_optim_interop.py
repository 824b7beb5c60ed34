"""Precision and optax interop (issue 13, optimizer side).

* complex64 parameters: every alias optax supports with complex parameters
  follows optax's trajectory (second moments use |g|² = Re(g·conj(g))).
* dtypes: states and updates keep the parameters' dtype (float16, bfloat16,
  float32, float64) unless ``mu_dtype`` / ``accumulator_dtype`` says otherwise.
* ``optax.tree_map_params`` maps over the states of our aliases, ``masked``,
  ``chain`` and the wrappers.
* optax's own expectations, written as our tests: masked (stateful) SGD,
  callable-pytree masks, extra arguments through ``chain``, ``None`` updates
  through ``add_decayed_weights``.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import optim

# ---------------------------------------------------------------- complex

STEPS = 100


def complex_problem():
    """optax's complex parabola: Σ|x - (1+i)c|², from x = (-1, 10, 1)."""
    initial = jnp.asarray([-1.0, 10.0, 1.0], jnp.complex64)
    target = jnp.asarray([1.0, -1.0, 1.0], jnp.complex64) * (1 + 1j)

    def loss(x):
        r = x - target
        return jnp.sum((r.conj() * r).real)

    return loss, initial, target


def complex_trajectory(opt, loss, params):
    """optax's convention: the gradient is conjugated before the update."""

    def body(carry, _):
        params, state = carry
        grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    return jax.lax.scan(body, (params, opt.init(params)), None, length=STEPS)[1]


# id -> (ours, optax's): every alias of ours that optax runs on complex parameters.
COMPLEX_CASES = {
    "sgd": (lambda: optim.sgd(0.05), lambda: optax.sgd(0.05)),
    "momentum": (lambda: optim.momentum(0.02), lambda: optax.sgd(0.02, momentum=0.9)),
    "nesterov": (lambda: optim.nesterov(0.02), lambda: optax.sgd(0.02, momentum=0.9, nesterov=True)),
    "rmsprop": (lambda: optim.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    "rmsprop-pytorch-momentum-bias": (
        lambda: optim.rmsprop(0.01, eps_in_sqrt=False, momentum=0.5, bias_correction=True),
        lambda: optax.rmsprop(0.01, eps_in_sqrt=False, momentum=0.5, bias_correction=True)),
    "rmsprop-centered": (lambda: optim.rmsprop(0.01, centered=True, eps=1e-4),
                         lambda: optax.rmsprop(0.01, centered=True, eps=1e-4)),
    "adagrad": (lambda: optim.adagrad(0.3), lambda: optax.adagrad(0.3)),
    "adam": (lambda: optim.adam(0.05), lambda: optax.adam(0.05)),
    "adam-eps-root": (lambda: optim.adam(0.05, b1=0.8, eps=1e-6, eps_root=1e-8),
                      lambda: optax.adam(0.05, b1=0.8, eps=1e-6, eps_root=1e-8)),
    "nadam": (lambda: optim.adam(0.05, nesterov=True), lambda: optax.nadam(0.05)),
    "adamw": (lambda: optim.adamw(0.05, weight_decay=0.1), lambda: optax.adamw(0.05, weight_decay=0.1)),
}


@pytest.fixture(scope="module")
def complex_trajectories():
    loss, initial, _ = complex_problem()

    @jax.jit
    def run(params):
        return {case: (complex_trajectory(ours(), loss, params), complex_trajectory(ref(), loss, params))
                for case, (ours, ref) in COMPLEX_CASES.items()}

    return jax.device_get(run(initial))


@pytest.mark.parametrize("case", list(COMPLEX_CASES))
def test_complex64_parameters_follow_optax(complex_trajectories, case):
    ours, reference = complex_trajectories[case]
    assert ours.dtype == np.complex64
    assert np.all(np.isfinite(reference)) and not np.allclose(reference[-1], reference[0])
    # The imaginary parts move: |g|² (not g²) couples real and imaginary parts.
    assert np.any(np.abs(reference[-1].imag) > 1e-2)
    np.testing.assert_allclose(ours, reference, rtol=2e-5, atol=2e-6)


def test_complex_second_moment_is_real_abs_squared_numpy():
    """One RMSProp step written out in NumPy: ν = (1-γ)|g|², u = g / √(ν + ε)."""
    g = np.asarray([3 + 4j, -1 + 2j, 0.5 - 0.5j], np.complex64)
    opt = optim.scale_by_rms(decay=0.9, eps=1e-8)
    updates, state = opt.update(jnp.asarray(g), opt.init(jnp.zeros(3, jnp.complex64)))
    nu = 0.1 * np.abs(g.astype(np.complex128)) ** 2
    np.testing.assert_allclose(state.nu, nu, rtol=1e-6)
    np.testing.assert_allclose(np.imag(state.nu), 0.0)
    np.testing.assert_allclose(updates, g / np.sqrt(nu + 1e-8), rtol=1e-6)


def test_complex_clip_by_norm_uses_the_modulus():
    g = jnp.asarray([3 + 4j, 0j], jnp.complex64)  # ‖g‖ = 5
    for clipper in (optim.clip_by_norm(1.0), optim.clip_by_global_norm(1.0)):
        clipped, _ = clipper.update(g, optax.EmptyState())
        np.testing.assert_allclose(clipped, np.asarray([0.6 + 0.8j, 0j]), rtol=1e-6)
    expected, _ = optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())
    np.testing.assert_allclose(optim.clip_by_global_norm(1.0).update(g, optax.EmptyState())[0], expected,
                               rtol=1e-6)


# ---------------------------------------------------------------- dtypes

DTYPE_CASES = {
    "sgd": lambda: optim.sgd(0.1),
    "momentum": lambda: optim.momentum(0.1),
    "nesterov": lambda: optim.nesterov(0.1),
    "rmsprop": lambda: optim.rmsprop(0.1, momentum=0.5, bias_correction=True),
    "rmsprop-centered": lambda: optim.rmsprop(0.1, centered=True),
    "adagrad": lambda: optim.adagrad(0.1),
    "adadelta": lambda: optim.adadelta(weight_decay=0.1),
    "adam": lambda: optim.adam(0.1),
    "nadam": lambda: optim.adam(0.1, nesterov=True),
    "adamw": lambda: optim.adamw(optax.linear_schedule(0.1, 0.01, 5)),
    "rprop": lambda: optim.rprop(0.1),
    "sign_sgd": lambda: optim.sign_sgd(0.1),
    "clip-l2-masked": lambda: optim.chain(
        optim.clip_by_global_norm(1.0), optim.clip_by_norm(1.0), optim.clip(1.0),
        optim.add_l2_penalty(0.1, mask={"w": True, "b": False}), optim.adam(0.1)),
    "skip_nonfinite": lambda: optim.skip_nonfinite(optim.adam(0.1)),
    "accumulate": lambda: optim.accumulate_gradients(optim.momentum(0.1), every_k=2),
}

COUNT_FIELDS = ("count", "num_skipped", "mini_step")


def dtype_params(dtype):
    return {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.25]], dtype), "b": jnp.asarray([1.0, -0.5], dtype)}


def assert_state_dtypes(state, dtype, overrides=()):
    """Counts int32; every other leaf ``dtype`` (or the override whose field name is on its path)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = jax.tree_util.keystr(path)
        if any(f".{field}" in name for field in COUNT_FIELDS):
            assert leaf.dtype == jnp.int32, name
            continue
        expected = next((d for field, d in overrides if f".{field}" in name), dtype)
        assert leaf.dtype == jnp.dtype(expected), f"{name}: {leaf.dtype}, expected {jnp.dtype(expected)}"


def three_steps(opt, params, grads):
    """(initial state, state after three updates, last updates)."""
    initial = state = opt.init(params)
    for _ in range(3):  # later steps see a nonzero state
        updates, state = opt.update(grads, state, params)
    return initial, state, updates


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_states_and_updates_keep_the_parameter_dtype(dtype):
    with jax.enable_x64(dtype == "float64"):
        params = dtype_params(dtype)
        grads = jax.tree.map(lambda p: p * 0.5 - 0.1, params)
        results = jax.jit(lambda p, g: {case: three_steps(make(), p, g) for case, make in DTYPE_CASES.items()})(
            params, grads)
    for case, (initial, state, updates) in results.items():
        assert_state_dtypes(initial, dtype)
        assert_state_dtypes(state, dtype)
        for leaf in jax.tree.leaves(updates):
            assert leaf.dtype == jnp.dtype(dtype), f"{case}: updates {leaf.dtype}"
            assert bool(jnp.all(jnp.isfinite(leaf))), case


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_low_precision_adam_step_matches_optax(dtype):
    """The same dtype handling as optax (which also keeps the params' dtype)."""
    with jax.enable_x64(dtype == "float64"):
        params = dtype_params(dtype)
        grads = jax.tree.map(lambda p: p * 0.5 - 0.1, params)
        for ours, ref in [(optim.adam(0.1), optax.adam(0.1)), (optim.rmsprop(0.1), optax.rmsprop(0.1))]:
            state, ref_state = ours.init(params), ref.init(params)
            ours_update, ref_update = jax.jit(ours.update), jax.jit(ref.update)  # same compiled pow
            for _ in range(3):
                updates, state = ours_update(grads, state, params)
                expected, ref_state = ref_update(grads, ref_state, params)
            assert [leaf.dtype for leaf in jax.tree.leaves(state)] == [
                leaf.dtype for leaf in jax.tree.leaves(ref_state)]
            chex.assert_trees_all_close(updates, expected, rtol=1e-2 if dtype in ("float16", "bfloat16") else 1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_mu_dtype_and_accumulator_dtype_override_the_parameter_dtype(dtype):
    with jax.enable_x64(True):
        params = dtype_params("float32")
        grads = jax.tree.map(lambda p: p * 0.5, params)
        cases = [
            (optim.adam(0.1, mu_dtype=dtype), [("mu", dtype)]),
            (optim.adamw(0.1, mu_dtype=dtype), [("mu", dtype)]),
            (optim.scale_by_adam(mu_dtype=dtype), [("mu", dtype)]),
            (optim.momentum(0.1, accumulator_dtype=dtype), [("trace", dtype)]),
            (optim.sgd(0.1, momentum=0.5, nesterov=True, accumulator_dtype=dtype), [("trace", dtype)]),
            (optim.accumulate_gradients(optim.sgd(0.1), 2, accumulator_dtype=dtype), [("mean_grads", dtype)]),
        ]

        def init_and_update(params, grads):  # every case in one compiled program
            results = []
            for opt, _ in cases:
                state = opt.init(params)
                results.append((state, *opt.update(grads, state, params)))
            return results

        for (_, overrides), (initial, updates, state) in zip(cases, jax.jit(init_and_update)(params, grads)):
            assert_state_dtypes(initial, "float32", overrides)
            assert_state_dtypes(state, "float32", overrides)
            for leaf in jax.tree.leaves(updates):
                assert leaf.dtype == jnp.float32


def test_bfloat16_first_moment_matches_optax_mu_dtype():
    params = dtype_params("float32")
    grads = jax.tree.map(lambda p: p * 0.5 - 0.1, params)
    ours, ref = optim.adam(0.1, mu_dtype=jnp.bfloat16), optax.adam(0.1, mu_dtype=jnp.bfloat16)
    state, ref_state = ours.init(params), ref.init(params)
    ours_update, ref_update = jax.jit(ours.update), jax.jit(ref.update)
    for _ in range(3):
        updates, state = ours_update(grads, state, params)
        expected, ref_state = ref_update(grads, ref_state, params)
    assert [leaf.dtype for leaf in jax.tree.leaves(state)] == [leaf.dtype for leaf in jax.tree.leaves(ref_state)]
    chex.assert_trees_all_close(updates, expected, rtol=1e-6)
    for ours_leaf, ref_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(np.asarray(ours_leaf, np.float64), np.asarray(ref_leaf, np.float64), rtol=1e-6)


# ---------------------------------------------------------------- tree_map_params

def plus_one_expectation(before, after):
    """Counters unchanged, every parameter-shaped leaf + 1."""
    for (path, old), new in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after)):
        name = jax.tree_util.keystr(path)
        if any(f".{field}" in name for field in COUNT_FIELDS):
            np.testing.assert_array_equal(new, old, err_msg=name)
        else:
            np.testing.assert_allclose(new, old + 1, err_msg=name)


TREE_MAP_CASES = {
    **DTYPE_CASES,
    "masked-adam": lambda: optim.masked(optim.adam(0.1), {"w": True, "b": False}),
    "masked-by-name": lambda: optim.masked(optim.momentum(0.1), optim.mask_by_name(lambda p: p[-1] == "w")),
    "adamw-masked": lambda: optim.adamw(0.1, mask=optim.mask_by_name(lambda p: p[-1] == "w")),
    "optax-in-ours": lambda: optim.chain(optax.scale_by_adam(), optim.scale_by_rms(), optim.sgd(0.1)),
}


@pytest.mark.parametrize("case", list(TREE_MAP_CASES))
def test_tree_map_params_maps_every_parameter_copy_in_the_state(case):
    opt = TREE_MAP_CASES[case]()
    params = dtype_params("float32")
    state = opt.init(params)
    _, state = opt.update(jax.tree.map(lambda p: p - 0.3, params), state, params)
    mapped = optax.tree_map_params(opt, lambda p: p + 1, state)
    chex.assert_trees_all_equal_structs(mapped, state)
    plus_one_expectation(state, mapped)


def test_tree_map_params_of_masked_equals_init_of_mapped_params():
    """optax's test_tree_map_params: an inner state holding parameter copies."""
    params = {"a": {"b": (jnp.zeros((1, 2)), jnp.zeros((2, 2)))},
              "c": {"d": jnp.zeros((1, 2)), "e": (jnp.zeros((1, 2)), jnp.zeros((1, 2)))}}
    mask = {"a": {"b": (True, False)}, "c": {"d": True, "e": (False, True)}}
    expected = {"a": {"b": (jnp.ones((1, 2)), jnp.zeros((2, 2)))},
                "c": {"d": jnp.ones((1, 2)), "e": (jnp.ones((1, 2)), jnp.ones((1, 2)))}}
    inner = optax.GradientTransformation(
        lambda p: {"count": 1, "params": p, "params_copy": p}, lambda u, s, p=None: (u, s))
    opt = optim.masked(inner, mask)
    increment_dim_1 = lambda v: v + 1 if v.shape[0] == 1 else v
    result = optax.tree_map_params(opt, increment_dim_1, opt.init(params))
    chex.assert_trees_all_equal(result, opt.init(expected))
    # Sharding-style annotations for the masked-in leaves only.
    axes = {"a": {"b": (1, 2)}, "c": {"d": 1, "e": (1, 2)}}
    annotated = optax.tree_map_params(
        opt, lambda p, axis: None if isinstance(p, optax.MaskedNode) else axis, opt.init(params), axes,
        is_leaf=lambda v: isinstance(v, optax.MaskedNode), transform_non_params=lambda _: None)
    assert isinstance(annotated, optim.MaskedState) and annotated.inner_state["count"] is None
    assert annotated.inner_state["params"] == {"a": {"b": (1, None)}, "c": {"d": 1, "e": (None, 2)}}


# ---------------------------------------------------------------- optax's masking expectations

MASK = {"a": True, "b": [False, True], "c": {"d": True, "e": (False, True)}}


def masking_params():
    return jax.tree.map(jnp.asarray, {"a": 1.0, "b": [2.0, 3.0], "c": {"d": 4.0, "e": (5.0, 6.0)}})


@pytest.mark.parametrize("use_fn", [False, True], ids=["mask-tree", "mask-fn"])
@pytest.mark.parametrize("make", [lambda: optim.sgd(1.0), lambda: optim.sgd(1.0, momentum=0.0)],
                         ids=["sgd", "stateful_sgd"])
def test_masked_sgd_negates_only_masked_in_updates(make, use_fn):
    params = masking_params()
    updates = jax.tree.map(lambda x: x / 10.0, params)
    negate = lambda u: jax.tree.map(lambda g, m: -g if m else g, u, MASK)
    opt = optim.masked(make(), (lambda _: MASK) if use_fn else MASK)
    state = jax.jit(opt.init)(params)
    chex.assert_trees_all_equal_structs(optax.tree_map_params(opt.init, lambda v: v, state), state)
    new_updates, state = jax.jit(opt.update)(updates, state, params)
    chex.assert_trees_all_close(new_updates, negate(updates))
    again, _ = jax.jit(opt.update)(new_updates, state)  # without params
    chex.assert_trees_all_close(again, negate(negate(updates)))


def test_masked_stateful_sgd_state_structure():
    params = {"a": [jnp.ones(1), (jnp.ones(2), jnp.ones(3))], "b": {"c": jnp.ones(4), "d": jnp.ones(5)}}
    opt = optim.masked(optim.sgd(0.1, momentum=0.5), {"a": [True, (True, False)], "b": False})
    trace = jax.jit(opt.init)(params).inner_state[0].trace
    chex.assert_trees_all_equal_structs(
        trace, {"a": [jnp.zeros(1), (jnp.zeros(2), optax.MaskedNode())], "b": optax.MaskedNode()})


def test_mask_compatible_with_callable_pytree():
    """A callable pytree (an equinox-style module) is a mask tree, not a mask function."""

    @dataclasses.dataclass
    class Module:
        w: object

        def __call__(self, x):
            return self.w.dot(x)

    jax.tree_util.register_pytree_node(Module, lambda m: ((m.w,), None), lambda _, c: Module(*c))
    module = Module(jnp.asarray([1.0, 2.0, 3.0]))
    opt = optim.masked(optim.sgd(1.0), Module(False))
    new_updates, _ = opt.update(module, opt.init(module))
    chex.assert_trees_all_equal(new_updates, module)
    opt = optim.masked(optim.sgd(1.0), Module(True))
    new_updates, _ = opt.update(module, opt.init(module))
    chex.assert_trees_all_close(new_updates.w, -module.w)


# ---------------------------------------------------------------- chain and extra arguments

def test_chain_forwards_extra_arguments():
    seen = {}

    def update_fn(updates, state, params=None, *, value, grad, value_fn, **extra_args):
        seen.update(value=value, grad=grad, value_fn=value_fn, extra=extra_args)
        return updates, state

    needs_extra = optax.GradientTransformationExtraArgs(lambda params: (), update_fn)
    opt = optim.chain(optim.adam(1e-3), needs_extra)
    assert isinstance(opt, optax.GradientTransformationExtraArgs)
    params = {"a": 1, "b": 2}  # Python numbers, as in optax's test
    state = opt.init(params)
    opt.update(params, state, value=1.0, grad=params, value_fn=len, ignored_kwarg="hi")
    assert seen == {"value": 1.0, "grad": params, "value_fn": len, "extra": {"ignored_kwarg": "hi"}}
    # and through optax's chain around ours
    seen.clear()
    outer = optax.chain(optim.sgd(0.1), opt)
    outer.update(params, outer.init(params), params, value=2.0, grad=params, value_fn=len)
    assert seen["value"] == 2.0


def test_chain_state_is_optax_chain_state():
    params = dtype_params("float32")
    parts = (optim.scale_by_adam(), optax.scale_by_rms(), optim.scale_by_learning_rate(optax.constant_schedule(0.1)))
    ours, reference = optim.chain(*parts).init(params), optax.chain(*parts).init(params)
    assert type(ours) is tuple
    chex.assert_trees_all_equal(ours, reference)


# ---------------------------------------------------------------- add_decayed_weights

def test_add_decayed_weights_none_argument():
    """optax's test_none_argument: None updates stay None."""
    weights = (jnp.ones((2,)), {"a": jnp.ones((2,)), "b": jnp.ones((2,))})
    updates, _ = optim.add_decayed_weights(0.1).update(None, 0, weights)
    assert updates is None
    updates, _ = optim.add_decayed_weights(0.1).update((None, {"a": None, "b": jnp.ones(2)}), 0, weights)
    assert updates[0] is None and updates[1]["a"] is None
    np.testing.assert_allclose(updates[1]["b"], 1.1)


@pytest.mark.parametrize("make, name", [(optim.add_decayed_weights, "add_decayed_weights"),
                                        (optim.add_l2_penalty, "add_l2_penalty")])
def test_add_decayed_weights_without_params_says_params_are_required(make, name):
    opt = make(0.1)
    params = dtype_params("float32")
    with pytest.raises(ValueError, match=rf"^{name}: params are required"):
        opt.update(params, opt.init(params))
    with pytest.raises(ValueError, match="params are required"):
        optim.adamw(0.1).update(params, optim.adamw(0.1).init(params))
