"""Many training runs at once: one compiled program, ``jax.vmap`` over settings.

A *setting* is one assignment of numeric hyperparameters h = (η, λ, β₁, p,
...). Every setting s = 1…S trains its own copy of the network from the same
initial weights, with its own optimizer state and its own early stopping, but
all S runs are one program: the epoch of :mod:`functional_nn.train.epoch`
(a ``lax.scan`` over minibatches) is ``jax.vmap``-ed over the leading *grid
axis* of the hyperparameters and of the train states, and the optimizer and
layers are built inside the vmapped function from traced hyperparameters.

Per-setting early stopping (the notes: "evaluate periodically on validation
data, for early stopping") runs inside the same program. After epoch e each
setting evaluates its monitored validation value v_e and compares it with its
best v*:

    improved_s = active_s ∧ finite(v_e) ∧ (v* undefined ∨ v_e < v* − δ)   (mode min)
    v*_s, e*_s ← v_e, e                       where improved_s
    wait_s ← 0 if improved_s else wait_s + 1
    stopped_s ← stopped_s ∨ wait_s ≥ patience ∨ diverged_s

The weights each setting ends with are kept with ``jnp.where``: W*_s ← W_e
where improved_s (``restore_best``, the best epoch's weights) or where the
setting is still active (the last epoch it trained). A stopped setting's
epochs are still computed but change nothing it reports, so each setting
reports exactly what a separate :func:`~functional_nn.train.fit` run with the
same settings would. A setting whose training loss turns NaN/Inf is marked
``diverged`` and stopped (``fit`` would raise); the others carry on.

The PRNG key is shared, not vmapped: every setting starts from the same key,
and a key evolves by splitting alone (never by weights or hyperparameters),
so all settings' keys are equal at every step — each setting sees the same
shuffles and dropout masks as its own ``fit`` run with that seed, and the
program draws them once instead of S times.

Training seeds are one more vmapped axis. Given ``key=seed_keys([s₁, …, s_N])``
(N keys instead of one), every setting is trained once per seed in the same
program: the grid axis has S·N columns, column s·N + k being setting s with
seed s_k. Each column then carries its own key (initial weights, shuffles
and dropout masks of seed s_k, as a separate run with that seed would see);
:func:`seed_run` gives the S columns of one seed as a single-seed
:class:`GridRun`.

With ``devices`` the grid axis is sharded over a ``jax.sharding.Mesh`` of
devices (``NamedSharding`` on the leading axis of train states and
hyperparameters, the data replicated): S settings on n devices run S/n per
device. S is padded to a multiple of n with copies of the last setting, whose
results are dropped.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_nn.train.early_stopping import EarlyStopping, improves, out_of_patience, resolved_mode, validate_early_stopping
from functional_nn.train.epoch import make_epoch
from functional_nn.train.progress import EpochProgress
from functional_nn.train.parallel import place_replicated, replicated_sharding, resolve_devices
from functional_nn.train.state import TrainState
from functional_nn.train.step import chunk_rows, evaluate_device_chunks, make_eval_sums, make_train_step, mean_metrics

GRID_AXIS = "grid"

# build(hparams) -> (model, loss, optimizer); hparams maps names to scalars (traced inside the program).
Build = Callable[[dict], tuple]


class GridStopping(NamedTuple):
    """Early-stopping state of each setting (every leaf has the grid axis first
    once vmapped): best monitored value v* (NaN before the first finite one),
    its epoch e* (0: none yet), epochs since it, whether the setting has stopped
    or diverged, the epoch of the kept weights, and the kept weights W* and
    model state: the best epoch's with ``restore_best``, otherwise the last
    epoch's the setting trained (what ``fit`` would return)."""

    best_value: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    stopped: jax.Array
    diverged: jax.Array
    kept_epoch: jax.Array
    kept_params: Any
    kept_model_state: Any


class GridCarry(NamedTuple):
    """What one grid epoch carries to the next: train states and stopping states.
    Every leaf has the grid axis first except ``train_state.key`` when it is one
    key shared by all settings; with a seed axis each column has its own key
    (see the module docstring)."""

    train_state: TrainState
    stopping: GridStopping


