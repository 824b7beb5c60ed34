"""Ready-made optimizers: a rule's direction chained with ``-η``.

Argument names and defaults are optax's (so ``fnn.optim.adam(1e-3)`` and
``optax.adam(1e-3)`` follow the same trajectory), except that

* :func:`adadelta`'s learning rate defaults to 1.0 (optax's default ``None``
  applies ``+u``, which climbs the loss);
* :func:`rprop` applies each step at once (optax's emits it one update late);
* :func:`momentum` and :func:`nesterov` are named shortcuts for
  ``sgd(learning_rate, momentum=...)`` (optax has only ``sgd``).

Every hyperparameter may be a float, a schedule ``k -> value`` where optax
accepts one (learning rates, weight decay) or a traced JAX scalar (an
optimizer built inside ``jax.vmap``/``jax.jit``). Out-of-range concrete
values raise ``ValueError`` naming the argument; values of the wrong type
(``b1="0.9"``, ``nesterov="yes"``, ``mu_dtype="float99"``) raise
``TypeError`` naming it. ``learning_rate=None`` is an error: optax reads it as
"no scaling", which moves the parameters *up* the gradient (only
:func:`adadelta` has a default learning rate, 1.0, used when the argument is
left out).
"""

from __future__ import annotations

from typing import Any, Optional

from functional_nn import _validation
from functional_nn.optim import transforms
from functional_nn.optim.base import (
    OPTIMIZERS,
    GradientTransformation,
    ScalarOrSchedule,
    canonical_dtype,
    chain,
    identity,
)
from functional_nn.optim.regularization import add_decayed_weights

__all__ = [
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "adagrad",
    "adadelta",
    "adam",
    "adamw",
    "rprop",
    "sign_sgd",
]


def _learning_rate(learning_rate: Any) -> Any:
    """``learning_rate`` checked: a number ≥ 0, an array or a schedule, never None.

    Raises:
      ValueError: None (optax's "no scaling" climbs the loss) or a negative value.
      TypeError: not a number, array or schedule.
    """
    if learning_rate is None:
        raise ValueError(
            "learning_rate=None: must be a number >= 0 or a schedule step -> rate "
            "(optax reads None as 'no scaling', which moves the parameters uphill)")
    return _validation.check_nonnegative("learning_rate", learning_rate)


def _momentum_direction(momentum: Any, nesterov: bool, accumulator_dtype: Any = None):
    """Heavy-ball (or Nesterov) momentum, or nothing for ``momentum=None``.

    Raises:
      ValueError: ``nesterov=True`` with ``momentum=None``.
    """
    _validation.check_flag("nesterov", nesterov)
    if momentum is None:
        if nesterov:
            raise ValueError(
                "nesterov=True: needs momentum (e.g. momentum=0.9); with momentum=None there is "
                "no momentum to look ahead along (optax ignores nesterov silently here)")
        canonical_dtype(accumulator_dtype, "accumulator_dtype")
        return identity()
    return transforms.scale_by_momentum(momentum, nesterov, accumulator_dtype)


@OPTIMIZERS.register
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Optional[Any] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, optionally with momentum.

    .. math::
        w_{k+1} = w_k - η\, ∂_w D \quad (\text{momentum } μ:\;
        t_k = ∂_w D + μ t_{k-1},\; w_{k+1} = w_k - η t_k)

    Nesterov: ``w_{k+1} = w_k - η(∂_w D + μ t_k)``. Same arguments as
    ``optax.sgd``; PyTorch's ``SGD(lr, momentum, nesterov)`` with
    ``dampening=0`` is the same update.

    ``nesterov=True`` without ``momentum`` is an error, deliberately: optax
    ignores it silently (plain SGD), so a user who asked for Nesterov would
    not get it (PyTorch raises too, for ``momentum=0``).

    Args:
      learning_rate: η ≥ 0, or a schedule.
      momentum: μ in [0, 1), or None for plain SGD.
      nesterov: use Nesterov's direction (needs ``momentum``).
      accumulator_dtype: dtype of the momentum buffer.

    Raises:
      ValueError: ``learning_rate=None``, ``nesterov=True`` with
        ``momentum=None``, or a value out of range.
      TypeError: an argument of the wrong type.
    """
    learning_rate = _learning_rate(learning_rate)
    direction = _momentum_direction(momentum, nesterov, accumulator_dtype)
    return chain(direction, transforms.scale_by_learning_rate(learning_rate))


@OPTIMIZERS.register
def momentum(
    learning_rate: ScalarOrSchedule,
    momentum: Any = 0.9,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""SGD with heavy-ball momentum: ``sgd(learning_rate, momentum=μ)``.

    .. math:: t_k = ∂_w D + μ t_{k-1}, \qquad w_{k+1} = w_k - η t_k

    i.e. the notes' ``Δw_k = μΔw_{k-1} - η ∂_w D`` for a constant η.
    ``optax.sgd(η, momentum=μ)`` and PyTorch's ``SGD(η, momentum=μ)`` match.
    """
    return sgd(learning_rate, momentum, nesterov, accumulator_dtype)


