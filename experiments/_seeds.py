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
return (settings, seeds[, epochs]) arrays for the tables and plots.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from functional_nn.experiment import builders
from functional_nn.experiment.search import concrete_config, expand_grid, group_config, group_settings, run_group, split_keys, validate_grid
from functional_nn.train import make_evaluate
from functional_nn.train.search_engine import GridRun, kept_train_state


# --------------------------------------------------------------------------
# config level


class SeededSearch(NamedTuple):
    """Every setting of a config's grid trained with every seed.

    ``settings[i]`` is setting i's grid values; ``seeds[n]`` seed n; group g
    (``groups[g]``, a search ``Group`` of settings sharing structural values)
    was trained by ``runs[g]``; ``config`` is the config the grid was over.
    """

    config: Any
    settings: list
    seeds: list
    groups: list
    runs: list


def seeded_search(config, seeds, grid: dict | None = None, *, data) -> SeededSearch:
    """Train every setting of ``grid`` (default ``config.search``) with every seed in ``seeds``.

    Traced keys train together and structural keys split the grid into
    programs, as in ``grid_search``; nothing is selected here (the experiments
    select on the seed means of validation values).
    """
    grid = validate_grid(config, grid)
    settings = expand_grid(grid)
    traced, structural = split_keys(grid, config.model)
    groups, runs = group_settings(settings, structural), []
    for group in groups:
        group_cfg = group_config(config, group.structural)
        runs.append(_run_group(group_cfg, traced, [settings[i] for i in group.indices], seeds, data))
    return SeededSearch(config, settings, [int(s) for s in seeds], groups, runs)


def _run_group(config, traced: dict, settings: list, seeds, data) -> GridRun:
    """One group's settings × ``seeds`` through the search's own :func:`run_group`
    (seeds ``seeds[0] .., consecutive``: its ``training.seed`` and ``search.seeds``)."""
    seeds = [int(seed) for seed in seeds]
    if not seeds or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"seeds={seeds!r}: must be consecutive integers (training.seed, training.seed + 1, ...)")
    seeded = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seeds[0]))
    return run_group(seeded, traced, settings, data, seeds=len(seeds), progress=False)


def locate(result: SeededSearch, index: int, seed_index: int) -> tuple:
    """(run, column) of setting ``index`` trained with ``seeds[seed_index]``."""
    for group, run in zip(result.groups, result.runs):
        if index in group.indices:
            return run, group.indices.index(index) * len(result.seeds) + seed_index
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


def train_state(result: SeededSearch, index: int, seed_index: int):
    """The train state column (setting ``index``, seed ``seed_index``) kept: best epoch's weights with ``restore_best``, else its last."""
    run, column = locate(result, index, seed_index)
    return kept_train_state(run.carry, column)


def evaluate(result: SeededSearch, index: int, seed_index: int, split, cache: dict) -> dict:
    """Eval-mode metrics (``loss``, ``accuracy``) of one column on ``split``; ``cache`` reuses compiled evaluations."""
    config = concrete_config(result.config, result.settings[index])
    key = repr((config.model, config.loss))
    if key not in cache:
        cache[key] = make_evaluate(builders.build_model(config.model), builders.build_loss(config.loss), chunk_size=config.training.eval_chunk_size)
    return cache[key](train_state(result, index, seed_index), split.x, split.y)


def evaluate_all(result: SeededSearch, split, cache: dict, metric: str) -> np.ndarray:
    """(S, N) eval-mode ``metric`` of every column on ``split``."""
    return np.array([[evaluate(result, i, n, split, cache)[metric] for n in range(len(result.seeds))] for i in range(len(result.settings))])