class ValidationChunks(NamedTuple):
    """Validation data cut into C chunks of equal size on the host, the last one
    padded: ``x`` (C, chunk, ...), ``y`` (C, chunk, ...), ``mask`` (C, chunk)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray


class GridRun(NamedTuple):
    """The outcome of :func:`run_grid`. The NumPy arrays have the grid axis S;
    ``carry`` (final train states and stopping states, on the devices and with
    the sharding the program used) may hold padding settings after the first S
    (``size``); :func:`kept_train_state` gives one setting's train state with
    the weights it kept (its ``carry.train_state`` went on training after it stopped).

    ``history`` maps ``train_loss``, ``val_loss``, ``val_accuracy``, ... to
    (E, S) arrays over the E epochs the program ran; ``active`` (E, S) says
    which of those epochs each setting really trained (False once stopped), so
    setting s's learning curve is ``history[m][active[:, s], s]``; ``improved``
    (E, S) marks the epochs that improved on the setting's best (``fit``'s
    ``is_best``).

    With N seeds (``num_seeds``) there are S·N columns (``size``), setting-major:
    column s·N + k is setting s trained with seed k (see :func:`seed_run`).
    """

    carry: GridCarry
    size: int
    history: dict
    active: np.ndarray
    improved: np.ndarray
    best_value: np.ndarray
    best_epoch: np.ndarray
    epochs_run: np.ndarray
    diverged: np.ndarray
    stopped_early: np.ndarray
    monitor: str
    mode: str
    num_seeds: int = 1


# --------------------------------------------------------------------------
# small pure pieces


def seed_keys(seeds) -> jax.Array:
    """One PRNG key per training seed, stacked: ``jax.random.key(s)`` for each
    ``s`` of ``seeds`` (``key=`` of :func:`run_grid` trains every setting once
    per seed).

    Raises:
      ValueError: ``seeds`` is empty or holds something other than integers >= 0.
    """
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seeds={seeds!r}: must be a non-empty list of integers >= 0")
    return jnp.stack([jax.random.key(int(s)) for s in seeds])


def has_seed_axis(key: jax.Array) -> bool:
    """Whether ``key`` holds several keys (a seed axis, :func:`seed_keys`) rather than one."""
    return jnp.ndim(key) == 1


def tree_where(condition: jax.Array, on_true, on_false):
    """Leaf-wise ``jnp.where(condition, a, b)`` for a scalar condition (one setting)."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def validation_chunks(x, y, chunk_size: int = 1024) -> ValidationChunks:
    """Cut (x, y) with :func:`~functional_nn.train.step.chunk_rows` into equal
    chunks, the last one zero-padded and the padding masked out. The chunk size
    is ``chunk_size`` or, for fewer examples, the next power of two (unlike
    :func:`~functional_nn.train.make_evaluate`, which always pads to exactly
    ``chunk_size`` rows): the whole validation set is one argument of the
    compiled grid epoch, so a small one is not padded to a large chunk."""
    if len(x) == 0:
        raise ValueError("grid search needs validation data to select on: the validation split is empty")
    return ValidationChunks(*chunk_rows(x, y, min(chunk_size, _next_power_of_two(len(x)))))


def update_stopping(rule: EarlyStopping, stopping: GridStopping, value, diverged, epoch, train_state) -> tuple:
    """One setting's stopping state after epoch ``epoch`` (see the module docstring);
    returns (new stopping state, improved?)."""
    active = ~stopping.stopped
    improved = active & ~diverged & improves(rule, stopping.best_value, value)
    wait = jnp.where(improved, 0, stopping.wait + active.astype(jnp.int32))
    keep = improved if rule.restore_best else active & ~diverged
    new = GridStopping(
        best_value=jnp.where(improved, value.astype(jnp.float32), stopping.best_value),
        best_epoch=jnp.where(improved, epoch, stopping.best_epoch),
        wait=wait,
        stopped=stopping.stopped | (active & (diverged | out_of_patience(rule, wait))),
        diverged=stopping.diverged | (active & diverged),
        kept_epoch=jnp.where(keep, epoch, stopping.kept_epoch),
        kept_params=tree_where(keep, train_state.params, stopping.kept_params),
        kept_model_state=tree_where(keep, train_state.model_state, stopping.kept_model_state),
    )
    return new, improved