@OPTIMIZERS.register
def nesterov(
    learning_rate: ScalarOrSchedule,
    momentum: Any = 0.9,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""SGD with Nesterov momentum: ``sgd(learning_rate, momentum=μ, nesterov=True)``.

    .. math:: t_k = ∂_w D + μ t_{k-1}, \qquad w_{k+1} = w_k - η(∂_w D + μ t_k)

    The look-ahead form of optax and PyTorch (``SGD(nesterov=True)``).
    """
    return sgd(learning_rate, momentum, True, accumulator_dtype)


@OPTIMIZERS.register
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Optional[Any] = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp, the notes' rule (γ = ``decay``):

    .. math::
        E[∂^2_w D]_k = γ E[∂^2_w D]_{k-1} + (1-γ)(∂_w D)_k^2, \qquad
        w_{k+1} = w_k - \frac{η}{\sqrt{E[∂^2_w D]_k + ε}}\, ∂_w D

    ``eps_in_sqrt=True`` (default) is the notes' form and optax's default;
    ``eps_in_sqrt=False`` gives ``η ∂_w D / (√E[∂²_w D] + ε)``, PyTorch's
    ``RMSprop`` (use ``eps=1e-8``, ``decay=0.99`` for its defaults).
    ``centered`` divides by the running standard deviation instead,
    ``momentum`` adds heavy-ball momentum after the scaling (as optax and
    PyTorch; ``nesterov=True`` needs it), ``bias_correction`` divides
    ``E[∂²_w D]_k`` by ``1 - γ^k``. With ``eps=0`` a parameter whose
    gradients were all zero takes a zero step (optax and PyTorch: NaN).
    """
    learning_rate = _learning_rate(learning_rate)
    _validation.check_flag("centered", centered)
    scaling = transforms.scale_by_stddev if centered else transforms.scale_by_rms
    return chain(
        scaling(decay=decay, eps=eps, initial_scale=initial_scale,
                eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction),
        transforms.scale_by_learning_rate(learning_rate),
        _momentum_direction(momentum, nesterov),
    )


@OPTIMIZERS.register
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: Any = 0.1,
    eps: Any = 1e-7,
    eps_in_sqrt: bool = True,
) -> GradientTransformation:
    r"""Adagrad:

    .. math::
        G_k = G_{k-1} + (∂_w D)_k^2, \qquad
        w_{k+1} = w_k - \frac{η}{\sqrt{G_k + ε}}\, ∂_w D

    with ``G_0 = initial_accumulator_value``. ``eps_in_sqrt=True`` (default)
    is optax's form; ``eps_in_sqrt=False, initial_accumulator_value=0.0,
    eps=1e-10`` is PyTorch's ``Adagrad``. A zero accumulator meeting a zero
    gradient gives a zero step.
    """
    learning_rate = _learning_rate(learning_rate)
    return chain(
        transforms.scale_by_adagrad(initial_accumulator_value, eps, eps_in_sqrt),
        transforms.scale_by_learning_rate(learning_rate),
    )


