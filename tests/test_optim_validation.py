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