# --------------------------------------------------------------------------
# one setting's epoch, then vmapped and compiled


def make_setting_epoch(build: Build, batch_size: int, rule: EarlyStopping, *, augment=None, unroll: int = 1) -> Callable:
    """``setting_epoch(hparams, carry, epoch, x, d, val) -> (carry, metrics)`` for ONE
    setting: train one epoch, evaluate on validation data, update early stopping
    and the kept weights; the step count of a stopped setting stays put."""
    monitor = rule.monitor

    def setting_epoch(hparams, carry: GridCarry, epoch, x, targets, val: ValidationChunks):
        model, loss, optimizer = build(hparams)
        run_epoch = make_epoch(make_train_step(model, loss, optimizer, augment=augment), batch_size, unroll=unroll)
        trained, train_metrics = run_epoch(carry.train_state, x, targets)
        eval_sums = make_eval_sums(model, loss)
        val_metrics = evaluate_device_chunks(lambda *chunk: eval_sums(trained.params, trained.model_state, *chunk), val)
        metrics = {f"train_{k}": v for k, v in train_metrics.items() if k != "first_nonfinite_step"}
        metrics.update({f"val_{k}": v for k, v in val_metrics.items()})
        if monitor not in metrics:
            raise ValueError(f"early_stopping.monitor={monitor!r} is not a metric; available: {sorted(metrics)}")
        diverged = train_metrics["first_nonfinite_step"] >= 0
        stopping, improved = update_stopping(rule, carry.stopping, metrics[monitor], diverged, epoch, trained)
        # A stopped setting keeps training (cheaper to compile than freezing every array); only
        # its kept weights and stopping state are reported. Its step count stays at fit's.
        train_state = trained._replace(step=jnp.where(carry.stopping.stopped | diverged, carry.train_state.step, trained.step))
        metrics.update(improved=improved, active=~carry.stopping.stopped, diverged=diverged)
        return GridCarry(train_state, stopping), metrics

    return setting_epoch


def broadcast_to_grid(tree, size: int):
    """Every leaf repeated along a new leading grid axis of length S."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (size,) + jnp.shape(a)), tree)


def init_grid_carry(build: Build, hparams: dict, key: jax.Array, input_shape) -> GridCarry:
    """The first carry: every setting starts from the same weights, as separate
    runs seeded with ``key`` would (``key`` is split into the initialisation key
    and the train state's key exactly as :func:`~functional_nn.train.init_train_state`
    does); each setting's optimizer state is initialised with its own
    hyperparameters (``jax.vmap``). No best value yet (NaN), nothing stopped.

    The network is initialised once (its initial weights must not depend on
    the hyperparameters); with N keys (a seed axis) once per seed (``jax.vmap``
    over the keys, the same values as one call per key), and column s·N + k
    gets seed k's weights and key. Two compiled functions: the network's
    initialisation (the same program for every optimizer, so JAX's persistent
    compilation cache serves it to every group of a search with that network),
    then the columns and optimizer states.
    """
    size = check_hparams(hparams)
    model = build(setting_tree(hparams, 0))[0]
    keyed = has_seed_axis(key)
    init_network = _init_network(model, tuple(input_shape))
    networks = jax.jit(jax.vmap(init_network) if keyed else init_network)(key)
    columns = seed_columns(len(key), size) if keyed else None
    return _compiled_columns(build, size, columns)(hparams, networks)


def _init_network(model, input_shape: tuple) -> Callable:
    """``init(key) -> (params, model state, train key)``: ``key`` split into the
    initialisation key and the train state's key as
    :func:`~functional_nn.train.init_train_state` does."""

    def init(key):
        init_key, train_key = jax.random.split(key)
        _, params, model_state = model.init(init_key, input_shape)
        return params, model_state, train_key

    return init


def _compiled_columns(build: Build, size: int, columns: np.ndarray | None) -> Callable:
    """``carry(hparams, networks) -> GridCarry``, jit-compiled, from the
    initialised ``networks`` (params, model state, train key): one network
    repeated in every column with its key shared (``columns`` None), or one per
    seed, column c getting seed ``columns[c]``'s (:func:`seed_columns`)."""

    @jax.jit
    def carry(hparams, networks):
        if columns is None:
            params, model_state, train_key = networks
            params, model_state = broadcast_to_grid(params, size), broadcast_to_grid(model_state, size)
        else:
            params, model_state, train_key = jax.tree.map(lambda a: a[columns], networks)
        opt_state = jax.vmap(lambda h, p: build(h)[2].init(p))(hparams, params)
        train_state = TrainState(params=params, model_state=model_state, opt_state=opt_state,
                                 step=jnp.zeros((size,), jnp.int32), key=train_key)
        stopping = GridStopping(
            best_value=jnp.full((size,), jnp.nan, jnp.float32),
            best_epoch=jnp.zeros((size,), jnp.int32),
            wait=jnp.zeros((size,), jnp.int32),
            stopped=jnp.zeros((size,), bool),
            diverged=jnp.zeros((size,), bool),
            kept_epoch=jnp.zeros((size,), jnp.int32),
            kept_params=params,
            kept_model_state=model_state,
        )
        # a compiled function's outputs are separate buffers (XLA copies an input it returns):
        # W* starts equal to W but in its own buffer, as the epoch donates the carry
        return GridCarry(train_state, stopping)

    return carry


