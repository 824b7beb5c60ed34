"""Gradient clipping (the notes' "gradient clipping" trick).

Three ways to bound an update ``g`` before it reaches the optimizer:
element-wise (:func:`clip`), per leaf by its L2 norm (:func:`clip_by_norm`)
and over the whole tree by the global L2 norm (:func:`clip_by_global_norm`).
None of them divides by a zero norm: all-zero gradients come out as zeros.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from functional_nn import _validation
from functional_nn.optim import base
from functional_nn.optim.base import GradientTransformation, cast_scalar

__all__ = ["clip", "clip_by_norm", "clip_by_global_norm"]


def clip(max_delta: Any) -> GradientTransformation:
    r"""Clip each element to ``[-c, c]``: ``g ← max(-c, min(g, c))``.

    Args:
      max_delta: the bound ``c > 0``.
    """
    _validation.check_positive("max_delta", max_delta)

    def clip_leaf(g):
        bound = cast_scalar(max_delta, g.dtype)
        return jnp.clip(g, -bound, bound)

    return base.stateless(clip_leaf)


def _safe_sqrt(squared_norm: jax.Array) -> jax.Array:
    """``√s``, with a finite (zero) derivative at ``s = 0`` instead of NaN."""
    positive = squared_norm > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared_norm, 1)), 0)


def _leaf_norm(g: jax.Array) -> jax.Array:
    """``‖g‖₂``, also for complex ``g`` (``Σ|g_i|²`` is real)."""
    squares = (g.conj() * g).real if jnp.iscomplexobj(g) else g * g
    return _safe_sqrt(jnp.sum(squares))


def _check_max_norm(max_norm: Any) -> None:
    """``max_norm`` in ``(0, inf]``; ``inf`` means no clipping (as optax)."""
    _validation.check_in_range("max_norm", max_norm, 0.0, math.inf,
                               low_inclusive=False, high_inclusive=True)


def _clip_leaf_by_norm(g: jax.Array, max_norm: Any) -> jax.Array:
    norm = _leaf_norm(g)
    max_norm = cast_scalar(max_norm, norm.dtype)
    # Scale only when ‖g‖ > max_norm: then ‖g‖ > 0, so the division is safe,
    # and the scale is exactly 1 otherwise (also for max_norm = inf, where
    # max_norm / max(‖g‖, max_norm) would be inf / inf = NaN).
    over = norm > max_norm
    safe_norm = jnp.where(over, norm, jnp.ones_like(norm))
    return g * jnp.where(over, max_norm / safe_norm, jnp.ones_like(norm))


def clip_by_norm(max_norm: Any) -> GradientTransformation:
    r"""Rescale each leaf whose L2 norm exceeds ``c``:
    ``g ← g · c / max(‖g‖₂, c)``.

    Args:
      max_norm: the bound ``c`` in ``(0, inf]`` on each leaf's norm
        (``inf``: no clipping).
    """
    _check_max_norm(max_norm)
    return base.stateless(lambda g: _clip_leaf_by_norm(g, max_norm))


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
    r"""Rescale the whole tree when its global L2 norm exceeds ``c``:

    .. math:: g ← \begin{cases} g & ‖g‖ < c \\ (g / ‖g‖)\, c & \text{otherwise}
              \end{cases}, \qquad ‖g‖ = \sqrt{\textstyle\sum_{\text{leaves}} ‖g_\ell‖^2}

    The same values as ``optax.clip_by_global_norm``; the norm and the
    division are guarded so that all-zero gradients give zeros, and
    derivatives through this transformation (meta-gradients) stay finite.

    Args:
      max_norm: the bound ``c`` in ``(0, inf]`` on the global norm
        (``inf``: no clipping).
    """
    _check_max_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params
        global_norm = _safe_sqrt(optax.tree.norm(updates, squared=True))
        keep = global_norm < max_norm
        safe_norm = jnp.where(keep, jnp.ones_like(global_norm), global_norm)

        def clip_leaf(g):
            clipped = (g / safe_norm.astype(g.dtype)) * cast_scalar(max_norm, g.dtype)
            return jnp.where(keep, g, clipped)

        return jax.tree.map(clip_leaf, updates), state

    return GradientTransformation(lambda params: base.EmptyState(), update_fn)
