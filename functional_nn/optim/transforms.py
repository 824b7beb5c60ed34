"""One ``scale_by_*`` transformation per update rule of the notes.

Notation (the notes'): ``g = ∂_w D`` is the gradient of the divergence for
one parameter at step ``k``, ``η`` the learning rate, ``ε`` a small constant.
A ``scale_by_*`` transformation returns the *direction* ``u_k``; the aliases
chain it with :func:`scale_by_learning_rate`, which multiplies by ``-η``, so
that ``w_{k+1} = w_k - η u_k`` (``optax.apply_updates`` adds the result).

Each rule is written as one function of a single leaf that computes every
moment and the direction together (:func:`~functional_nn.optim.base.map_leaves`),
in the same order of floating-point operations as optax, so float32
trajectories agree with optax's to the last bit.

Conventions shared by every rule:

* dtypes: the state keeps the parameters' dtype (float16, bfloat16, float32,
  float64, complex) unless ``mu_dtype`` / ``accumulator_dtype`` says
  otherwise; step counts are ``int32``.
* complex parameters: second moments use ``|g|² = Re(g·conj(g))`` (real), as
  optax does, so the rules work on complex parameters (with gradients
  conjugated before the update, optax's convention). RProp and the sign rule
  are defined for real parameters only (as in optax).
* a zero denominator: where a rule would divide 0 by 0 (a parameter whose
  gradients were all exactly zero, with ``eps=0``), the direction is 0 —
  no gradient, no step. optax and PyTorch return NaN there (which then
  spreads through the whole model). Wherever optax's result is finite,
  ours is bit-for-bit the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from functional_nn import _validation
from functional_nn.optim import base
from functional_nn.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    ScheduleState,
    Updates,
    cast_scalar,
    canonical_dtype,
    increment_count,
    map_leaves,
    zero_count,
)

__all__ = [
    "ScaleByMomentumState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByStddevState",
    "ScaleByStddevWithCountState",
    "ScaleByAdagradState",
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByRpropState",
    "scale",
    "scale_by_momentum",
    "scale_by_nesterov",
    "scale_by_rms",
    "scale_by_stddev",
    "scale_by_adagrad",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_rprop",
    "scale_by_sign",
    "scale_by_learning_rate",
]


def _zeros_like_tree(params: Any, dtype: Optional[Any] = None) -> Any:
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype), params)


def _full_like_tree(params: Any, fill_value: Any) -> Any:
    return jax.tree.map(lambda p: jnp.full_like(p, fill_value), params)


def _abs_sq(g: jax.Array) -> jax.Array:
    """``|g|²``: ``g·g`` for real ``g``, ``Re(g·conj(g))`` for complex (as optax's ``abs_sq``)."""
    if jnp.iscomplexobj(g):
        return (g.conj() * g).real
    return g * g


def _root_argument(x: jax.Array, eps_outside: Any = 0.0) -> jax.Array:
    """``x``, the quantity under the square root of a denominator ``√x + ε``,
    where ``x > 0``; elsewhere 0 if ``ε > 0`` and 1 if ``ε = 0``.

    With ``ε > 0`` a non-positive ``x`` becomes 0, so the denominator is ``ε``
    (as in optax for ``x = 0``; a centred variance that rounds below 0 is read
    as 0 instead of giving NaN). With ``ε = 0``, ``x = 0`` only where every
    gradient so far was 0; the numerator is then 0 too, and reading ``x`` as 1
    gives the step 0 instead of 0/0 = NaN. The guard sits under the root so
    that XLA still compiles ``a / √x`` as ``a · rsqrt(x)``, as in optax's
    program. For complex ``x`` (whose imaginary part is 0 here) the real part
    is compared.
    """
    fallback = jnp.where(jnp.real(jnp.asarray(eps_outside)) > 0, jnp.zeros_like(x), jnp.ones_like(x))
    return jnp.where(jnp.real(x) > 0, x, fallback)


def _moving_average(decay: Any, old: jax.Array, new: jax.Array) -> jax.Array:
    """``decay · old + (1 - decay) · new`` written as optax writes it."""
    decay = cast_scalar(decay, new.dtype)
    return (1 - decay) * new + decay * old


def _bias_correction(decay: Any, count: jax.Array) -> jax.Array:
    """The scalar ``1 - decay^k`` of the notes' m̂_k = m_k / (1 - δ^k)."""
    return 1 - decay**count


def _corrected(moment: jax.Array, correction: jax.Array) -> jax.Array:
    return moment / correction.astype(moment.dtype)


# --------------------------------------------------------------------------
# scale: a fixed factor
# --------------------------------------------------------------------------

def scale(step_size: Any) -> GradientTransformation:
    """Multiply every update by the fixed scalar ``step_size``: ``u ← s · u``."""
    _validation.check_in_range("step_size", step_size, required=True)
    return base.stateless(lambda g: cast_scalar(step_size, g.dtype) * g)


# --------------------------------------------------------------------------
# Momentum and Nesterov
# --------------------------------------------------------------------------

class ScaleByMomentumState(NamedTuple):
    """Momentum buffer ``t`` (the running sum of past gradients)."""

    trace: Updates


def _momentum_leaf(g, trace, momentum, nesterov, accumulator_dtype):
    mu = cast_scalar(momentum, g.dtype)
    new_trace = g + mu * trace
    direction = g + mu * new_trace if nesterov else new_trace
    if accumulator_dtype is not None:  # t in accumulator_dtype; the direction in g's
        new_trace, direction = new_trace.astype(accumulator_dtype), direction.astype(g.dtype)
    return direction, new_trace


def scale_by_momentum(
    momentum: Any = 0.9,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Heavy-ball momentum (optax's ``trace``).

    .. math::
        t_k = g_k + μ\, t_{k-1}, \qquad u_k = t_k
        \quad(\text{Nesterov: } u_k = g_k + μ\, t_k)

    With a constant learning rate, ``w_{k+1} = w_k - η t_k`` is the notes'
    ``Δw_k = μ Δw_{k-1} - η ∂_w D``. Nesterov's variant is the
    Sutskever et al. form used by optax and PyTorch (the gradient is looked
    ahead along the momentum).

    Args:
      momentum: the coefficient μ in [0, 1).
      nesterov: use Nesterov's accelerated direction.
      accumulator_dtype: dtype of ``t`` (default: the parameters').

    Raises:
      ValueError: ``momentum`` outside [0, 1).
      TypeError: an argument of the wrong type (``momentum=None`` included).
    """
    _validation.check_unit_interval("momentum", momentum, required=True)
    _validation.check_flag("nesterov", nesterov)
    accumulator_dtype = canonical_dtype(accumulator_dtype, "accumulator_dtype")

    def init_fn(params):
        return ScaleByMomentumState(trace=_zeros_like_tree(params, accumulator_dtype))

    def update_fn(updates, state, params=None):
        del params
        leaf = lambda g, t: _momentum_leaf(g, t, momentum, nesterov, accumulator_dtype)
        directions, trace = map_leaves(leaf, updates, state.trace, num_outputs=2)
        return directions, ScaleByMomentumState(trace=trace)

    return GradientTransformation(init_fn, update_fn)


def scale_by_nesterov(
    momentum: Any = 0.9, accumulator_dtype: Optional[Any] = None
) -> GradientTransformation:
    r"""Nesterov momentum: :func:`scale_by_momentum` with ``nesterov=True``.

    .. math:: t_k = g_k + μ\, t_{k-1}, \qquad u_k = g_k + μ\, t_k
    """
    return scale_by_momentum(momentum, nesterov=True, accumulator_dtype=accumulator_dtype)


# --------------------------------------------------------------------------
# RMSProp (plain and centred)
# --------------------------------------------------------------------------

class ScaleByRmsState(NamedTuple):
    """Running mean ``E[g²]`` of the squared gradient."""

    nu: Updates


class ScaleByRmsWithCountState(NamedTuple):
    """``E[g²]`` and the step count used by its bias correction."""

    count: jax.Array
    nu: Updates


class ScaleByStddevState(NamedTuple):
    """Running means ``E[g]`` and ``E[g²]`` of centred RMSProp."""

    mu: Updates
    nu: Updates


class ScaleByStddevWithCountState(NamedTuple):
    """``E[g]``, ``E[g²]`` and the step count of their bias correction."""

    count: jax.Array
    mu: Updates
    nu: Updates


def _inverse_root(second_moment, eps, eps_in_sqrt):
    """``1/√(s + ε)`` (ε inside the root) or ``1/(√s + ε)`` (outside), with a
    non-positive quantity under the root guarded by :func:`_root_argument`."""
    eps = cast_scalar(eps, second_moment.dtype)
    if eps_in_sqrt:
        return jax.lax.rsqrt(_root_argument(second_moment + eps))
    return 1 / (jnp.sqrt(_root_argument(second_moment, eps)) + eps)


def _check_rms_arguments(decay, eps, initial_scale, eps_in_sqrt, bias_correction):
    _validation.check_unit_interval("decay", decay, required=True)
    _validation.check_nonnegative("eps", eps, required=True)
    _validation.check_nonnegative("initial_scale", initial_scale, required=True)
    _validation.check_flag("eps_in_sqrt", eps_in_sqrt)
    _validation.check_flag("bias_correction", bias_correction)


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp's scaling by the root mean square of past gradients.

    The notes' rule (γ = ``decay``):

    .. math::
        E[∂^2_w D]_k = γ\, E[∂^2_w D]_{k-1} + (1-γ)\, (∂_w D)_k^2, \qquad
        u_k = \frac{∂_w D}{\sqrt{E[∂^2_w D]_k + ε}}

    ``eps_in_sqrt=True`` (default, the notes' and optax's form) puts ε
    inside the root; ``eps_in_sqrt=False`` gives ``∂_w D / (√E[∂²_w D] + ε)``,
    PyTorch's ``RMSprop``. ``bias_correction=True`` divides ``E[∂²_w D]_k``
    by ``1 - γ^k`` (as Adam's v̂).

    ``eps=0`` is allowed: where ``E[∂²_w D]_k = 0`` (only zero gradients so
    far) the direction is 0, where optax and PyTorch give 0/0 = NaN.

    Args:
      decay: γ in [0, 1).
      eps: ε ≥ 0.
      initial_scale: initial value of ``E[∂²_w D]`` (PyTorch: 0, TF1: 1).
      eps_in_sqrt: where ε goes, see above.
      bias_correction: divide by ``1 - γ^k``.
    """
    _check_rms_arguments(decay, eps, initial_scale, eps_in_sqrt, bias_correction)

    def init_fn(params):
        nu = _full_like_tree(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=zero_count(), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = increment_count(state.count) if bias_correction else None
        correction = _bias_correction(decay, count) if bias_correction else None

        def leaf(g, nu):
            nu = _moving_average(decay, nu, _abs_sq(g))
            nu_hat = _corrected(nu, correction) if bias_correction else nu
            return _inverse_root(nu_hat, eps, eps_in_sqrt) * g, nu

        directions, nu = map_leaves(leaf, updates, state.nu, num_outputs=2)
        if bias_correction:
            return directions, ScaleByRmsWithCountState(count=count, nu=nu)
        return directions, ScaleByRmsState(nu=nu)

    return GradientTransformation(init_fn, update_fn)


def scale_by_stddev(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Centred RMSProp: scale by the running standard deviation of gradients.

    .. math::
        E[g]_k = γ E[g]_{k-1} + (1-γ) g_k, \quad
        E[g^2]_k = γ E[g^2]_{k-1} + (1-γ) g_k^2, \quad
        u_k = \frac{g_k}{\sqrt{E[g^2]_k - E[g]_k^2 + ε}}

    Arguments as in :func:`scale_by_rms` (``eps_in_sqrt=False`` puts ε
    outside the root; ``bias_correction`` divides both means by ``1 - γ^k``).
    For complex ``g`` the variance is ``E[|g|²] - |E[g]|²``. A variance
    that rounds below 0 is read as 0 (optax: NaN); with ``eps=0`` a zero
    denominator gives the step ``g`` itself (0 for a zero gradient) instead of
    0/0 or g/0.
    """
    _check_rms_arguments(decay, eps, initial_scale, eps_in_sqrt, bias_correction)

    def init_fn(params):
        mu = _zeros_like_tree(params)
        nu = _full_like_tree(params, initial_scale)
        if bias_correction:
            return ScaleByStddevWithCountState(count=zero_count(), mu=mu, nu=nu)
        return ScaleByStddevState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = increment_count(state.count) if bias_correction else None
        correction = _bias_correction(decay, count) if bias_correction else None

        def leaf(g, mu, nu):
            mu = _moving_average(decay, mu, g)
            nu = _moving_average(decay, nu, _abs_sq(g))
            mu_hat, nu_hat = mu, nu
            if bias_correction:
                mu_hat, nu_hat = _corrected(mu, correction), _corrected(nu, correction)
            variance = nu_hat - _abs_sq(mu_hat)
            return _inverse_root(variance, eps, eps_in_sqrt) * g, mu, nu

        directions, mu, nu = map_leaves(leaf, updates, state.mu, state.nu, num_outputs=3)
        if bias_correction:
            return directions, ScaleByStddevWithCountState(count=count, mu=mu, nu=nu)
        return directions, ScaleByStddevState(mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# Adagrad
# --------------------------------------------------------------------------

class ScaleByAdagradState(NamedTuple):
    """Sum ``G_k = Σ_{j≤k} g_j²`` of all squared gradients so far."""

    sum_of_squares: Updates


def _adagrad_leaf(g, sum_of_squares, eps, eps_in_sqrt):
    sum_of_squares = _abs_sq(g) + sum_of_squares
    inverse_root = jnp.where(
        jnp.real(sum_of_squares) > 0, _inverse_root(sum_of_squares, eps, eps_in_sqrt), 0.0
    )
    return inverse_root * g, sum_of_squares


def scale_by_adagrad(
    initial_accumulator_value: Any = 0.1,
    eps: Any = 1e-7,
    eps_in_sqrt: bool = True,
) -> GradientTransformation:
    r"""Adagrad: scale by the root of the sum of all squared gradients.

    .. math::
        G_k = G_{k-1} + (∂_w D)_k^2, \qquad u_k = \frac{∂_w D}{\sqrt{G_k + ε}}

    with ``G_0 = initial_accumulator_value``. ``eps_in_sqrt=True`` (default,
    optax's form) puts ε inside the root; ``eps_in_sqrt=False`` gives
    ``∂_w D / (√G_k + ε)``, PyTorch's ``Adagrad`` (whose
    ``initial_accumulator_value`` defaults to 0). Where ``G_k = 0`` (a zero
    accumulator meeting a zero gradient) the direction is 0, not NaN.

    Args:
      initial_accumulator_value: ``G_0 ≥ 0``.
      eps: ε ≥ 0.
      eps_in_sqrt: where ε goes, see above.
    """
    _validation.check_nonnegative("initial_accumulator_value", initial_accumulator_value, required=True)
    _validation.check_nonnegative("eps", eps, required=True)
    _validation.check_flag("eps_in_sqrt", eps_in_sqrt)

    def init_fn(params):
        return ScaleByAdagradState(
            sum_of_squares=_full_like_tree(params, initial_accumulator_value))

    def update_fn(updates, state, params=None):
        del params
        leaf = lambda g, s: _adagrad_leaf(g, s, eps, eps_in_sqrt)
        directions, sums = map_leaves(leaf, updates, state.sum_of_squares, num_outputs=2)
        return directions, ScaleByAdagradState(sum_of_squares=sums)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# AdaDelta
# --------------------------------------------------------------------------

class ScaleByAdaDeltaState(NamedTuple):
    """Running means ``E[g²]`` of squared gradients and ``E[Δw²]`` of squared steps."""

    e_g: Updates
    e_x: Updates


def _adadelta_leaf(g, e_g, e_x, rho, eps):
    eps = cast_scalar(eps, g.dtype)
    e_g = _moving_average(rho, e_g, _abs_sq(g))
    step = (jnp.sqrt(e_x + eps) / jnp.sqrt(_root_argument(e_g + eps))) * g
    e_x = _moving_average(rho, e_x, _abs_sq(step))
    return step, e_g, e_x


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
    r"""AdaDelta (Zeiler, 2012): RMSProp whose step has the units of ``w``.

    .. math::
        E[g^2]_k = ρ E[g^2]_{k-1} + (1-ρ) g_k^2, \quad
        Δw_k = \frac{\sqrt{E[Δw^2]_{k-1} + ε}}{\sqrt{E[g^2]_k + ε}}\, g_k, \quad
        E[Δw^2]_k = ρ E[Δw^2]_{k-1} + (1-ρ) Δw_k^2

    With ``eps=0`` the rule never moves (``E[Δw²]`` stays 0), and a zero
    gradient gives a zero step rather than optax's 0/0 = NaN.

    Args:
      rho: ρ in [0, 1).
      eps: ε ≥ 0 (it also sets the size of the first steps).
    """
    _validation.check_unit_interval("rho", rho, required=True)
    _validation.check_nonnegative("eps", eps, required=True)

    def init_fn(params):
        return ScaleByAdaDeltaState(e_g=_zeros_like_tree(params), e_x=_zeros_like_tree(params))

    def update_fn(updates, state, params=None):
        del params
        leaf = lambda g, e_g, e_x: _adadelta_leaf(g, e_g, e_x, rho, eps)
        steps, e_g, e_x = map_leaves(leaf, updates, state.e_g, state.e_x, num_outputs=3)
        return steps, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------

class ScaleByAdamState(NamedTuple):
    """Step count ``k`` and the first and second moments ``m_k``, ``v_k``."""

    count: jax.Array  # int32 scalar
    mu: Updates
    nu: Updates


def _adam_leaf(g, m, v, *, b1, b2, eps, eps_root, corrections, nesterov, mu_dtype):
    correction_1, correction_2, correction_1_next = corrections
    m = _moving_average(b1, m, g)
    v = _moving_average(b2, v, _abs_sq(g))
    if nesterov:
        b1_ = cast_scalar(b1, g.dtype)
        m_hat = b1_ * _corrected(m, correction_1_next) + (1 - b1_) * _corrected(g, correction_1)
    else:
        m_hat = _corrected(m, correction_1)
    v_hat = _corrected(v, correction_2)
    eps, eps_root = cast_scalar(eps, v.dtype), cast_scalar(eps_root, v.dtype)
    direction = m_hat / (jnp.sqrt(_root_argument(v_hat + eps_root, eps)) + eps)
    if mu_dtype is not None:  # m in mu_dtype; the direction in the gradient's dtype
        m, direction = m.astype(mu_dtype), direction.astype(g.dtype)
    return direction, m, v


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam's direction, with the notes' bias-corrected moments.

    The notes' rule (δ = ``b1``, γ = ``b2``):

    .. math::
        m_k = δ m_{k-1} + (1-δ) (∂_w D)_k, \quad
        v_k = γ v_{k-1} + (1-γ) (∂_w D)_k^2, \quad
        \hat m_k = \frac{m_k}{1-δ^k}, \quad \hat v_k = \frac{v_k}{1-γ^k}, \quad
        u_k = \frac{\hat m_k}{\sqrt{\hat v_k + ε_{root}} + ε}

    The notes put ε inside the root: ``eps=0, eps_root=ε``. The defaults
    (``eps=1e-8`` outside, ``eps_root=0``) are Kingma & Ba's, optax's and
    PyTorch's. ``eps=0`` is allowed: a parameter whose gradients were all
    zero then has ``m̂ = √v̂ = 0``, and its direction is 0 (optax and
    PyTorch compute 0/0 = NaN there; everywhere else the results are
    theirs). ``nesterov=True`` is NAdam:
    ``\hat m_k = δ m_k/(1-δ^{k+1}) + (1-δ) g_k/(1-δ^k)``.

    Args:
      b1: δ in [0, 1).
      b2: γ in [0, 1).
      eps: ε ≥ 0 added outside the square root.
      eps_root: ε ≥ 0 added inside the square root.
      mu_dtype: dtype of ``m`` (e.g. ``jnp.bfloat16``); default the parameters'.
      nesterov: NAdam's look-ahead first moment.
    """
    _validation.check_unit_interval("b1", b1, required=True)
    _validation.check_unit_interval("b2", b2, required=True)
    _validation.check_nonnegative("eps", eps, required=True)
    _validation.check_nonnegative("eps_root", eps_root, required=True)
    _validation.check_flag("nesterov", nesterov)
    mu_dtype = canonical_dtype(mu_dtype, "mu_dtype")

    def init_fn(params):
        return ScaleByAdamState(
            count=zero_count(),
            mu=_zeros_like_tree(params, mu_dtype),
            nu=_zeros_like_tree(params),
        )

    def update_fn(updates, state, params=None):
        del params
        count = increment_count(state.count)
        corrections = (
            _bias_correction(b1, count),
            _bias_correction(b2, count),
            _bias_correction(b1, increment_count(count)) if nesterov else None,
        )
        leaf = lambda g, m, v: _adam_leaf(
            g, m, v, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
            corrections=corrections, nesterov=nesterov, mu_dtype=mu_dtype)
        directions, mu, nu = map_leaves(leaf, updates, state.mu, state.nu, num_outputs=3)
        return directions, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# RProp (iRprop−)
# --------------------------------------------------------------------------

class ScaleByRpropState(NamedTuple):
    """Per-parameter step sizes Δ and the sign of the last gradient used."""

    step_sizes: Updates
    prev_sign: Updates


def _rprop_leaf(g, step_size, prev_sign, eta_minus, eta_plus, min_step_size, max_step_size):
    eta_minus, eta_plus, min_step_size, max_step_size = (
        cast_scalar(value, step_size.dtype)
        for value in (eta_minus, eta_plus, min_step_size, max_step_size))
    sign = jnp.sign(g)
    agreement = sign * prev_sign  # +1 same sign, -1 flipped, 0 no information
    factor = jnp.where(agreement > 0, eta_plus, eta_minus)
    step_size = jnp.where(
        agreement == 0,
        step_size,
        jnp.clip(step_size * factor, min_step_size, max_step_size),
    )
    sign = jnp.where(agreement < 0, jnp.zeros_like(sign), sign)
    return step_size * sign, step_size, sign


def scale_by_rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
) -> GradientTransformation:
    r"""Resilient propagation, iRprop− (Igel & Hüsken, 2000).

    Only the sign of each gradient is used; each parameter has its own step
    Δ, grown when consecutive gradients agree and shrunk when they disagree:

    .. math::
        Δ_k = \begin{cases}
          \min(η^+ Δ_{k-1}, Δ_{max}) & g_k g_{k-1} > 0 \\
          \max(η^- Δ_{k-1}, Δ_{min}) & g_k g_{k-1} < 0 \\
          Δ_{k-1} & \text{otherwise}
        \end{cases}, \qquad
        u_k = Δ_k\, \mathrm{sign}(g_k), \quad u_k = 0 \text{ and } g_k := 0
        \text{ on a sign flip.}

    The step is applied at once (``optax.scale_by_rprop`` emits each step
    one update late). ``u_k`` is the size of the step to *subtract*;
    :func:`~functional_nn.optim.rprop` negates it.

    Args:
      learning_rate: the initial step size Δ_0 ≥ 0.
      eta_minus: η⁻ in (0, 1], the shrink factor on a sign flip.
      eta_plus: η⁺ ≥ 1, the growth factor on agreeing signs.
      min_step_size: Δ_min ≥ 0.
      max_step_size: Δ_max > 0, at least ``min_step_size``.
    """
    if callable(learning_rate):
        raise _validation.HyperparameterTypeError(
            f"learning_rate={learning_rate!r}: must be a number (rprop's initial step size Δ_0), "
            "not a schedule")
    _validation.check_nonnegative("learning_rate", learning_rate, required=True)
    _validation.check_in_range("eta_minus", eta_minus, 0.0, 1.0,
                               low_inclusive=False, high_inclusive=True, required=True)
    _validation.check_in_range("eta_plus", eta_plus, 1.0, required=True)
    _validation.check_nonnegative("min_step_size", min_step_size, required=True)
    _validation.check_positive("max_step_size", max_step_size, required=True)
    _validation.check_less_equal("min_step_size", min_step_size, "max_step_size", max_step_size)

    def init_fn(params):
        return ScaleByRpropState(
            step_sizes=_full_like_tree(params, learning_rate),
            prev_sign=_zeros_like_tree(params),
        )

    def update_fn(updates, state, params=None):
        del params
        leaf = lambda g, s, p: _rprop_leaf(
            g, s, p, eta_minus, eta_plus, min_step_size, max_step_size)
        steps, step_sizes, signs = map_leaves(
            leaf, updates, state.step_sizes, state.prev_sign, num_outputs=3)
        return steps, ScaleByRpropState(step_sizes=step_sizes, prev_sign=signs)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------
# Sign and learning rate
# --------------------------------------------------------------------------

def scale_by_sign() -> GradientTransformation:
    r"""The sign of each gradient element: ``u_k = sign(∂_w D)``."""
    return base.stateless(jnp.sign)


def scale_by_learning_rate(
    learning_rate: Optional[ScalarOrSchedule],
    *,
    flip_sign: bool = True,
) -> GradientTransformation:
    r"""Multiply by ``-η`` (``flip_sign=True``) or ``η``; ``η`` may be a schedule.

    ``η`` is a float, an array (also a traced one, e.g. under ``jax.vmap``)
    or a schedule ``k -> η_k``; a schedule keeps the step count ``k`` in a
    :class:`~functional_nn.optim.base.ScheduleState`, otherwise the state is
    empty. ``None`` means no scaling.
    """
    _validation.check_flag("flip_sign", flip_sign)
    if learning_rate is None:
        return base.identity()
    _validation.check_nonnegative("learning_rate", learning_rate)
    sign = -1 if flip_sign else 1

    if not callable(learning_rate):
        return scale(sign * learning_rate)

    def init_fn(params):
        del params
        return ScheduleState(count=zero_count())

    def update_fn(updates, state, params=None):
        del params
        step_size = sign * learning_rate(state.count)
        updates = jax.tree.map(lambda g: jnp.array(step_size, dtype=jnp.result_type(g)) * g, updates)
        return updates, ScheduleState(count=increment_count(state.count))

    return GradientTransformation(init_fn, update_fn)