def seed_columns(num_seeds: int, columns: int) -> np.ndarray:
    """The seed index of each column: column s·N + k has seed k (padding columns
    too; their results are dropped)."""
    return np.arange(columns) % num_seeds


# --------------------------------------------------------------------------
# devices and the grid axis


def grid_devices(devices) -> list | None:
    """The devices the grid axis is sharded over: ``None`` (or 1) for none, else
    :func:`~functional_nn.train.parallel.resolve_devices` of ``devices``
    (``None`` again when that is a single device)."""
    if devices is None or (isinstance(devices, int) and not isinstance(devices, bool) and devices == 1):
        return None
    chosen = resolve_devices(devices)
    return chosen if len(chosen) > 1 else None


def at_most(devices: list | None, columns: int) -> list | None:
    """The first ``columns`` of ``devices`` when there are more devices than columns
    (a device without a column of its own would only compute padding)."""
    if devices is None or len(devices) <= columns:
        return devices
    return devices[:columns] if columns > 1 else None


def grid_mesh(devices: list) -> jax.sharding.Mesh:
    """A one-axis mesh named ``grid`` over ``devices``."""
    return jax.sharding.Mesh(np.array(devices), (GRID_AXIS,))


def padded_size(size: int, devices: list | None) -> int:
    """S rounded up to a multiple of the device count n."""
    n = 1 if devices is None else len(devices)
    return -(-size // n) * n


def pad_grid(hparams: dict, size: int) -> dict:
    """Each hyperparameter vector (S,) padded to ``size`` with copies of its last
    value (host NumPy: no eager device ops to compile)."""
    padded = {}
    for name, v in hparams.items():
        v = np.asarray(v)
        padded[name] = np.concatenate([v, np.repeat(v[-1:], size - len(v))])
    return padded


def column_hparams(hparams: dict, num_seeds: int, columns: int) -> dict:
    """The per-setting vectors (S,) laid out over the grid's columns: setting-major,
    column s·N + k is setting s (each value repeated for the N seeds), then padded
    to ``columns`` (a multiple of the device count) with copies of the last; float32."""
    return pad_grid({name: np.repeat(np.asarray(v, np.float32), num_seeds) for name, v in hparams.items()}, columns)


def check_hparams(hparams: dict) -> int:
    """The grid size S; every vector must be 1-D of the same non-zero length."""
    if not hparams:
        raise ValueError("hparams is empty: give at least one hyperparameter vector (e.g. {'learning_rate': [...]})")
    sizes = {name: np.shape(v) for name, v in hparams.items()}
    lengths = {shape[0] if len(shape) == 1 else None for shape in sizes.values()}
    if len(lengths) != 1 or None in lengths or 0 in lengths:
        raise ValueError(f"hparams: every value must be a non-empty 1-D vector of the same length (the grid), got shapes {sizes}")
    return lengths.pop()


# --------------------------------------------------------------------------
# the compiled program


class GridProgram(NamedTuple):
    """``epoch(hparams, carry, epoch, x, d, val) -> (carry, metrics)``, vmapped
    over the grid axis and compiled (sharded over ``mesh`` when given)."""

    epoch: Callable
    mesh: Any


def carry_prefix(grid, shared) -> GridCarry:
    """A pytree prefix of the carry: ``grid`` for every part but the shared key."""
    return GridCarry(TrainState(grid, grid, grid, grid, shared), grid)


def compile_grid_program(
    build: Build, batch_size: int, rule: EarlyStopping, *, augment=None, unroll: int = 1, devices=None, keyed: bool = False
) -> GridProgram:
    """The vmapped, jit-compiled epoch (it donates its carry); ``keyed``: one key
    per column (a seed axis) instead of one shared key."""
    setting_epoch = make_setting_epoch(build, batch_size, rule, augment=augment, unroll=unroll)
    axes = carry_prefix(0, 0 if keyed else None)
    grid_epoch = jax.vmap(setting_epoch, in_axes=(0, axes, None, None, None, None), out_axes=(axes, 0))
    if devices is None:
        return GridProgram(jax.jit(grid_epoch, donate_argnums=(1,)), None)
    mesh = grid_mesh(devices)
    split, whole = grid_shardings(mesh)
    carry_sharding = carry_prefix(split, split if keyed else whole)
    epoch = jax.jit(
        grid_epoch,
        in_shardings=(split, carry_sharding, whole, whole, whole, whole),
        out_shardings=(carry_sharding, split),
        donate_argnums=(1,),
    )
    return GridProgram(epoch, mesh)


def grid_shardings(mesh) -> tuple:
    """(split along the grid axis, replicated) shardings over ``mesh``."""
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(GRID_AXIS))
    return split, replicated_sharding(mesh)


