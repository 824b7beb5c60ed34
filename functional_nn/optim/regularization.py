"""L2 regularization, coupled (in the loss) and decoupled (weight decay).

The notes regularize the loss:

.. math:: L(W_1, …, W_K) = \\mathrm{Loss}(W_1, …, W_K) + \\tfrac12 λ \\sum_k ‖W_k‖_2^2

whose gradient is ``∂Loss/∂W + λW``. Both transformations here add ``λ·w``
to the update; they differ in *where* they sit in a chain:

* :func:`add_l2_penalty` goes first, on the raw gradient, before any
  rescaling (coupled L2): then every optimizer minimises exactly the notes'
  regularized loss (for Adam this is "Adam + L2").
* :func:`add_decayed_weights` goes after the rescaling (decoupled weight
  decay, Loshchilov & Hutter): ``w ← w - η(u_k + λw)`` as in
  :func:`~functional_nn.optim.adamw`. For SGD the two coincide.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp

from functional_nn import _validation
from functional_nn.optim import base
from functional_nn.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    ScheduleState,
    cast_scalar,
    increment_count,
    value_at,
    zero_count,
)
from functional_nn.optim.wrappers import masked

__all__ = ["add_l2_penalty", "add_decayed_weights"]

Mask = Optional[Union[Any, Callable[[Any], Any]]]


def _is_constant_zero(coefficient: Any) -> bool:
    return isinstance(coefficient, (int, float)) and coefficient == 0


def _add_scaled_params(transform_name: str, name: str, coefficient: ScalarOrSchedule,
                       mask: Mask) -> GradientTransformation:
    """``u ← u + λ·w`` with λ a number, an array or a schedule of the step.

    Raises (from ``update``):
      ValueError: ``params`` is None.
    """
    _validation.check_nonnegative(name, coefficient, required=True)

    def init_fn(params):
        del params
        return ScheduleState(count=zero_count()) if callable(coefficient) else base.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                f"{transform_name}: params are required: call update(updates, state, params) "
                f"(it adds {name}·params to the updates)")
        new_state = ScheduleState(count=increment_count(state.count)) if callable(coefficient) else state
        if _is_constant_zero(coefficient):
            return updates, new_state
        lam = value_at(coefficient, getattr(state, "count", None))
        # A None update (optax's "no update for this leaf") stays None.
        updates = jax.tree.map(
            lambda g, w: None if g is None else g + cast_scalar(lam, jnp.result_type(g)) * w,
            updates, params, is_leaf=lambda x: x is None)
        return updates, new_state

    transformation = GradientTransformation(init_fn, update_fn)
    return masked(transformation, mask) if mask is not None else transformation


def add_l2_penalty(lam: ScalarOrSchedule = 0.0, mask: Mask = None) -> GradientTransformation:
    r"""Coupled L2: add the gradient of ``½λ‖W‖²`` to the raw gradient,
    ``g ← g + λ·w``. Put it first in a chain.

    Args:
      lam: λ ≥ 0 (a number, an array or a schedule of the step).
      mask: a tree of booleans (or a function ``params -> tree``) marking the
        leaves to regularize, e.g. :func:`~functional_nn.optim.mask_by_name`
        to leave biases out.
    """
    return _add_scaled_params("add_l2_penalty", "lam", lam, mask)


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0, mask: Mask = None) -> GradientTransformation:
    r"""Decoupled weight decay: ``u ← u + λ·w`` applied to the optimizer's
    rescaled direction, so that ``w ← w - η(u_k + λw)``. Put it just before
    :func:`~functional_nn.optim.scale_by_learning_rate` (as in AdamW).

    Args:
      weight_decay: λ ≥ 0 (a number, an array or a schedule of the step).
      mask: a tree of booleans (or a function ``params -> tree``) marking the
        leaves to decay.

    Raises:
      ValueError: (from ``update``) ``params`` is None: the decay needs them.
    """
    return _add_scaled_params("add_decayed_weights", "weight_decay", weight_decay, mask)
