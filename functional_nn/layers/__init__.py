"""Layers as ``(init, apply)`` pairs over parameter pytrees.

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, train: bool, key=None) -> (y, new_state)

``batchnorm``, ``dropout``, ``conv``, ``layernorm`` and ``residual`` are modules that are also their layers'
constructors (``layers.batchnorm(eps=1e-3)``, ``layers.batchnorm.normalize``);
their plain functions are exported here too.
"""

from functional_nn.layers import batchnorm, dropout
from functional_nn.layers import conv, layernorm, residual
from functional_nn.layers import batchnorm as _batchnorm_module
from functional_nn.layers import dropout as _dropout_module
from functional_nn.layers.pooling import avg_pool, avg_pool_values, global_avg_pool, max_pool, max_pool_values
from functional_nn.layers.base import LAYERS, Layer, layer_name, serial, split_key
from functional_nn.layers.flat import FlatLayout, FlatParams, flat_params, ravel_by_dtype, unravel
from functional_nn.layers.core import (
    INITIALIZERS,
    Activation,
    dense,
    elementwise,
    flatten,
    gelu,
    get_initializer,
    identity,
    linear,
    log_softmax,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    tanh,
)

BatchNormState = _batchnorm_module.BatchNormState
batch_statistics = _batchnorm_module.batch_statistics
batch_normalize = _batchnorm_module.batch_normalize
normalize = _batchnorm_module.normalize
update_running_statistics = _batchnorm_module.update_running_statistics
map_batchnorm_states = _batchnorm_module.map_batchnorm_states
set_stats_mode = _batchnorm_module.set_stats_mode
reset_statistics = _batchnorm_module.reset_statistics
recompute_statistics = _batchnorm_module.recompute_statistics

fold_into_dense = _dropout_module.fold_into_dense

convolve = conv.convolve
layer_normalize = layernorm.layer_normalize

__all__ = [
    "LAYERS",
    "Layer",
    "serial",
    "split_key",
    "dense",
    "linear",
    "INITIALIZERS",
    "get_initializer",
    "Activation",
    "elementwise",
    "identity",
    "relu",
    "sigmoid",
    "tanh",
    "gelu",
    "softplus",
    "softmax",
    "log_softmax",
    "flatten",
    "BatchNormState",
    "batchnorm",
    "batch_statistics",
    "batch_normalize",
    "normalize",
    "update_running_statistics",
    "map_batchnorm_states",
    "set_stats_mode",
    "reset_statistics",
    "recompute_statistics",
    "dropout",
    "fold_into_dense",
    "layer_name",
    "reshape",
    "conv",
    "convolve",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "max_pool_values",
    "avg_pool_values",
    "layernorm",
    "layer_normalize",
    "residual",
]
__all__ += ["FlatLayout", "FlatParams", "flat_params", "ravel_by_dtype", "unravel"]