def place_data(program: GridProgram, tree):
    """Data (or any pytree) as the program wants it: replicated over the mesh
    (:func:`~functional_nn.train.parallel.place_replicated`), or on the default device."""
    if program.mesh is None:
        return jax.device_put(tree)
    return place_replicated(tree, program.mesh)


def place_split(program: GridProgram, tree):
    """Grid-axis-first arrays split over the mesh's devices (on the default device without a mesh)."""
    if program.mesh is None:
        return jax.device_put(tree)
    return jax.device_put(tree, grid_shardings(program.mesh)[0])


def place_carry(program: GridProgram, carry: GridCarry) -> GridCarry:
    """The carry split over the mesh along the grid axis, its shared key replicated
    (split too when there is one key per column)."""
    if program.mesh is None:
        return jax.device_put(carry)
    split, whole = grid_shardings(program.mesh)
    return jax.device_put(carry, carry_prefix(split, split if has_seed_axis(carry.train_state.key) else whole))


# --------------------------------------------------------------------------
# the driver


def _stack_history(records: list, size: int) -> dict:
    names = records[0].keys() if records else ()
    return {name: np.stack([np.asarray(r[name])[:size] for r in records]) for name in names}


def _summarize_run(carry, records: list, size: int, epochs: int, monitor: str, mode: str, num_seeds: int = 1) -> GridRun:
    history = _stack_history(records, size)
    active = history.pop("active").astype(bool)
    improved = history.pop("improved").astype(bool)
    history.pop("diverged")
    best_value, best_epoch, diverged = jax.device_get((carry.stopping.best_value, carry.stopping.best_epoch, carry.stopping.diverged))
    epochs_run = active.sum(axis=0).astype(np.int32)
    diverged = np.asarray(diverged)[:size]
    return GridRun(
        carry=carry,
        size=size,
        history=history,
        active=active,
        improved=improved,
        best_value=np.asarray(best_value)[:size],
        best_epoch=np.asarray(best_epoch)[:size],
        epochs_run=epochs_run,
        diverged=diverged,
        stopped_early=(epochs_run < epochs) & ~diverged,
        monitor=monitor,
        mode=mode,
        num_seeds=num_seeds,
    )


