"""Data parallelism over devices with JAX's own SPMD sharding.

The devices form a one-axis ``jax.sharding.Mesh`` whose axis is named
``data``. Each global minibatch of B examples is split along that axis, so
each of the n devices holds B/n examples (``NamedSharding(mesh, P("data"))``);
the parameters W, the model state (batch norm's running statistics), the
optimizer state, the step count and the PRNG key are replicated
(``NamedSharding(mesh, P())``).

The epoch is the very same pure epoch as on one device (``make_epoch``: a fresh
permutation cut into minibatches, one ``lax.scan`` of the training step),
compiled by ``jax.jit`` with these shardings and with the stacked minibatches
(K, B, ...) constrained to ``P(None, "data")``. Every sum over the examples of
a minibatch is then a sum over an axis split over devices, which XLA's SPMD
partitioner computes as per-device partial sums followed by an all-reduce:

    Div(MB) = (1/B) Σ_t Div(Y_t, d_t),      ∇_W Div(MB) = (1/B) Σ_t ∇_W Div(Y_t, d_t),
    μ_B = (1/B) Σ_i z_i,                    σ_B² = (1/B) Σ_i (z_i − μ_B)²,

are those of the *global* batch, batch norm included (no ``shard_map`` and no
``axis_name`` needed: the model is applied to the whole, sharded, batch), and
the epoch's metrics come out reduced over devices. The result equals the
1-device epoch with the same global batch up to float summation order; the
random bits (shuffle, dropout, augmentation) are the same too, because JAX
draws them independently of the sharding (``jax_threefry_partitionable``).
Batch norm's ``axis_name`` is for code written with ``shard_map``; leave it
unset in models trained here (a ``pmean`` over an unbound axis is an error).

The training data are replicated on every device (each device gathers its own
B/n examples of each minibatch from its copy, no communication), which keeps
the shuffle identical to the 1-device run. Host arrays are placed with
``jax.make_array_from_callback``, so the same code runs on several hosts after
``jax.distributed.initialize()`` (each process holds the same host data and
contributes its own devices' shards).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from functional_nn.train.epoch import make_epoch
from functional_nn.train.state import TrainState
from functional_nn.train.step import chunk_rows, evaluate_host_chunks, make_eval_sums, make_train_step

DATA_AXIS = "data"

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_batch_divisible",
    "make_data_mesh",
    "make_parallel_epoch",
    "make_parallel_evaluate",
    "make_parallel_train_epoch",
    "place_replicated",
    "replicated_sharding",
    "resolve_devices",
    "shard_batch",
]


# --------------------------------------------------------------------------
# the mesh and its shardings


def resolve_devices(devices: Any = "all") -> list:
    """The devices ``devices`` names: ``"all"`` (every device of every process),
    an integer n (the first n), an explicit sequence of devices, or a ``Mesh``
    (its devices). The one home of this rule: the data-parallel mesh and the
    grid search's grid axis both resolve their ``devices`` here."""
    if isinstance(devices, Mesh):
        return list(devices.devices.flat)
    available = jax.devices()
    if isinstance(devices, str) and devices == "all":
        return list(available)
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices!r}: must be 'all' or an integer in [1, {len(available)}] "
                f"(the number of available {available[0].platform} devices)"
            )
        return list(available[:devices])
    if isinstance(devices, (list, tuple)) and devices and all(isinstance(d, jax.Device) for d in devices):
        return list(devices)
    raise ValueError(f"devices={devices!r}: must be 'all', an integer >= 1, a list of devices or a Mesh")


def _check_every_process_takes_part(devices: list, setting) -> list:
    """On several hosts every process runs the same program, so each must own devices of the mesh."""
    processes = {d.process_index for d in devices}
    if len(processes) != jax.process_count():
        raise ValueError(
            f"devices={setting!r}: the mesh has devices of {len(processes)} of the {jax.process_count()} "
            "processes; every process must take part (use 'all')"
        )
    return devices


def make_data_mesh(devices: Any = "all") -> Mesh:
    """A one-axis mesh named ``data`` over ``devices`` (see :func:`resolve_devices`);
    a ``Mesh`` is returned as it is if it has a ``data`` axis (other axes are
    then replicated over)."""
    if isinstance(devices, Mesh):
        if DATA_AXIS not in devices.axis_names:
            raise ValueError(f"mesh axes {devices.axis_names}: a data-parallel mesh needs an axis named {DATA_AXIS!r}")
        return devices
    chosen = _check_every_process_takes_part(resolve_devices(devices), devices)
    return Mesh(np.array(chosen), (DATA_AXIS,))


