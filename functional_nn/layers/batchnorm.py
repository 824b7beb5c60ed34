"""Batch normalization with explicit running statistics and the notes' backward pass.

Training mode, for each feature (statistics over every axis but the last;
B is the number of values per feature in the minibatch, e.g. N·H·W for
images, and the global batch under ``axis_name``):

    μ_B  = (1/B) Σ_i z_i                     (first pass)
    σ_B² = (1/B) Σ_i (z_i − μ_B)²            (second pass: numerically stable)
    u_i  = (z_i − μ_B) / √(σ_B² + ε)
    ẑ_i  = γ u_i + β

The backward pass is a ``jax.custom_vjp`` written from the notes' closed form:

    ∂Div/∂β    = Σ_i ∂Div/∂ẑ_i              ∂Div/∂γ = Σ_i u_i ∂Div/∂ẑ_i
    ∂Div/∂u_i  = γ ∂Div/∂ẑ_i
    ∂Div/∂σ_B² = −½ (σ_B² + ε)^(−3/2) Σ_i ∂Div/∂u_i (z_i − μ_B)
    ∂Div/∂μ_B  = −1/√(σ_B² + ε) Σ_i ∂Div/∂u_i
    ∂Div/∂z_i  = ∂Div/∂u_i / √(σ_B² + ε) + ∂Div/∂σ_B² · 2(z_i − μ_B)/B + ∂Div/∂μ_B / B

Test time uses running statistics (``BatchNormState``), updated in training
mode by one of two rules, selected by the state's ``cumulative`` flag:

- ``"cumulative"`` (the notes): after N batches,
  μ_BN = (1/N) Σ_batch μ_B(batch),   σ_BN² = (1/N) Σ_batch B/(B−1) σ_B²(batch),
  where each batch uses its own B (so a smaller last batch is corrected too);
  kept as a running average: m ← m + (μ_B − m)/(N+1).
- ``"ema"``: m ← λ m + (1−λ) μ_B,  v ← λ v + (1−λ) B/(B−1) σ_B²  (λ = ``ema_decay``).
  Like PyTorch, the EMA tracks the *unbiased* batch variance, so both rules
  estimate the same quantity; flax and haiku track the biased σ_B² instead.

The plain functions (``batch_statistics``, ``batch_normalize``, ``normalize``,
``update_running_statistics``, ``init_state``, ``reset_statistics``,
``set_stats_mode``, ``recompute_statistics``) are module attributes and are
also attributes of this module, which is callable as the ``batchnorm`` layer constructor, so
``layers.batchnorm.normalize(...)`` works from the package too.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from functional_nn._validation import check_dtype, check_in_range, check_nonnegative
from functional_nn.layers._checks import check_choice
from functional_nn.layers.base import LAYERS, Layer, callable_module

STATS_MODES = ("ema", "cumulative")


class BatchNormState(NamedTuple):
    """Running statistics of one batch norm layer (one entry per feature).

    mean: running μ; var: running (unbiased) σ²; count: number of training
    batches folded in; cumulative: True for the notes' cumulative average,
    False for the exponential moving average.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    cumulative: jax.Array


# ---------------------------------------------------------------- plain functions


def default_float():
    """JAX's default float type: float32, or float64 under ``jax_enable_x64``."""
    return jnp.zeros(()).dtype


def statistics_dtype(dtype=None):
    """The dtype of running statistics: the parameter dtype, at least float32 (None: ``default_float()``)."""
    return jnp.promote_types(default_float() if dtype is None else dtype, jnp.float32)


def init_state(num_features: int, stats: str = "ema", dtype=None) -> BatchNormState:
    """Fresh running statistics: mean 0, variance 1, no batches seen.

    ``dtype``: the parameter dtype; the statistics are kept in it, at least
    float32 (``statistics_dtype``); None is JAX's default float.
    """
    check_choice("stats", stats, STATS_MODES)
    dtype = statistics_dtype(dtype)
    return BatchNormState(
        mean=jnp.zeros((num_features,), dtype),
        var=jnp.ones((num_features,), dtype),
        count=jnp.zeros((), jnp.int32),
        cumulative=jnp.asarray(stats == "cumulative"),
    )