def run_grid(
    build: Build,
    hparams: dict,
    train,
    val,
    *,
    batch_size: int,
    epochs: int,
    key: jax.Array,
    early_stopping: EarlyStopping | None = None,
    augment=None,
    devices=None,
    eval_chunk_size: int = 1024,
    unroll: int = 1,
    progress: bool | None = None,
) -> GridRun:
    """Train every setting of the grid at once, with per-setting early stopping.

    ``build(h) -> (model, loss, optimizer)`` makes one setting's network,
    divergence and optimizer from ``h``, a dict of scalars (traced inside the
    program); ``hparams`` maps the same names to 1-D vectors, one entry per
    setting. ``train`` / ``val`` are ``Split(x, y)``; every setting starts from
    the weights ``init_train_state`` makes from ``key``; with N keys
    (``key=seed_keys([...])``) every setting is trained once per key, all in
    the same program (S·N columns, see :class:`GridRun` and :func:`seed_run`). ``early_stopping``
    (``patience``, ``min_delta``, ``monitor``, ``mode``) is applied to each
    setting separately; ``monitor`` must be a ``val_*`` or ``train_*`` metric.
    ``devices`` (``"all"``, an int, a list or a ``Mesh``) shards the grid axis
    (over at most as many devices as the grid has columns).
    The Python loop stops as soon as every setting has stopped.
    """
    rule = validate_early_stopping(early_stopping or EarlyStopping(patience=None))
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an integer >= 1")
    settings = check_hparams(hparams)
    keyed = has_seed_axis(key)
    num_seeds = len(key) if keyed else 1
    size = settings * num_seeds
    chosen = at_most(grid_devices(devices), size)
    hparams = column_hparams(hparams, num_seeds, padded_size(size, chosen))
    x, targets = np.asarray(train.x), np.asarray(train.y)
    input_shape = (batch_size,) + x.shape[1:]
    program = compile_grid_program(build, batch_size, rule, augment=augment, unroll=unroll, devices=chosen, keyed=keyed)
    carry = place_carry(program, init_grid_carry(build, hparams, key, input_shape))
    hparams = place_split(program, hparams)
    x, targets, chunks = place_data(program, (x, targets, validation_chunks(val.x, val.y, eval_chunk_size)))
    return _train_epochs(program, hparams, carry, x, targets, chunks, epochs, rule, size, progress, num_seeds)


def _train_epochs(program, hparams, carry, x, targets, chunks, epochs, rule, size, progress, num_seeds=1) -> GridRun:
    records = []
    with EpochProgress(progress, epochs, desc="grid epochs") as bar:
        for epoch in range(1, epochs + 1):
            carry, metrics = program.epoch(hparams, carry, np.int32(epoch), x, targets, chunks)
            # one transfer per epoch
            metrics, stopped, best = jax.device_get((metrics, carry.stopping.stopped, carry.stopping.best_value))
            records.append(metrics)
            bar.epoch_done(_grid_progress(metrics, best, size, rule.monitor, resolved_mode(rule)))
            if np.all(np.asarray(stopped)[:size]):
                break
    return _summarize_run(carry, records, size, epochs, rule.monitor, resolved_mode(rule), num_seeds)


def _grid_progress(metrics: dict, best_values, size: int, monitor: str, mode: str) -> dict:
    """What progress shows after a grid epoch: how many settings trained in it,
    and the best ``monitor`` value so far over the settings (``best_values``, one
    per setting, NaN before a first finite value; ``mode`` min/max)."""
    best = np.asarray(best_values)[:size]
    finite = best[np.isfinite(best)]
    shown = {"settings_training": f"{int(np.sum(np.asarray(metrics['active'])[:size]))}/{size}"}
    if finite.size:
        shown[f"best_{monitor}"] = float(finite.min() if mode == "min" else finite.max())
    return shown


def setting_tree(tree, index: int):
    """Setting ``index``'s slice of a grid-axis-first pytree (e.g. its best params)."""
    return jax.tree.map(lambda a: a[index], tree)


