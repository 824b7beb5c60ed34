"""``python -m functional_nn search CONFIG``: the config's grid search, its result files."""

from __future__ import annotations

import json
import os
import sys
import time

from functional_nn.experiment import run_dir
from functional_nn.experiment.run_dir import BEST_DIR
from functional_nn.experiment.schema import Config
from functional_nn.experiment.search import grid_search, NoFiniteSettingError, SearchResult
from functional_nn.experiment.search_outputs import summary, write_failed_outputs, write_outputs


def run_search(config: Config, out_dir: str, *, devices=None, progress: bool | None = None) -> SearchResult:
    """The CLI's ``search``: :func:`grid_search` on ``config.search``, outputs in ``out_dir``."""
    started = time.perf_counter()
    result = grid_search(config, devices=devices, progress=progress)
    seconds = time.perf_counter() - started
    write_outputs(result, config, out_dir, seconds)
    shown = summary(result, config, seconds)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in shown.items()}))
    return result


def recover_search_directory(directory: str) -> list:
    """:func:`~functional_nn.experiment.run_dir.recover` (stale temporary files
    of a killed search) for the search directory and its chosen run ``best/``;
    returns the notes."""
    best = os.path.join(directory, BEST_DIR)
    notes = run_dir.recover(directory)
    if os.path.isdir(best) and not os.path.islink(best):
        notes += run_dir.recover(best)
    return notes


def search_command(config, directory: str) -> int:
    """Run the search; 1 (after writing the result files) when every setting diverged."""
    started = time.perf_counter()
    for note in recover_search_directory(directory):
        print(f"note: {note}", file=sys.stderr)
    try:
        run_search(config, directory)
    except NoFiniteSettingError as e:
        write_failed_outputs(e, config, directory, time.perf_counter() - started)
        print(f"error: {e} (results in {directory})", file=sys.stderr)
        return 1
    return 0