def values_per_feature(z, axis_name=None) -> int:
    """B: the number of values each feature's statistics average over (static).

    Every axis but the last is a batch axis; under ``axis_name`` the count is
    that of the global batch (local count × number of devices).
    """
    count = math.prod(z.shape[:-1])
    if axis_name is not None:
        count *= lax.axis_size(axis_name)
    return count


def _reduction_axes(z) -> tuple:
    return tuple(range(z.ndim - 1))


def _compute_dtype(z):
    """Statistics in at least float32 (float16/bfloat16 inputs are upcast)."""
    return jnp.promote_types(z.dtype, jnp.float32)


def _batch_mean(values, axis_name):
    """Per-feature mean over the batch axes, and over devices under ``axis_name``."""
    mean = jnp.mean(values, axis=_reduction_axes(values))
    return mean if axis_name is None else lax.pmean(mean, axis_name)


def batch_statistics(z, axis_name=None):
    """(μ_B, σ_B²) per feature in two passes: the mean, then the mean squared deviation.

    Numerically stable: σ_B² = (1/B) Σ (z_i − μ_B)² does not cancel when
    |μ_B| ≫ σ_B, unlike the one-pass E[z²] − E[z]². Under ``axis_name`` both
    are statistics of the global batch (equal per-device batch sizes).
    """
    z = z.astype(_compute_dtype(z))
    mean = _batch_mean(z, axis_name)
    centered = z - mean
    return mean, _batch_mean(centered * centered, axis_name)


def normalize(z, mean, var, gamma, beta, eps=1e-5):
    """ẑ = γ (z − μ)/√(σ² + ε) + β with given statistics (eval mode; plain autodiff)."""
    scale = gamma * lax.rsqrt(var + eps)
    return (z - mean) * scale + beta


def _check_batch_size(z, axis_name):
    """Training needs a batch: ≥ 2 examples (leading axis, over all devices under ``axis_name``)."""
    if z.ndim < 2:
        raise ValueError(f"batch norm needs input with a batch axis and a feature axis, got shape {tuple(z.shape)}")
    examples = z.shape[0] * (1 if axis_name is None else lax.axis_size(axis_name))
    if examples < 2:
        raise ValueError(
            f"batch norm in training mode needs a batch of at least 2 examples to estimate μ_B and σ_B² "
            f"(and the unbiased B/(B-1) factor), but got input of shape {tuple(z.shape)}. "
            "Use a larger batch, or train=False for single examples."
        )


def batch_normalize(z, gamma, beta, eps=1e-5, *, axis_name=None):
    """Training-mode batch norm: returns (ẑ, μ_B, σ_B²).

    ẑ = γ (z − μ_B)/√(σ_B² + ε) + β with the batch's own statistics (two-pass,
    see ``batch_statistics``); the gradient is the notes' closed form (module
    docstring), including the terms from any use of the returned μ_B, σ_B².
    A batch of one example is a ``ValueError`` (raised at trace time).
    Under ``axis_name`` the statistics are the global batch's and the sums in
    ∂Div/∂σ_B², ∂Div/∂μ_B run over all devices. ∂Div/∂γ, ∂Div/∂β follow JAX's
    own autodiff: under ``shard_map`` with ``check_vma`` (the default) and
    replicated γ, β they are the totals over devices; otherwise (pmap,
    ``check_vma=False``) each device's contribution, to be summed over devices
    like any data-parallel gradient. ``eps`` may be a traced scalar.
    """
    _check_batch_size(z, axis_name)
    gamma, beta = jnp.asarray(gamma), jnp.asarray(beta)
    out_dtype = jnp.result_type(z.dtype, gamma.dtype, beta.dtype)
    compute_dtype = _compute_dtype(z)
    eps = jnp.asarray(eps, compute_dtype)
    z_hat, mu_B, var_B = _batch_normalize(axis_name, z.astype(compute_dtype), gamma, beta, eps)
    return z_hat.astype(out_dtype), mu_B, var_B


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _batch_normalize(axis_name, z, gamma, beta, eps):
    outputs, _ = _batch_normalize_forward(axis_name, z, gamma, beta, eps)
    return outputs


