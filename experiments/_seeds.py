"""Training seeds as one more vmapped axis: every setting × seed of a grid in one compiled program.

The seeds axis is the library's: each group of the grid runs through
:func:`functional_nn.experiment.search.run_group` (the config-driven search's
own), whose :func:`functional_nn.train.run_grid` with ``key=seed_keys(seeds)``
trains each of the S settings once per seed in one program (S·N columns, setting-major: column s·N + n is setting s trained with
seed n, which starts from ``jax.random.key(seeds[n])``'s weights and sees that
seed's shuffles and dropout masks, as a separate single-seed run would;
``tests/test_grid_seeds.py`` checks this).

:func:`seeded_search` is the config-level driver (the grid of a config's
``search`` section, structural keys in separate programs as in
:func:`functional_nn.experiment.search.grid_search`), and the accessors below
give the tables and plots what they read: (settings, seeds[, epochs]) arrays
(:func:`final`, :func:`curves`, :func:`epochs_to_reach`, :func:`evaluate_all`'s
metrics) and one column's kept train state (:func:`train_state`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import numpy as np

from functional_nn.experiment.search import expand_grid, group_build, group_config, group_settings, run_group, split_keys, validate_grid
from functional_nn.train import TrainState, make_evaluate_grid
from functional_nn.train.search_engine import GridRun, setting_tree


# --------------------------------------------------------------------------
# config level


class SeededSearch(NamedTuple):
    """Every setting of a config's grid trained with every seed.

    ``settings[i]`` is setting i's grid values; ``seeds[n]`` seed n; group g
    (``groups[g]``, a search ``Group`` of settings sharing structural values)
    was trained by ``runs[g]``, ``evaluators[g](x, d)`` gives the eval-mode
    metrics of all its columns (``train.make_evaluate_grid``), and ``kept[g]`` holds that run's kept
    weights, model states and step counts on the host (one transfer per run, so reading one
    column is a NumPy slice); ``config`` is the config the grid was over.
    """

    config: Any
    settings: list
    seeds: list
    groups: list
    runs: list
    evaluators: list
    kept: list


class KeptOnHost(NamedTuple):
    """A run's kept weights, model states and step counts on the host, grid axis first."""

    params: Any
    model_state: Any
    step: np.ndarray


def seeded_search(config, seeds, grid: dict | None = None, *, data) -> SeededSearch:
    """Train every setting of ``grid`` (default ``config.search``) with every seed in ``seeds``.

    Traced keys train together and structural keys split the grid into
    programs, as in ``grid_search``; nothing is selected here (the experiments
    select on the seed means of validation values).
    """
    grid = validate_grid(config, grid)
    settings = expand_grid(grid)
    traced, structural = split_keys(grid, config.model)
    groups, runs, evaluators = group_settings(settings, structural), [], []
    for group in groups:
        group_cfg, members = group_config(config, group.structural), [settings[i] for i in group.indices]
        runs.append(_run_group(group_cfg, traced, members, seeds, data))
        evaluators.append(_evaluator(group_cfg, traced, members, runs[-1]))
    return SeededSearch(config, settings, [int(s) for s in seeds], groups, runs, evaluators, [kept_on_host(run) for run in runs])


def _evaluator(config, traced: dict, settings: list, run: GridRun):
    """``evaluate(x, d)``: eval-mode metrics of every column of ``run`` (one group), compiled once for every split."""
    build, hparams = group_build(config, traced, settings)
    evaluate = make_evaluate_grid(build, chunk_size=config.training.eval_chunk_size)
    return lambda x, targets: evaluate(hparams, run, x, targets)


def kept_on_host(run: GridRun) -> KeptOnHost:
    """What ``run`` kept of every column (:func:`functional_nn.train.kept_train_state`'s weights,
    model states and step counts) as NumPy arrays, in one transfer."""
    stopping = run.carry.stopping
    return KeptOnHost(*jax.device_get((stopping.kept_params, stopping.kept_model_state, run.carry.train_state.step)))


def _run_group(config, traced: dict, settings: list, seeds, data) -> GridRun:
    """One group's settings × ``seeds`` through the search's own :func:`run_group`
    (seeds ``seeds[0] .., consecutive``: its ``training.seed`` and ``search.seeds``),
    the settings × seeds axis sharded over every device (one device: no sharding)."""
    seeds = [int(seed) for seed in seeds]
    if not seeds or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"seeds={seeds!r}: must be consecutive integers (training.seed, training.seed + 1, ...)")
    seeded = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seeds[0]))
    return run_group(seeded, traced, settings, data, seeds=len(seeds), devices="all", progress=False)


def locate(result: SeededSearch, index: int, seed_index: int) -> tuple:
    """(run, column) of setting ``index`` trained with ``seeds[seed_index]``."""
    group = _group_of(result, index)
    return result.runs[group], result.groups[group].indices.index(index) * len(result.seeds) + seed_index


def _group_of(result: SeededSearch, index: int) -> int:
    for number, group in enumerate(result.groups):
        if index in group.indices:
            return number
    raise IndexError(f"setting {index} is not in the grid of {len(result.settings)} settings")


def final(result: SeededSearch, field: str) -> np.ndarray:
    """(S, N) array of a :class:`GridRun` per-column field (``best_value``, ``best_epoch``, ``epochs_run``, ``diverged``, ``stopped_early``)."""
    return np.array([[getattr(run, field)[column] for run, column in (locate(result, i, n) for n in range(len(result.seeds)))]
                     for i in range(len(result.settings))])


def curves(result: SeededSearch, metric: str) -> np.ndarray:
    """(S, N, E) learning curves of ``metric`` (``train_loss``, ``val_accuracy``, ...); NaN after a column stopped."""
    epochs = max(len(run.active) for run in result.runs)
    out = np.full((len(result.settings), len(result.seeds), epochs), np.nan)
    for i in range(len(result.settings)):
        for n in range(len(result.seeds)):
            run, column = locate(result, i, n)
            active = run.active[:, column]
            out[i, n, :len(active)][active] = run.history[metric][active, column]
    return out


def epochs_to_reach(result: SeededSearch, metric: str, target: float) -> np.ndarray:
    """(S, N) first epoch whose ``metric`` reaches ``target`` (≥), ``inf`` where never."""
    values = curves(result, metric)
    reached = values >= target
    first = np.argmax(reached, axis=-1) + 1.0
    return np.where(reached.any(axis=-1), first, math.inf)


def train_state(result: SeededSearch, index: int, seed_index: int) -> TrainState:
    """The train state column (setting ``index``, seed ``seed_index``) kept: best epoch's weights with ``restore_best``,
    else its last (as ``train.kept_train_state``, in NumPy arrays; no optimizer state or key)."""
    _, column = locate(result, index, seed_index)
    kept = result.kept[_group_of(result, index)]
    return TrainState(params=setting_tree(kept.params, column), model_state=setting_tree(kept.model_state, column),
                      opt_state=None, step=kept.step[column], key=None)


def evaluate_all(result: SeededSearch, split) -> dict:
    """Eval-mode ``loss`` and ``accuracy`` of every column's kept weights on ``split``: (S, N) arrays
    (all columns of a group at once, one compiled evaluation per group)."""
    per_group = [evaluate(split.x, split.y) for evaluate in result.evaluators]
    return {metric: np.array([[per_group[_group_of(result, i)][metric][locate(result, i, n)[1]] for n in range(len(result.seeds))]
                              for i in range(len(result.settings))])
            for metric in per_group[0]}
