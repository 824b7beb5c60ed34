"""Grid search for hyperparameters on held-out data (the notes: "perform a grid
search for hyper parameters (learning rate, regularization parameter, …) on
held-out data"; "evaluate periodically on validation data, for early stopping").

A config's ``search:`` section maps ``section.key`` paths to lists of values;
the grid is their Cartesian product, in the order the keys are written::

    search:
      optimizer.learning_rate: [1.0e-3, 3.0e-3, 1.0e-2]
      optimizer.l2: [0.0, 1.0e-4]

Keys are of two kinds:

- *traced* numeric hyperparameters: ``optimizer.learning_rate``, ``l2``,
  ``clip``, ``clip_by_norm``, ``clip_by_global_norm`` and the optimizer's own
  numbers (``b1``, ``b2``, ``eps``, ``decay``, ``momentum``, ``weight_decay``,
  ``rho``, ...), and every float argument of a registered layer,
  ``model.layers.<i>.<arg>`` or ``model.<layer name>.<arg>`` (dropout's ``rate``, batch norm's ``ema_decay``
  and ``eps``, ...). All settings that differ only in these are trained
  at once by one compiled program, ``jax.vmap`` over the traced values
  (:func:`functional_nn.train.run_grid`).
- *structural* choices (layer sizes, optimizer name, batch size, loss, data,
  ...): each combination is a separate group with its own program.

Every setting uses the validation split for early stopping and the selection
metric (``training.early_stopping.monitor``, ``val_loss`` by default); the
setting with the best validation value is chosen, and only that one is then
evaluated, once, on the test split.

``seeds: N`` in the section (default 1) trains every setting with the N
training seeds ``training.seed``, ``training.seed + 1``, ..., in the same
compiled program (one more vmapped axis, :func:`functional_nn.train.seed_keys`):
each setting's row reports the mean over seeds of its metrics and the sample
standard deviation of the monitored value, and selection uses the mean, so a
setting that was lucky with one seed does not win on noise. The chosen
setting's weights are those of seed ``training.seed`` (its config is then
exactly the chosen run's).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, NamedTuple

import jax
import numpy as np

from functional_nn.experiment import builders
from functional_nn.experiment.loading import check_experiment, check_search_seeds, config_to_dict, parse_config
from functional_nn.experiment.schema import Config, ConfigError, ModelConfig
from functional_nn.experiment.sections import (
    alias_hyperparameters,
    argument_type,
    layer_argument_path,
    layer_arguments,
    layer_paths,
)
from functional_nn.train.search_engine import GridRun, kept_train_state, run_grid, seed_keys, seed_run
from functional_nn.train.state import TrainState
from functional_nn.train.step import make_evaluate

OPTIMIZER_NUMBERS = ("learning_rate", "l2", "clip", "clip_by_norm", "clip_by_global_norm")
SEARCH_OPTIONS = ("seeds",)  # keys of the search section that are options, not grid keys



class Group(NamedTuple):
    """Settings that share every structural value: ``structural`` (key -> value)
    and the indices of its settings in the whole grid."""

    structural: dict
    indices: list


class SearchResult(NamedTuple):
    """Everything a grid search found.

    ``settings[i]`` is setting i's grid values, ``rows[i]`` its table row,
    ``histories[i]`` its per-epoch metrics (like ``fit``'s history);
    ``best_index`` the setting chosen on validation data, ``test_metrics``
    that setting's metrics on the test split (the only test evaluation),
    ``best_train_state`` its train state (best epoch's weights when
    ``restore_best``) and ``best_config`` its full config; ``groups[g]`` was
    trained by the compiled run ``runs[g]`` (a :class:`GridRun`; with several
    seeds, its first seed's columns, :func:`~functional_nn.train.seed_run`).

    With ``seeds`` N > 1, ``rows[i]`` holds means over the seeds (and the
    monitored value's standard deviation), ``seed_rows[i][k]`` setting i's row
    with seed k, ``histories[i]`` its first seed's history and
    ``seed_test_metrics`` the chosen setting's test metrics with each seed.
    ``best_data`` is the data splits the chosen setting was trained on.
    """

    keys: list
    settings: list
    rows: list
    histories: list
    best_index: int
    monitor: str
    mode: str
    test_metrics: dict
    best_train_state: Any
    best_config: Config
    groups: list
    runs: list
    seeds: int = 1
    seed_rows: list | None = None
    seed_test_metrics: list | None = None
    best_data: Any = None


# --------------------------------------------------------------------------
# the grid


def expand_grid(grid: dict) -> list:
    """The Cartesian product of the grid's lists, one dict per setting, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def traced_target(key: str, values: list, model: ModelConfig) -> tuple | None:
    """(``"optimizer"``, name) or (``"model"``, ``"layers.<i>.<arg>"``) when every
    value of ``key`` is a number and ``key`` is a numeric hyperparameter that
    can be traced: an optimizer number, or a layer argument whose type (from
    its registered constructor, :func:`~functional_nn.experiment.sections.argument_type`)
    is ``float``; ``None`` for a structural key."""
    if not values or not all(_is_number(v) for v in values):
        return None
    section, _, rest = key.partition(".")
    if section == "optimizer" and "." not in rest and rest not in ("name", "decay_mask", "schedule"):
        return ("optimizer", rest)
    found = layer_argument_path(model, rest) if section == "model" else None
    if found is not None:
        layer_path, arg = found
        if argument_type(layer_arguments(layer_paths(model.layers)[layer_path].type)[arg]) is float:
            return ("model", f"{layer_path}.{arg}")
    return None


def _check_traceable_for(config: Config, key: str, target: tuple) -> None:
    """A traced optimizer key must be a number the group's optimizer takes."""
    section, name = target
    if section != "optimizer" or name in OPTIMIZER_NUMBERS:
        return
    defaults = alias_hyperparameters(config.optimizer.name)
    if name not in defaults:
        raise ConfigError(f"search.{key}: optimizer {config.optimizer.name!r} has no hyperparameter {name!r} (it takes {', '.join(defaults) or 'none'})")
    if not (_is_number(defaults[name]) or name == "momentum"):
        raise ConfigError(f"search.{key}: {name!r} is not a numeric hyperparameter of {config.optimizer.name!r}")


def validate_grid(config: Config, grid: dict | None = None) -> dict:
    """The grid (``config.search`` by default) checked like a config's ``search``
    section: a clear :class:`ConfigError` naming the key for an empty grid, a key
    that is not a config path, an empty list or an invalid value."""
    grid = config.search if grid is None else grid
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(
            "search: the grid is empty; list values for at least one key, e.g. "
            "search: {optimizer.learning_rate: [0.001, 0.01]}"
        )
    raw = config_to_dict(config)
    raw["search"] = copy.deepcopy(grid)
    grid = {k: v for k, v in parse_config(raw).search.items() if k not in SEARCH_OPTIONS}
    if not grid:
        raise ConfigError("search: the grid is empty; list values for at least one 'section.key' besides seeds")
    return grid


def search_seeds(config: Config, grid: dict | None = None) -> int:
    """The number of training seeds per setting: ``seeds`` of the search section (default 1)."""
    return int((config.search if grid is None else grid).get("seeds", 1))


def split_keys(grid: dict, model: ModelConfig) -> tuple:
    """(traced keys -> target, structural keys) of a grid over a config with layers ``model``."""
    traced, structural = {}, []
    for key, values in grid.items():
        target = traced_target(key, values, model)
        if target is None:
            structural.append(key)
        else:
            traced[key] = target
    return traced, structural


def group_settings(settings: list, structural: list) -> list:
    """Settings grouped by their structural values, groups in order of first appearance."""
    groups = {}
    for index, setting in enumerate(settings):
        values = tuple(repr(setting[k]) for k in structural)
        if values not in groups:
            groups[values] = Group({k: setting[k] for k in structural}, [])
        groups[values].indices.append(index)
    return list(groups.values())


def group_config(config: Config, structural: dict) -> Config:
    """The config with a group's structural values set (and validated)."""
    if not structural:
        return config
    raw = config_to_dict(config)
    raw.pop("search", None)
    try:
        return parse_config(raw, overrides=list(structural.items()))
    except ConfigError as e:
        raise ConfigError(f"search: the setting {structural} is invalid: {e}") from None


def split_hparams(traced: dict, settings: list) -> tuple:
    """(optimizer hparams, model hparams): name -> vector over ``settings``."""
    optimizer, model = {}, {}
    for key, (section, name) in traced.items():
        vector = np.array([float(s[key]) for s in settings], np.float32)
        (optimizer if section == "optimizer" else model)[name] = vector
    return optimizer, model


def make_build(config: Config, optimizer_names, model_names):
    """``build(h) -> (model, loss, optimizer)`` for one setting from scalars ``h``."""
    loss = builders.build_loss(config.loss)

    def build(hparams):
        model = builders.build_model(config.model, {n: hparams[f"model:{n}"] for n in model_names})
        optimizer = builders.build_optimizer(config.optimizer, {n: hparams[f"optimizer:{n}"] for n in optimizer_names})
        return model, loss, optimizer

    return build


# --------------------------------------------------------------------------
# running the grid


def selection_rule(config: Config):
    """Early-stopping settings; the monitored metric must be a validation metric."""
    rule = builders.build_early_stopping(config.training)
    if not rule.monitor.startswith("val_"):
        raise ConfigError(
            f"training.early_stopping.monitor={rule.monitor!r}: grid search selects on held-out data; "
            "use val_loss or val_accuracy"
        )
    return rule


def training_keys(seed: int, seeds: int):
    """The key of ``training.seed`` (one seed), or the keys of seeds ``seed .. seed + seeds - 1``."""
    return jax.random.key(seed) if seeds == 1 else seed_keys(range(seed, seed + seeds))


def group_build(config: Config, traced: dict, settings: list) -> tuple:
    """What :func:`~functional_nn.train.run_grid` trains one group with.

    Arguments:
      config: the group's config (its structural values filled in).
      traced: the traced grid keys (``split_keys``), key -> (section, name).
      settings: the group's settings (grid key -> value).

    Returns:
      (build, hparams): ``build(h) -> (model, loss, optimizer)`` and the traced
      values, one vector entry per setting (``optimizer:NAME`` / ``model:NAME``;
      ``_unused`` for a group with nothing traced).

    Raises:
      ConfigError: a traced optimizer key that the group's optimizer does not take as a number.
    """
    optimizer_hparams, model_hparams = split_hparams(traced, settings)
    for key, target in traced.items():
        _check_traceable_for(config, key, target)
    hparams = {f"optimizer:{n}": v for n, v in optimizer_hparams.items()}
    hparams.update({f"model:{n}": v for n, v in model_hparams.items()})
    if not hparams:  # a purely structural group: one setting, nothing traced
        hparams = {"_unused": np.zeros(len(settings), np.float32)}
    return make_build(config, optimizer_hparams, model_hparams), hparams


def run_group(config: Config, traced: dict, settings: list, data, *, devices=None, progress=None, seeds: int = 1) -> GridRun:
    """Train one group's settings at once (they differ only in traced values),
    each with ``seeds`` training seeds."""
    build, hparams = group_build(config, traced, settings)
    training = config.training
    try:
        return run_grid(
            build,
            hparams,
            data.train,
            data.val,
            batch_size=training.batch_size,
            epochs=training.epochs,
            key=training_keys(training.seed, seeds),
            early_stopping=selection_rule(config),
            augment=builders.build_augment(training, data.image_shape),
            devices=config.training.devices if devices is None else devices,
            eval_chunk_size=training.eval_chunk_size,
            unroll=training.unroll,
            progress=progress if progress is not None else training.progress,
        )
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"search: {e}") from None


def setting_history(run: GridRun, column: int) -> list:
    """One setting's per-epoch records (only the epochs it trained), like ``fit``'s history."""
    records = []
    for epoch_index in np.flatnonzero(run.active[:, column]):
        record = {"epoch": int(epoch_index) + 1}
        record.update({name: float(values[epoch_index, column]) for name, values in run.history.items()})
        record["is_best"] = bool(run.improved[epoch_index, column])
        records.append(record)
    return records


def _status(run: GridRun, column: int) -> str:
    if run.diverged[column]:
        return "diverged"
    return "stopped early" if run.stopped_early[column] else "ok"


def setting_row(index: int, setting: dict, run: GridRun, column: int, history: list) -> dict:
    """The table row: the setting's values, its best validation value and epoch, and how it ended."""
    best_epoch = int(run.best_epoch[column])
    at_best = next((r for r in history if r["epoch"] == best_epoch), {})
    row = {"setting": index, **setting, f"best_{run.monitor}": float(run.best_value[column]), "best_epoch": best_epoch}
    row.update({name: at_best.get(name, float("nan")) for name in sorted(run.history) if name != run.monitor})
    row.update(epochs_run=int(run.epochs_run[column]), status=_status(run, column))
    return row


class NoFiniteSettingError(RuntimeError):
    """No setting of the grid produced a finite validation value (all
    diverged): nothing can be selected. ``rows`` and ``histories`` hold what
    every setting did, for the result files."""

    def __init__(self, message: str, rows: list | None = None, histories: list | None = None):
        super().__init__(message)
        self.rows, self.histories = rows, histories


def seeds_row(index: int, setting: dict, rows: list, monitor: str) -> dict:
    """Setting ``index``'s row over its seeds' ``rows``: each metric's mean, the
    monitored value's sample standard deviation (``best_<monitor>_std``), the
    best epoch of seed ``training.seed`` (an int, as ``best/``'s) and of every
    seed (``best_epochs``, a list), and the epochs run and status of each seed
    (``12/15/11``). A seed that never had a finite value makes the mean NaN
    (the setting cannot win)."""
    best = f"best_{monitor}"
    values = np.array([r[best] for r in rows], np.float64)
    row = {"setting": index, **setting, best: float(values.mean())}
    row[f"{best}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    row["best_epoch"] = rows[0]["best_epoch"]  # seed training.seed's, the chosen run's (best/)
    row["best_epochs"] = [r["best_epoch"] for r in rows]
    per_seed = {"setting", best, "best_epoch", "epochs_run", "status", *setting}
    row.update({k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in per_seed})
    row["epochs_run"] = "/".join(str(r["epochs_run"]) for r in rows)
    statuses = [r["status"] for r in rows]
    row["status"] = statuses[0] if len(set(statuses)) == 1 else "/".join(statuses)
    return row


def select_best(rows: list, monitor: str, mode: str) -> int:
    """Index of the row with the best validation value (first of ties; NaN never wins).

    Raises:
      NoFiniteSettingError: no row has a finite value.
    """
    worst = float("inf") if mode == "min" else float("-inf")
    values = [r[f"best_{monitor}"] if np.isfinite(r[f"best_{monitor}"]) else worst for r in rows]
    if all(v == worst for v in values):
        statuses = ", ".join(sorted({r["status"] for r in rows}))
        raise NoFiniteSettingError(
            f"grid search: none of the {len(rows)} settings produced a finite {monitor} (status: {statuses}); "
            "nothing to select — lower optimizer.learning_rate or add clipping (e.g. optimizer.clip_by_global_norm)",
            rows,
        )
    return int(np.argmin(values) if mode == "min" else np.argmax(values))


def setting_train_state(result: "SearchResult", index: int) -> TrainState:
    """Setting ``index``'s train state as ``fit`` would return it (best epoch's
    weights with ``restore_best``, else its last trained epoch's)."""
    for group, run in zip(result.groups, result.runs):
        if index in group.indices:
            return kept_train_state(run.carry, group.indices.index(index))
    raise IndexError(f"setting {index} is not in the grid of {len(result.settings)} settings")


def evaluate_setting(result: "SearchResult", config: Config, index: int, split, *, cache: dict | None = None) -> dict:
    """Metrics of setting ``index`` on ``split`` (a ``Split``), in eval mode. For
    reports only: selection has already been made on validation data. ``cache``
    (a dict the caller keeps) reuses one compiled evaluation per distinct model."""
    setting_config = concrete_config(config, result.settings[index])
    key = repr((setting_config.model, setting_config.loss, setting_config.training.eval_chunk_size))
    cache = {} if cache is None else cache
    if key not in cache:
        model, loss = builders.build_model(setting_config.model), builders.build_loss(setting_config.loss)
        cache[key] = make_evaluate(model, loss, chunk_size=setting_config.training.eval_chunk_size)
    return cache[key](setting_train_state(result, index), split.x, split.y)


def concrete_config(config: Config, setting: dict) -> Config:
    """The full config of one setting (every grid value set)."""
    raw = config_to_dict(config)
    raw.pop("search", None)
    return parse_config(raw, overrides=list(setting.items()))


def evaluate_on_test(config: Config, train_states: list, test) -> list:
    """The chosen setting's test metrics (``test_loss``, ``test_accuracy``) for
    each of ``train_states`` (its seeds), with one compiled evaluation."""
    if len(test.x) == 0:
        return [{} for _ in train_states]
    evaluate = make_evaluate(builders.build_model(config.model), builders.build_loss(config.loss), chunk_size=config.training.eval_chunk_size)
    return [{f"test_{k}": v for k, v in evaluate(state, test.x, test.y).items()} for state in train_states]


def grid_search(
    config: Config, grid: dict | None = None, *, devices=None, data=None, progress: bool | None = None, seeds: int | None = None
) -> SearchResult:
    """Train every setting of ``grid`` (``config.search`` by default), select on
    validation data, evaluate the selected setting once on test data.

    ``seeds`` (default: the section's ``seeds``, else 1) trains every setting
    with that many training seeds and selects on the mean (module docstring).

    ``devices`` (``"all"``, an int, a list of devices or a ``Mesh``; default
    ``config.training.devices``) shards each group's grid axis over devices.
    ``data`` (a ``DataSplits``) replaces ``builders.build_data(config.data)``.
    """
    seeds = search_seeds(config, grid) if seeds is None else seeds
    grid = validate_grid(config, grid)
    check_search_seeds(seeds, config.training.seed)
    settings = expand_grid(grid)
    traced, structural = split_keys(grid, config.model)
    rows, histories, runs = [None] * len(settings), [None] * len(settings), {}
    seed_rows = [[] for _ in settings]
    groups, group_runs = group_settings(settings, structural), []
    data_cache = {}
    for group in groups:
        group_cfg = group_config(config, group.structural)
        splits = data if data is not None else _cached_data(data_cache, group_cfg)
        run = run_group(group_cfg, traced, [settings[i] for i in group.indices], splits, devices=devices, progress=progress, seeds=seeds)
        seed_runs = [seed_run(run, k) for k in range(seeds)]
        group_runs.append(seed_runs[0])
        for column, index in enumerate(group.indices):
            for k, one_seed in enumerate(seed_runs):
                history = setting_history(one_seed, column)
                histories[index] = history if k == 0 else histories[index]
                seed_rows[index].append(setting_row(index, settings[index], one_seed, column, history))
            rows[index] = seed_rows[index][0] if seeds == 1 else seeds_row(index, settings[index], seed_rows[index], run.monitor)
            runs[index] = (seed_runs, column, splits)
    rule = selection_rule(config)
    monitor, mode = rule.monitor, group_runs[0].mode
    try:
        best = select_best(rows, monitor, mode)
    except NoFiniteSettingError as e:
        raise NoFiniteSettingError(str(e), rows, histories) from None
    seed_runs, column, splits = runs[best]
    best_config = concrete_config(config, settings[best])
    seed_states = [kept_train_state(one_seed.carry, column) for one_seed in seed_runs]
    seed_tests = evaluate_on_test(best_config, seed_states, splits.test)
    test_metrics, seed_tests = seed_tests[0], (seed_tests if seeds > 1 else None)
    return SearchResult(
        list(grid), settings, rows, histories, best, monitor, mode, test_metrics, seed_states[0], best_config, groups,
        group_runs, seeds, seed_rows, seed_tests, splits,
    )


def _cached_data(cache: dict, config: Config):
    """The group's data splits (built once per data section), checked against its batch size;
    a data or batch-size problem is a :class:`ConfigError` naming the key."""
    key = repr(config.data)
    if key not in cache:
        try:
            cache[key] = builders.build_data(config.data)
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"data: {e}") from None
    check_experiment(config, cache[key], builders.build_model(config.model))  # batch size, labels vs loss and model
    return cache[key]