def _batch_normalize_forward(axis_name, z, gamma, beta, eps):
    """Forward pass; keeps (z − μ_B), γ and 1/√(σ_B² + ε) for the backward pass.

    Passes over the data: Σ z; z − μ_B; Σ (z − μ_B)²; ẑ = (z − μ_B)·γ/√(σ_B² + ε) + β.
    """
    mu_B = _batch_mean(z, axis_name)
    centered = z - mu_B  # z_i − μ_B
    var_B = _batch_mean(centered * centered, axis_name)
    inv_std = lax.rsqrt(var_B + eps)  # 1/√(σ_B² + ε)
    z_hat = centered * (gamma * inv_std) + beta  # γ u_i + β
    return (z_hat, mu_B, var_B), (centered, gamma, beta, inv_std, eps)


def _batch_normalize_backward(axis_name, residuals, cotangents):
    """The notes' closed form, as two sums over the batch and one elementwise pass.

    ``centered`` is (z_i − μ_B), kept from the forward pass; u_i is never
    materialised: Σ_i ∂Div/∂ẑ_i u_i = Σ_i ∂Div/∂ẑ_i (z_i − μ_B) / √(σ_B² + ε),
    so both sums read only ∂Div/∂ẑ and (z − μ_B) (no broadcast inside a
    reduction), and ∂Div/∂z_i = a ∂Div/∂ẑ_i + b (z_i − μ_B) + c with
    per-feature a, b, c. The extra cotangents of the returned μ_B, σ_B² add
    to ∂Div/∂μ_B, ∂Div/∂σ_B².
    """
    centered, gamma, beta, inv_std, eps = residuals
    dDiv_dzhat, dDiv_dmu_B_direct, dDiv_dvar_B_direct = cotangents
    dDiv_dzhat = dDiv_dzhat.astype(centered.dtype)
    B = values_per_feature(centered, axis_name)

    dDiv_dbeta = jnp.sum(dDiv_dzhat, axis=_reduction_axes(centered))  # Σ_i ∂Div/∂ẑ_i
    sum_dzhat_centered = jnp.sum(dDiv_dzhat * centered, axis=_reduction_axes(centered))
    dDiv_dgamma = sum_dzhat_centered * inv_std  # Σ_i ∂Div/∂ẑ_i u_i

    # With ∂Div/∂u_i = γ ∂Div/∂ẑ_i the notes' sums become the ones above:
    dDiv_dvar_B = -0.5 * inv_std**3 * gamma * sum_dzhat_centered  # −½(σ²+ε)^(−3/2) Σ ∂Div/∂u_i (z_i − μ_B)
    dDiv_dmu_B = -inv_std * gamma * dDiv_dbeta  # −1/√(σ²+ε) Σ ∂Div/∂u_i
    dDiv_deps = jnp.sum(dDiv_dvar_B)  # ε enters only through σ_B² + ε
    typed = axis_name is not None and axis_name in _varying_axes(centered)
    dDiv_dvar_B = _total_over_devices(dDiv_dvar_B, axis_name, typed) + _total_over_devices(dDiv_dvar_B_direct, axis_name, typed)
    dDiv_dmu_B = _total_over_devices(dDiv_dmu_B, axis_name, typed) + _total_over_devices(dDiv_dmu_B_direct, axis_name, typed)

    # ∂Div/∂z_i = ∂Div/∂u_i /√(σ²+ε) + ∂Div/∂σ_B² · 2(z_i − μ_B)/B + ∂Div/∂μ_B / B
    dDiv_dz = dDiv_dzhat * (gamma * inv_std) + centered * (2.0 / B * dDiv_dvar_B) + dDiv_dmu_B / B
    return (
        dDiv_dz.astype(centered.dtype),
        _cotangent_like(gamma, dDiv_dgamma, centered, axis_name),
        _cotangent_like(beta, dDiv_dbeta, centered, axis_name),
        _cotangent_like(eps, dDiv_deps, centered, axis_name),
    )


def _varying_axes(value) -> frozenset:
    """The manual mesh axes ``value`` varies over (shard_map's check_vma types); empty elsewhere."""
    aval = jax.typeof(value)
    mat = getattr(aval, "mat", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(aval, "vma", ()))


def _total_over_devices(value, axis_name, typed: bool):
    """Σ over devices of each device's contribution ``value``.

    ``typed``: shard_map tracks device variance (check_vma). Then a value that
    does not vary over ``axis_name`` is already the total (JAX sums the
    cotangent of a replicated value itself); otherwise every value is one
    device's contribution.
    """
    if axis_name is None or (typed and axis_name not in _varying_axes(value)):
        return value
    return lax.psum(value, axis_name)


