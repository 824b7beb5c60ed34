"""Out-of-range concrete hyperparameters raise ValueError naming the
argument, the value and the accepted range; schedules and traced values are
not checked (they have no value yet)."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_nn import _validation, optim

# (call, argument name, bad value, range text)
BAD_ARGUMENTS = [
    *[(lambda v, f=f: getattr(optim, f)(v), "learning_rate", -0.1, "[0, inf)")
      for f in ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "rprop", "sign_sgd")],
    (lambda v: optim.sgd(0.1, momentum=v), "momentum", 1.0, "[0, 1)"),
    (lambda v: optim.momentum(0.1, momentum=v), "momentum", -0.5, "[0, 1)"),
    (lambda v: optim.nesterov(0.1, momentum=v), "momentum", 1.5, "[0, 1)"),
    (lambda v: optim.rmsprop(0.1, decay=v), "decay", 1.0, "[0, 1)"),
    (lambda v: optim.rmsprop(0.1, eps=v), "eps", -1e-8, "[0, inf)"),
    (lambda v: optim.rmsprop(0.1, initial_scale=v), "initial_scale", -1.0, "[0, inf)"),
    (lambda v: optim.rmsprop(0.1, momentum=v), "momentum", 2.0, "[0, 1)"),
    (lambda v: optim.rmsprop(0.1, centered=True, decay=v), "decay", -0.1, "[0, 1)"),
    (lambda v: optim.adagrad(0.1, initial_accumulator_value=v), "initial_accumulator_value", -0.1, "[0, inf)"),
    (lambda v: optim.adagrad(0.1, eps=v), "eps", -1.0, "[0, inf)"),
    (lambda v: optim.adadelta(rho=v), "rho", 1.0, "[0, 1)"),
    (lambda v: optim.adadelta(eps=v), "eps", -1e-6, "[0, inf)"),
    (lambda v: optim.adadelta(weight_decay=v), "weight_decay", -1e-4, "[0, inf)"),
    (lambda v: optim.adam(0.1, b1=v), "b1", 1.0, "[0, 1)"),
    (lambda v: optim.adam(0.1, b2=v), "b2", -0.1, "[0, 1)"),
    (lambda v: optim.adam(0.1, eps=v), "eps", -1e-8, "[0, inf)"),
    (lambda v: optim.adam(0.1, eps_root=v), "eps_root", -1e-8, "[0, inf)"),
    (lambda v: optim.adamw(0.1, weight_decay=v), "weight_decay", -0.01, "[0, inf)"),
    (lambda v: optim.adamw(0.1, b1=v), "b1", float("nan"), "[0, 1)"),
    (lambda v: optim.rprop(0.1, eta_minus=v), "eta_minus", 0.0, "(0, 1]"),
    (lambda v: optim.rprop(0.1, eta_minus=v), "eta_minus", 1.5, "(0, 1]"),
    (lambda v: optim.rprop(0.1, eta_plus=v), "eta_plus", 0.9, "[1, inf)"),
    (lambda v: optim.rprop(0.1, min_step_size=v), "min_step_size", -1e-6, "[0, inf)"),
    (lambda v: optim.rprop(0.1, max_step_size=v), "max_step_size", 0.0, "(0, inf)"),
    (lambda v: optim.clip(v), "max_delta", 0.0, "(0, inf)"),
    (lambda v: optim.clip_by_norm(v), "max_norm", -1.0, "(0, inf]"),
    (lambda v: optim.clip_by_global_norm(v), "max_norm", 0.0, "(0, inf]"),
    (lambda v: optim.add_l2_penalty(v), "lam", -0.1, "[0, inf)"),
    (lambda v: optim.add_decayed_weights(v), "weight_decay", -0.1, "[0, inf)"),
    (lambda v: optim.scale_by_learning_rate(v), "learning_rate", -1.0, "[0, inf)"),
]


@pytest.mark.parametrize("make, name, value, interval", BAD_ARGUMENTS,
                         ids=[f"{i}-{name}={value}" for i, (_, name, value, _) in enumerate(BAD_ARGUMENTS)])
def test_out_of_range_value_raises_naming_argument_value_and_range(make, name, value, interval):
    with pytest.raises(ValueError) as error:
        make(value)
    assert str(error.value) == f"{name}={value!r}: must be in {interval}"


def test_min_step_size_above_max_step_size_raises():
    with pytest.raises(ValueError, match=re.escape("min_step_size=1.0: must be <= max_step_size=0.5")):
        optim.rprop(0.1, min_step_size=1.0, max_step_size=0.5)


def test_less_equal_message_states_the_relation_not_a_made_up_lower_bound():
    # The message used to read "must be in [0, high=...]" whatever the real
    # lower bound of the smaller value was.
    with pytest.raises(ValueError) as error:
        _validation.check_less_equal("low", -3.0, "high", -5.0)
    assert str(error.value) == "low=-3.0: must be <= high=-5.0"
    _validation.check_less_equal("low", -5.0, "high", -5.0)  # equal is allowed


@pytest.mark.parametrize("every_k", [0, -1, 2.5, 2.0, True, False, None, "2"])
def test_accumulate_gradients_every_k_must_be_a_positive_python_int(every_k):
    # 2.5 used to be accepted and then never emitted an update (the int32
    # step count never equals 2.5); 2.0 and True are not ints either.
    with pytest.raises(ValueError) as error:
        optim.accumulate_gradients(optim.sgd(0.1), every_k=every_k)
    assert str(error.value) == f"every_k={every_k!r}: must be an integer >= 1"


@pytest.mark.parametrize("every_k", [1, np.int64(2)])
def test_accumulate_gradients_accepts_integers_and_matches_optax_multisteps(every_k):
    params = jnp.ones(3)
    ours = optim.accumulate_gradients(optim.sgd(0.1), every_k=every_k)
    reference = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=int(every_k))
    ours_state, reference_state = ours.init(params), reference.init(params)
    for g in (jnp.array([1.0, -2.0, 3.0]), jnp.array([0.5, 0.5, -1.0])):
        ours_update, ours_state = ours.update(g, ours_state, params)
        reference_update, reference_state = reference.update(g, reference_state, params)
        np.testing.assert_allclose(ours_update, reference_update, rtol=1e-6)


@pytest.mark.parametrize("clipper", [optim.clip_by_norm, optim.clip_by_global_norm])
def test_max_norm_of_inf_is_accepted_and_nan_is_not(clipper):
    clipper(math.inf)
    with pytest.raises(ValueError, match=re.escape("max_norm=nan: must be in (0, inf]")):
        clipper(float("nan"))


def test_concrete_array_values_are_checked():
    with pytest.raises(ValueError, match=re.escape("learning_rate=-0.5: must be in [0, inf)")):
        optim.adam(jnp.asarray(-0.5))
    with pytest.raises(ValueError, match=r"^b1=\[0\.5 1\. \]: must be in \[0, 1\)$"):
        optim.adam(0.1, b1=np.asarray([0.5, 1.0]))


def test_boundary_values_are_accepted():
    optim.adam(0.0, b1=0.0, b2=0.0, eps=0.0, eps_root=0.0)  # eps=0 is allowed
    optim.rmsprop(0.1, decay=0.0, eps=0.0)
    optim.rprop(0.1, eta_minus=1.0, eta_plus=1.0, min_step_size=0.0, max_step_size=1e-6)
    optim.scale_by_learning_rate(None)


def test_schedules_are_not_checked():
    negative_schedule = optax.constant_schedule(-1.0)  # the caller's responsibility
    optim.sgd(negative_schedule)
    optim.add_decayed_weights(negative_schedule)


def test_traced_values_are_not_checked_under_jit_and_vmap():
    params = {"w": jnp.ones(3)}

    def first_update(lr, b1):
        opt = optim.adam(lr, b1=b1)
        return opt.update(params, opt.init(params))[0]["w"]

    # Values that would be rejected if concrete: the check is skipped, not run.
    jax.jit(first_update)(-0.1, 0.9)
    jax.vmap(first_update)(jnp.asarray([0.1, -0.1]), jnp.asarray([0.9, 1.5]))


def test_validation_helpers_return_the_value_and_format_ranges():
    assert _validation.check_nonnegative("x", 0.0) == 0.0
    assert _validation.check_in_range("x", 5, 1, 10, high_inclusive=True) == 5
    with pytest.raises(ValueError, match=re.escape("x=10: must be in [1, 10)")):
        _validation.check_in_range("x", 10, 1, 10)
    with pytest.raises(ValueError, match=re.escape("x=0.0: must be in (0, 1]")):
        _validation.check_in_range("x", 0.0, 0, 1, low_inclusive=False, high_inclusive=True)
    with pytest.raises(ValueError, match=re.escape("x='a': must be a number")):
        _validation.check_nonnegative("x", "a")
    assert _validation.check_unit_interval("x", None) is None
    assert _validation.is_concrete(1.0) and _validation.is_concrete(jnp.ones(2))
    assert not _validation.is_concrete(lambda step: 1.0)
    seen = []
    jax.jit(lambda v: seen.append(_validation.is_concrete(v)) or v)(1.0)
    assert seen == [False]
    with pytest.raises(ValueError, match=re.escape("x=inf: must be in (0, inf)")):
        _validation.check_positive("x", math.inf)


# ---------------------------------------------------------------- issue 11: the Python API

ALIASES_NEEDING_A_LEARNING_RATE = ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw",
                                   "rprop", "sign_sgd", "adadelta"]


@pytest.mark.parametrize("name", ALIASES_NEEDING_A_LEARNING_RATE)
def test_learning_rate_none_is_an_error(name):
    # optax reads None as "no scaling": adam(None) would climb the loss.
    with pytest.raises(ValueError, match=r"^learning_rate=None: must be a number >= 0 or a schedule"):
        getattr(optim, name)(None)


def test_adadelta_documents_a_default_learning_rate():
    params = {"w": jnp.ones(2)}
    opt = optim.adadelta()
    updates, _ = opt.update({"w": jnp.asarray([1.0, -1.0])}, opt.init(params), params)
    assert np.all(np.sign(updates["w"]) == [-1.0, 1.0])  # descends


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1, nesterov=True),
                                  lambda: optim.rmsprop(0.1, nesterov=True)], ids=["sgd", "rmsprop"])
def test_nesterov_without_momentum_is_an_error(make):
    # Deliberate: optax ignores nesterov=True without momentum (plain SGD).
    with pytest.raises(ValueError, match=r"^nesterov=True: needs momentum"):
        make()
    params = {"w": jnp.ones(2)}
    optax.sgd(0.1, nesterov=True).update(params, optax.sgd(0.1, nesterov=True).init(params))  # optax: silent


# (call, message start): hyperparameters of the wrong type raise a TypeError naming the argument.
WRONG_TYPES = [
    (lambda: optim.adam(0.1, b1="0.9"), "b1='0.9': must be a number, not str"),
    (lambda: optim.adam("0.1"), "learning_rate='0.1': must be a number, not str"),
    (lambda: optim.sgd(True), "learning_rate=True: must be a number, not bool"),
    (lambda: optim.adam(0.1, b2=None), "b2=None: must be a number"),
    (lambda: optim.rmsprop(0.1, decay=[0.9, "x"]), "decay=[0.9, 'x']: must be a number, not list"),
    (lambda: optim.scale_by_momentum(None), "momentum=None: must be a number"),
    (lambda: optim.rprop(0.1, eta_plus=None), "eta_plus=None: must be a number"),
    (lambda: optim.sgd(0.1, momentum=0.9, nesterov="yes"), "nesterov='yes': must be True or False, not str"),
    (lambda: optim.rmsprop(0.1, eps_in_sqrt="False"), "eps_in_sqrt='False': must be True or False, not str"),
    (lambda: optim.rmsprop(0.1, centered=1), "centered=1: must be True or False, not int"),
    (lambda: optim.rmsprop(0.1, bias_correction=None), "bias_correction=None: must be True or False"),
    (lambda: optim.adagrad(0.1, eps_in_sqrt=0), "eps_in_sqrt=0: must be True or False, not int"),
    (lambda: optim.adam(0.1, nesterov="no"), "nesterov='no': must be True or False, not str"),
    (lambda: optim.adam(0.1, mu_dtype="float99"), "mu_dtype='float99': must be a floating-point dtype"),
    (lambda: optim.momentum(0.1, accumulator_dtype=jnp.int32), "accumulator_dtype=<class 'jax.numpy.int32'>: "
                                                               "must be a floating-point dtype"),
    (lambda: optim.sgd(0.1, accumulator_dtype="int8"), "accumulator_dtype='int8': must be a floating-point dtype"),
    (lambda: optim.accumulate_gradients(optim.sgd(0.1), 2, accumulator_dtype="float99"),
     "accumulator_dtype='float99': must be a floating-point dtype"),
    (lambda: optim.add_decayed_weights("1e-4"), "weight_decay='1e-4': must be a number, not str"),
    (lambda: optim.clip_by_global_norm("1"), "max_norm='1': must be a number, not str"),
    (lambda: optim.scale_by_learning_rate(0.1, flip_sign="yes"), "flip_sign='yes': must be True or False"),
    (lambda: optim.rprop(optax.constant_schedule(0.1)), "learning_rate=<function"),
]


@pytest.mark.parametrize("make, message", WRONG_TYPES, ids=[m.split(":")[0] for _, m in WRONG_TYPES])
def test_wrong_type_raises_type_error_naming_the_argument(make, message):
    with pytest.raises(TypeError) as error:
        make()
    assert str(error.value).startswith(message)
    # Also a ValueError, so callers that report every bad value as one (the config layer) keep working.
    assert isinstance(error.value, ValueError)


def test_chain_needs_at_least_one_transformation():
    with pytest.raises(ValueError, match=r"^chain: needs at least one transformation, got none"):
        optim.chain()


@pytest.mark.parametrize("make, where", [
    (lambda: optim.chain(optim.sgd(0.1), 5), "chain: argument 2 is 5 (int)"),
    (lambda: optim.chain(optim.adam, optim.sgd(0.1)), "chain: argument 1 is <function adam"),
    (lambda: optim.masked(5, {"w": True}), "masked: inner is 5 (int)"),
    (lambda: optim.skip_nonfinite("adam"), "skip_nonfinite: inner is 'adam' (str)"),
    (lambda: optim.accumulate_gradients(None, 2), "accumulate_gradients: inner is None (NoneType)"),
])
def test_non_transformations_are_rejected_naming_the_position(make, where):
    with pytest.raises(TypeError) as error:
        make()
    assert str(error.value).startswith(where)
    assert "must be a gradient transformation" in str(error.value)


MISMATCH_PARAMS = {"dense": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}}


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adagrad", "adadelta", "adam", "adamw",
                                  "rprop", "sign_sgd"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_update_with_a_wrongly_shaped_gradient_names_the_leaf(name, jit):
    opt = getattr(optim, name)(0.1)
    state = opt.init(MISMATCH_PARAMS)
    grads = {"dense": {"w": jnp.ones((1, 2)), "b": jnp.ones(2)}}  # would broadcast to (3, 2)
    update = jax.jit(opt.update) if jit else opt.update
    with pytest.raises(ValueError, match=re.escape(
            "update: updates have shape (1, 2) at ['dense']['w'] but params have shape (3, 2)")):
        update(grads, state, MISMATCH_PARAMS)


def test_update_without_params_checks_against_the_state():
    opt = optim.adam(0.1)
    with pytest.raises(ValueError, match=re.escape(
            "update: updates have shape (1, 2) at ['dense']['w'] but the optimizer state (built from "
            "the params) have shape (3, 2)")):
        opt.update({"dense": {"w": jnp.ones((1, 2)), "b": jnp.ones(2)}}, opt.init(MISMATCH_PARAMS))


@pytest.mark.parametrize("grads, first_difference", [
    ({"dense": {"w": jnp.ones((3, 2))}}, "params have a leaf at ['dense']['b'] that the updates lack"),
    ({"dense": {"w": jnp.ones((3, 2)), "b": jnp.ones(2), "c": jnp.ones(2)}},
     "the updates have a leaf at ['dense']['c'] that the params lack"),
    ([jnp.ones((3, 2)), jnp.ones(2)], "params have a leaf at ['dense']['b'] that the updates lack"),
])
def test_update_with_a_different_tree_names_the_first_differing_path(grads, first_difference):
    opt = optim.sgd(0.1)
    with pytest.raises(ValueError) as error:
        opt.update(grads, opt.init(MISMATCH_PARAMS), MISMATCH_PARAMS)
    assert str(error.value).startswith("update: updates and params differ in tree structure")
    assert first_difference in str(error.value)


def test_shape_check_runs_only_at_trace_time(monkeypatch):
    from functional_nn.optim import base

    calls = []
    original = base.check_same_tree
    monkeypatch.setattr(base, "check_same_tree", lambda *args: calls.append(1) or original(*args))
    opt = optim.adam(0.1)
    params = MISMATCH_PARAMS
    update = jax.jit(opt.update)
    state = opt.init(params)
    for _ in range(3):
        _, state = update(params, state, params)
    assert len(calls) > 0
    traced_calls = len(calls)
    for _ in range(3):
        _, state = update(params, state, params)
    assert len(calls) == traced_calls  # compiled steps run no Python check


# ---------------------------------------------------------------- eps = 0 and a zero gradient

ZERO_DENOMINATOR_CASES = {
    "adam": (lambda: optim.adam(0.1, eps=0.0), lambda: optax.adam(0.1, eps=0.0)),
    "adam-nesterov": (lambda: optim.adam(0.1, eps=0.0, nesterov=True), lambda: optax.nadam(0.1, eps=0.0)),
    "adamw": (lambda: optim.adamw(0.1, eps=0.0, weight_decay=0.0), lambda: optax.adamw(0.1, eps=0.0, weight_decay=0.0)),
    "rmsprop": (lambda: optim.rmsprop(0.1, eps=0.0), lambda: optax.rmsprop(0.1, eps=0.0)),
    "rmsprop-pytorch": (lambda: optim.rmsprop(0.1, eps=0.0, eps_in_sqrt=False),
                        lambda: optax.rmsprop(0.1, eps=0.0, eps_in_sqrt=False)),
    "rmsprop-centered": (lambda: optim.rmsprop(0.1, eps=0.0, centered=True),
                         lambda: optax.rmsprop(0.1, eps=0.0, centered=True)),
    "adadelta": (lambda: optim.adadelta(1.0, eps=0.0), lambda: optax.adadelta(1.0, eps=0.0)),
}


@pytest.mark.parametrize("case", list(ZERO_DENOMINATOR_CASES))
def test_eps_zero_with_a_zero_gradient_gives_a_zero_step_not_nan(case):
    """optax (and PyTorch: denominator √v + 0 = 0) compute 0/0 = NaN for a
    parameter whose gradient is exactly zero; ours takes no step there."""
    ours, reference = (make() for make in ZERO_DENOMINATOR_CASES[case])
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([0.0, 2.0, -1.0])}
    ours_updates, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    reference_updates, _ = jax.jit(reference.update)(grads, reference.init(params), params)
    assert np.isnan(reference_updates["w"][0])
    assert ours_updates["w"][0] == 0.0
    np.testing.assert_array_equal(ours_updates["w"][1:], reference_updates["w"][1:])


@pytest.mark.parametrize("case", ["adam", "rmsprop", "rmsprop-pytorch"])
def test_eps_zero_with_nonzero_gradients_matches_optax_bit_for_bit(case):
    ours, reference = (make() for make in ZERO_DENOMINATOR_CASES[case])
    a = jnp.asarray(np.diag(np.logspace(-1, 1, 4)), jnp.float32)
    loss = lambda p: 0.5 * (p["w"] - 1.0) @ a @ (p["w"] - 1.0)

    def trajectory(opt):
        def body(carry, _):
            params, state = carry
            updates, state = opt.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params["w"]

        params = {"w": jnp.asarray([0.0, 3.0, -2.0, 0.5])}
        return jax.lax.scan(body, (params, opt.init(params)), None, length=30)[1]

    ours_path, reference_path = jax.jit(lambda: (trajectory(ours), trajectory(reference)))()
    assert np.all(np.isfinite(reference_path))
    np.testing.assert_array_equal(ours_path, reference_path)


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_centered_rmsprop_zero_variance_with_eps_matches_optax(eps_in_sqrt):
    # decay=0: E[g²] - E[g]² = g² - g² = 0 exactly, so the denominator is ε alone (√ε inside).
    ours = optim.rmsprop(0.1, decay=0.0, centered=True, eps=1e-3, eps_in_sqrt=eps_in_sqrt)
    reference = optax.rmsprop(0.1, decay=0.0, centered=True, eps=1e-3, eps_in_sqrt=eps_in_sqrt)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([0.0, 2.0, -0.5])}
    ours_updates, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    expected, _ = jax.jit(reference.update)(grads, reference.init(params), params)
    np.testing.assert_array_equal(ours_updates["w"], expected["w"])
    denominator = np.sqrt(1e-3) if eps_in_sqrt else 1e-3
    np.testing.assert_allclose(ours_updates["w"], -0.1 * np.asarray([0.0, 2.0, -0.5]) / denominator, rtol=1e-5)
