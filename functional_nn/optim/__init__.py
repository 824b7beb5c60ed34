"""Gradient transformations ``(init, update)`` in the optax style.

Every function returns an :class:`optax.GradientTransformation` whose state
is a NamedTuple of arrays, so ours and optax's mix in :func:`chain` and
:func:`optax.chain`. Typical use::

    from functional_nn import optim
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-3))
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)
"""

from functional_nn.optim.aliases import (
    adadelta,
    adagrad,
    adam,
    adamw,
    momentum,
    nesterov,
    rmsprop,
    rprop,
    sgd,
    sign_sgd,
)
from functional_nn.optim.base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OPTIMIZERS,
    ScalarOrSchedule,
    ScheduleState,
    apply_updates,
    chain,
    identity,
)
from functional_nn.optim.clipping import clip, clip_by_global_norm, clip_by_norm
from functional_nn.optim.regularization import add_decayed_weights, add_l2_penalty
from functional_nn.optim.transforms import (
    ScaleByAdaDeltaState,
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByMomentumState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRpropState,
    ScaleByStddevState,
    ScaleByStddevWithCountState,
    scale,
    scale_by_adadelta,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_nesterov,
    scale_by_rms,
    scale_by_rprop,
    scale_by_sign,
    scale_by_stddev,
)
from functional_nn.optim.wrappers import (
    AccumulateGradientsState,
    MaskedState,
    SkipNonfiniteState,
    accumulate_gradients,
    mask_by_name,
    masked,
    skip_nonfinite,
)

__all__ = [
    # aliases
    "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adadelta", "adam",
    "adamw", "rprop", "sign_sgd",
    # building blocks
    "scale", "scale_by_momentum", "scale_by_nesterov", "scale_by_rms",
    "scale_by_stddev", "scale_by_adagrad", "scale_by_adadelta", "scale_by_adam",
    "scale_by_rprop", "scale_by_sign", "scale_by_learning_rate",
    "clip", "clip_by_norm", "clip_by_global_norm",
    "add_l2_penalty", "add_decayed_weights",
    "masked", "mask_by_name", "skip_nonfinite", "accumulate_gradients",
    "chain", "identity", "apply_updates", "OPTIMIZERS",
    # types and states
    "GradientTransformation", "GradientTransformationExtraArgs", "EmptyState",
    "ScalarOrSchedule", "ScheduleState", "ScaleByMomentumState",
    "ScaleByRmsState", "ScaleByRmsWithCountState", "ScaleByStddevState",
    "ScaleByStddevWithCountState", "ScaleByAdagradState",
    "ScaleByAdaDeltaState", "ScaleByAdamState", "ScaleByRpropState",
    "MaskedState", "SkipNonfiniteState", "AccumulateGradientsState",
]