def _cotangent_like(primal, local_cotangent, data, axis_name):
    """A parameter's cotangent with the primal's dtype and device-variance type.

    The local cotangent is this device's contribution. Under shard_map with
    check_vma, a replicated (invariant) parameter must receive the total over
    devices, as JAX's own autodiff gives it; otherwise (varying parameter,
    pmap, check_vma=False) the contribution is returned and summing it over
    devices is the caller's data-parallel reduction.
    """
    cotangent = local_cotangent.astype(primal.dtype)
    if axis_name is None:
        return cotangent
    data_varies, primal_varies = axis_name in _varying_axes(data), axis_name in _varying_axes(primal)
    return lax.psum(cotangent, axis_name) if data_varies and not primal_varies else cotangent


_batch_normalize.defvjp(_batch_normalize_forward, _batch_normalize_backward)


def update_running_statistics(state: BatchNormState, mean_B, var_B, B: int, ema_decay=0.9) -> BatchNormState:
    """Fold one batch's (μ_B, σ_B²) into the running statistics.

    The unbiased batch variance B/(B−1) σ_B² is tracked. Cumulative rule:
    weight 1/(N+1) for the (N+1)-th batch, giving the average over batches;
    EMA rule: weight 1 − λ, λ = ``ema_decay``.
    """
    unbiased_var = var_B * (B / (B - 1))
    count = state.count + 1
    weight = jnp.where(state.cumulative, 1.0 / count.astype(state.mean.dtype), 1.0 - ema_decay)
    mean = state.mean + weight * (lax.stop_gradient(mean_B) - state.mean)
    var = state.var + weight * (lax.stop_gradient(unbiased_var) - state.var)
    return BatchNormState(mean.astype(state.mean.dtype), var.astype(state.var.dtype), count, state.cumulative)


# ---------------------------------------------------------------- the layer


@LAYERS.register
def batchnorm(*, eps=1e-5, stats: str = "ema", ema_decay=0.9, axis_name=None, dtype=None, compute_dtype=None) -> Layer:
    """Batch normalization over every axis but the last (features).

    Args:
      eps: ε in √(σ² + ε); float or traced scalar, ≥ 0.
      stats: initial rule for the running statistics: ``"ema"`` or
        ``"cumulative"`` (the notes' average over batches); it lives in the
        state's ``cumulative`` flag, so ``set_stats_mode``/``reset_statistics``
        can change it later.
      ema_decay: λ of the EMA rule, in [0, 1]; float or traced scalar.
      axis_name: a named axis (``shard_map``/``pmap``) over which the batch is
        split: statistics are then those of the global batch.
      dtype: dtype of γ, β (a float dtype); None is JAX's default float
        (float32, float64 under ``jax_enable_x64``). The running statistics
        are kept in it, at least float32.
      compute_dtype: dtype of the output (mixed precision, e.g.
        ``jnp.bfloat16``): the normalisation statistics (μ_B, σ_B², the
        running statistics) and the arithmetic stay in at least float32, and
        ẑ is cast to ``compute_dtype``. None: ẑ has the dtype of x, γ, β
        combined.

    Params: ``{"gamma": ones, "beta": zeros}`` per feature. State:
    ``BatchNormState``. Training mode normalises with the batch's statistics
    and returns updated running statistics; eval mode normalises with the
    running statistics and returns the state unchanged. A training batch of
    one example is a ``ValueError`` at trace time.

    Raises:
      ValueError: ``eps`` < 0, ``ema_decay`` outside [0, 1], an unknown
        ``stats``, or a ``dtype``/``compute_dtype`` that is not a float dtype.
    """
    check_nonnegative("eps", eps)
    check_in_range("ema_decay", ema_decay, 0.0, 1.0, high_inclusive=True)
    check_choice("stats", stats, STATS_MODES)
    dtype = check_dtype("dtype", dtype, jnp.floating)
    compute_dtype = check_dtype("compute_dtype", compute_dtype, jnp.floating)

    def init(key, input_shape):
        del key
        features = input_shape[-1]
        param_dtype = default_float() if dtype is None else dtype
        params = {"gamma": jnp.ones((features,), param_dtype), "beta": jnp.zeros((features,), param_dtype)}
        return tuple(input_shape), params, init_state(features, stats, param_dtype)

    def apply(params, state, x, *, train: bool, key=None):
        del key
        if not train:
            y = _normalize_wide(x, state.mean, state.var, params["gamma"], params["beta"], eps)
            return _output(y, x, params, compute_dtype), state
        y, mean_B, var_B = batch_normalize(x, params["gamma"], params["beta"], eps, axis_name=axis_name)
        new_state = update_running_statistics(state, mean_B, var_B, values_per_feature(x, axis_name), ema_decay)
        return _output(y, x, params, compute_dtype), new_state

    return Layer(init, apply)