@OPTIMIZERS.register
def adadelta(
    learning_rate: Optional[ScalarOrSchedule] = 1.0,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
) -> GradientTransformation:
    r"""AdaDelta (Zeiler, 2012):

    .. math::
        E[g^2]_k = ρ E[g^2]_{k-1} + (1-ρ) g_k^2, \quad
        Δw_k = \frac{\sqrt{E[Δw^2]_{k-1} + ε}}{\sqrt{E[g^2]_k + ε}}\, g_k, \quad
        w_{k+1} = w_k - η Δw_k

    ``learning_rate`` defaults to 1.0 (Zeiler's rule, PyTorch's ``Adadelta``
    default), so the default descends; optax's default ``None`` moves
    uphill, and an explicit ``learning_rate=None`` is an error here too.
    ``weight_decay`` adds coupled L2 (``g + λw``) before the scaling, as
    optax and PyTorch do.
    """
    learning_rate = _learning_rate(learning_rate)
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        transforms.scale_by_adadelta(rho, eps),
        transforms.scale_by_learning_rate(learning_rate),
    )


@OPTIMIZERS.register
def adam(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam, with the notes' bias correction (δ = ``b1``, γ = ``b2``):

    .. math::
        m_k = δ m_{k-1} + (1-δ) ∂_w D, \quad v_k = γ v_{k-1} + (1-γ)(∂_w D)^2, \\
        \hat m_k = \frac{m_k}{1-δ^k}, \quad \hat v_k = \frac{v_k}{1-γ^k}, \quad
        w_{k+1} = w_k - η \frac{\hat m_k}{\sqrt{\hat v_k + ε_{root}} + ε}

    The notes put ε inside the root: ``adam(η, eps=0.0, eps_root=ε)``. The
    defaults (ε = 1e-8 outside) are optax's, PyTorch's and Kingma & Ba's.
    ``nesterov=True`` is NAdam. ``eps=0`` (with ``eps_root=0``) gives a zero
    step for a parameter whose gradients were all zero, where optax and
    PyTorch compute 0/0 = NaN.
    """
    learning_rate = _learning_rate(learning_rate)
    return chain(
        transforms.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        transforms.scale_by_learning_rate(learning_rate),
    )


@OPTIMIZERS.register
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam with decoupled weight decay (Loshchilov & Hutter):

    .. math:: w_{k+1} = w_k - η\left(\frac{\hat m_k}{\sqrt{\hat v_k + ε_{root}} + ε} + λ w_k\right)

    with :func:`adam`'s m̂, v̂ and λ = ``weight_decay``. ``mask`` (a tree of
    booleans or a function of the params, e.g. :func:`mask_by_name`) selects
    the decayed leaves. optax's and PyTorch's ``AdamW`` (whose default
    λ is 1e-2) are the same update.
    """
    learning_rate = _learning_rate(learning_rate)
    return chain(
        transforms.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        transforms.scale_by_learning_rate(learning_rate),
    )


@OPTIMIZERS.register
def rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
) -> GradientTransformation:
    r"""Resilient propagation (iRprop−), using only gradient signs.

    .. math::
        Δ_k = \mathrm{clip}(η^± Δ_{k-1}, Δ_{min}, Δ_{max}), \qquad
        w_{k+1} = w_k - Δ_k\, \mathrm{sign}(∂_w D)

    with η⁺ when the gradient kept its sign, η⁻ when it flipped (then no
    step is taken this time and the gradient is forgotten). ``learning_rate``
    is the initial step Δ_0. Unlike ``optax.rprop`` the step is applied at
    once; PyTorch's ``Rprop`` is the same rule.
    """
    learning_rate = _learning_rate(learning_rate)
    return chain(
        transforms.scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        transforms.scale(-1.0),
    )


@OPTIMIZERS.register
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""signSGD: ``w_{k+1} = w_k - η\, \mathrm{sign}(∂_w D)`` — the notes' limit
    of RMSProp "if using the same step over a long period"."""
    learning_rate = _learning_rate(learning_rate)
    return chain(transforms.scale_by_sign(), transforms.scale_by_learning_rate(learning_rate))