def kept_train_state(carry: GridCarry, index: int) -> TrainState:
    """Setting ``index``'s train state: the kept weights and model state (best
    epoch's with ``restore_best``, else its last epoch's), its step count and the
    shared key. The optimizer state is the one at the end of the grid run (a
    stopped setting's optimizer kept stepping), so continue training from the
    weights, not from this optimizer state."""
    key = carry.train_state.key
    state = setting_tree(carry.train_state._replace(key=None), index)
    stopping = setting_tree(carry.stopping, index)
    key = key[index] if has_seed_axis(key) else key
    return state._replace(params=stopping.kept_params, model_state=stopping.kept_model_state, key=key)


def make_evaluate_grid(build: Build, *, chunk_size: int = 1024) -> Callable:
    """``evaluate(hparams, run, x, d) -> metrics``: eval-mode metrics of every column's kept weights on (x, d).

    Column c gets what ``make_evaluate(model, loss)(kept_train_state(run.carry, c), x, d)``
    gives (its model built from its own hyperparameters, e.g. a traced dropout
    rate that scales at test time): the loss Σ_t Div(Y_t, d_t) / n and, for class
    labels, the accuracy. All columns run together in one compiled function,
    ``jax.vmap``-ed (and sharded as the run's carry is), called once per chunk of
    exactly ``chunk_size`` examples (the last one padded and masked) with the
    sums added on the host: as with ``make_evaluate``, one compilation serves
    data sets of every size.

    Arguments:
      build: what :func:`run_grid` was given.
      chunk_size: examples per chunk (the memory of one call grows with columns × chunk_size).

    Returns:
      ``evaluate(hparams, run, x, d)``, taking the ``hparams`` given to
      :func:`run_grid` (one entry per setting) and its :class:`GridRun`, and
      returning ``{"loss": (size,), "accuracy": (size,)}`` NumPy arrays over the
      run's columns (column s·N + k: setting s, seed k; no accuracy for
      regression targets).

    Raises:
      ValueError: ``chunk_size`` < 1; (from ``evaluate``) the data set is empty,
        or ``hparams`` does not have the run's number of settings.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    sums_of_columns = _column_sums(build)

    def evaluate(hparams: dict, run: GridRun, x, targets) -> dict:
        if len(x) == 0:
            raise ValueError("cannot evaluate on an empty data set")
        if check_hparams(hparams) * run.num_seeds != run.size:
            raise ValueError(f"hparams has {check_hparams(hparams)} settings; the run trained {run.size // run.num_seeds}")
        stopping = run.carry.stopping
        hparams = column_hparams(hparams, run.num_seeds, len(stopping.best_value))
        totals = None
        for chunk in zip(*chunk_rows(x, targets, chunk_size)):
            sums = jax.device_get(sums_of_columns(hparams, stopping.kept_params, stopping.kept_model_state, *chunk))
            totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
        return {name: np.asarray(values)[: run.size] for name, values in mean_metrics(totals).items()}

    return evaluate


def _column_sums(build: Build) -> Callable:
    """``sums(hparams, params, model states, x, d, mask)``: every column's eval sums on one chunk, vmapped and compiled."""

    def column_sums(h, params, model_state, x, targets, mask):
        model, loss, _ = build(h)
        return make_eval_sums(model, loss)(params, model_state, x, targets, mask)

    return jax.jit(jax.vmap(column_sums, in_axes=(0, 0, 0, None, None, None)))


def seed_run(run: GridRun, seed: int) -> GridRun:
    """The S columns of seed index ``seed`` (0 <= seed < N) of a run with N seeds,
    as a single-seed :class:`GridRun`: column s is setting s with that seed."""
    if not 0 <= seed < run.num_seeds:
        raise ValueError(f"seed={seed!r}: must be a seed index in [0, {run.num_seeds})")
    if run.num_seeds == 1:
        return run
    columns = np.arange(seed, run.size, run.num_seeds)
    by_column = lambda a: a[:, columns] if a.ndim == 2 else a[columns]  # noqa: E731
    per_column = ("active", "improved", "best_value", "best_epoch", "epochs_run", "diverged", "stopped_early")
    return run._replace(
        carry=jax.tree.map(lambda a: a[columns], run.carry),
        size=len(columns),
        history={name: values[:, columns] for name, values in run.history.items()},
        num_seeds=1,
        **{name: by_column(getattr(run, name)) for name in per_column},
    )