def _normalize_wide(x, mean, var, gamma, beta, eps):
    """Eval-mode ẑ computed in at least float32 (low-precision x is upcast)."""
    return normalize(x.astype(_compute_dtype(x)), mean, var, gamma, beta, eps)


def _output(y, x, params, compute_dtype):
    """ẑ in ``compute_dtype``, or else in the dtype of x, γ, β combined."""
    if compute_dtype is not None:
        return y.astype(compute_dtype)
    return y.astype(jnp.result_type(x.dtype, params["gamma"].dtype, params["beta"].dtype))


# ---------------------------------------------------------------- model-level helpers


def _is_batchnorm_state(node) -> bool:
    return isinstance(node, BatchNormState)


def map_batchnorm_states(fn, model_state):
    """Apply ``fn`` to every ``BatchNormState`` in a model state tree (e.g. nested ``serial`` tuples)."""
    return jax.tree.map(lambda node: fn(node) if _is_batchnorm_state(node) else node, model_state, is_leaf=_is_batchnorm_state)


def set_stats_mode(model_state, stats: str):
    """Switch every batch norm in ``model_state`` to the ``"ema"`` or ``"cumulative"`` rule, keeping its statistics."""
    check_choice("stats", stats, STATS_MODES)
    flag = jnp.asarray(stats == "cumulative")
    return map_batchnorm_states(lambda s: s._replace(cumulative=jnp.broadcast_to(flag, jnp.shape(s.cumulative))), model_state)


def reset_statistics(model_state, stats: str | None = None):
    """Reset every batch norm's running statistics (mean 0, variance 1, count 0).

    ``stats`` (``"ema"``/``"cumulative"``) also chooses the rule; None keeps each layer's.
    """
    if stats is not None:
        model_state = set_stats_mode(model_state, stats)

    def reset(s: BatchNormState) -> BatchNormState:
        return BatchNormState(jnp.zeros_like(s.mean), jnp.ones_like(s.var), jnp.zeros_like(s.count), s.cumulative)

    return map_batchnorm_states(reset, model_state)


def recompute_statistics(model: Layer, params, model_state, batches: Iterable[Any], *, key=None):
    """Re-estimate every batch norm's statistics on the final network (the notes' test-time rule).

    Passes each training batch through ``model`` in training mode (so each
    batch norm sees its inputs as in training) starting from reset statistics
    with the cumulative rule; every batch norm in the model (any nesting of
    ``serial``) then holds μ_BN = (1/N) Σ μ_B(batch) and
    σ_BN² = (1/N) Σ B/(B−1) σ_B²(batch). Each layer's rule (EMA/cumulative)
    is restored in the returned state; other state entries are kept as given.

    Args:
      model: the ``Layer`` (e.g. a ``serial``).
      params, model_state: the trained network's.
      batches: iterable of input arrays, or of ``(x, targets)`` pairs.
      key: PRNG key, split once per batch, needed when the model has dropout
        (training mode).
    """
    apply = jax.jit(functools.partial(model.apply, train=True))
    state = reset_statistics(model_state, stats="cumulative")
    for x in batches:
        if isinstance(x, (tuple, list)):
            x = x[0]
        batch_key = None
        if key is not None:
            key, batch_key = jax.random.split(key)
        _, state = apply(params, state, x, key=batch_key)
    modes = _stats_flags(model_state)
    return _restore_flags(state, modes)


def _stats_flags(model_state):
    return [node.cumulative for node in jax.tree.leaves(model_state, is_leaf=_is_batchnorm_state) if _is_batchnorm_state(node)]


def _restore_flags(model_state, flags):
    flags = iter(flags)
    return map_batchnorm_states(lambda s: s._replace(cumulative=next(flags)), model_state)


callable_module(__name__, batchnorm)