def data_axis_size(mesh: Mesh) -> int:
    """n: the number of devices a global batch is split over."""
    return mesh.shape[DATA_AXIS]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over the ``data`` axis: device j holds examples jB/n … (j+1)B/n − 1."""
    return NamedSharding(mesh, P(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """The epoch's minibatches (K, B, ...): the K steps whole, each minibatch's B examples split."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, model and optimizer state, metrics)."""
    return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
    """Each device must hold the same number B/n of examples of the global batch."""
    n = data_axis_size(mesh)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
    if batch_size % n:
        nearest = max(n, round(batch_size / n) * n)
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the device count {n}: the global batch is "
            f"split evenly over the {n} devices of the 'data' axis; use a multiple of {n} (e.g. {nearest})"
        )


# --------------------------------------------------------------------------
# placing host data and train states on the mesh


def _place_leaf(leaf, sharding: NamedSharding):
    """One array placed with ``sharding`` from a host copy (multi-process safe:
    each process supplies the shards of its own devices)."""
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _place_leaf(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    host = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place_replicated(tree, mesh: Mesh):
    """Every leaf of ``tree`` (host or device arrays, typed PRNG keys) copied to every device of ``mesh``."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda leaf: _place_leaf(leaf, sharding), tree)


def shard_batch(tree, mesh: Mesh):
    """Every leaf of ``tree`` split over ``mesh``'s devices along its leading (example) axis."""
    n = data_axis_size(mesh)
    for leaf in jax.tree.leaves(tree):
        if np.shape(leaf)[0] % n:
            raise ValueError(f"a batch of {np.shape(leaf)[0]} examples cannot be split evenly over {n} devices")
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda leaf: _place_leaf(leaf, sharding), tree)


# --------------------------------------------------------------------------
# the sharded epoch


def make_parallel_epoch(step: Callable, batch_size: int, mesh: Mesh, *, unroll: int = 1, donate: bool = True):
    """``epoch(train_state, x, d) -> (train_state, metrics)`` of ``step`` over
    minibatches of ``batch_size`` examples, jit-compiled data-parallel over
    ``mesh``: state, data and metrics replicated, each minibatch split over the
    ``data`` axis. ``donate`` donates the incoming train state's buffers."""
    check_batch_divisible(batch_size, mesh)
    epoch = make_epoch(step, batch_size, unroll=unroll, batch_sharding=stacked_batch_sharding(mesh))
    replicated = replicated_sharding(mesh)
    return jax.jit(
        epoch,
        in_shardings=(replicated, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,) if donate else (),
    )


def make_parallel_train_epoch(
    model,
    loss: Callable,
    optimizer,
    batch_size: int,
    *,
    devices: Any = "all",
    augment=None,
    donate: bool = True,
    unroll: int = 1,
):
    """The data-parallel compiled epoch for ``model`` / ``loss`` / ``optimizer``
    (see :func:`functional_nn.train.make_train_step`) over ``devices``
    (``"all"``, a count n, a list of devices or a ``Mesh`` with a ``data``
    axis). Pass the same devices/mesh to ``fit(..., mesh=...)`` so that the
    data and the train state are placed on the mesh once.

    Raises ``ValueError`` naming ``batch_size`` when the global batch
    does not divide evenly over the devices.
    """
    mesh = make_data_mesh(devices)
    step = make_train_step(model, loss, optimizer, augment=augment)
    return make_parallel_epoch(step, batch_size, mesh, unroll=unroll, donate=donate)


# --------------------------------------------------------------------------
# evaluation with each chunk split over devices


def make_parallel_evaluate(model, loss: Callable, devices: Any = "all", *, chunk_size: int = 1024):
    """``evaluate(train_state, x, d) -> {"loss", "accuracy"?}`` like
    :func:`functional_nn.train.make_evaluate`, with each chunk of examples split
    over the mesh's devices and the sums Σ_t Div(Y_t, d_t), Σ correct, count
    reduced over devices. ``chunk_size`` is rounded up to a multiple of n."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    mesh = make_data_mesh(devices)
    n = data_axis_size(mesh)
    size = math.ceil(chunk_size / n) * n
    replicated, split = replicated_sharding(mesh), batch_sharding(mesh)
    eval_sums = jax.jit(
        make_eval_sums(model, loss),
        in_shardings=(replicated, replicated, split, split, split),
        out_shardings=replicated,
    )

    def evaluate(train_state: TrainState, x, targets) -> dict:
        if len(x) == 0:
            raise ValueError("cannot evaluate on an empty data set")
        params, model_state = place_replicated((train_state.params, train_state.model_state), mesh)
        return evaluate_host_chunks(
            lambda *chunk: eval_sums(params, model_state, *shard_batch(chunk, mesh)), chunk_rows(x, targets, size)
        )

    return evaluate
