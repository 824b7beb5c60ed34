"""Sharded grid search (issue 6): the grid axis split over 4 forced CPU devices
gives the same results as one device, and the arrays really are split; so
does a grid with 2 training seeds per setting (``search.seeds``), and
``make_evaluate_grid`` over the sharded, padded columns gives each column's
``make_evaluate``; a grid with fewer columns than devices uses one device per column.

Runs ``tests/device_programs/grid_sharded_report.py`` with 4 forced host
devices through ``conftest.run_with_devices`` (the device count is fixed when
JAX starts, and tests share worker processes)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_with_devices

pytestmark = pytest.mark.slow


def test_sharded_grid_search_equals_unsharded_and_splits_the_grid_over_4_devices():
    report = run_with_devices("grid_sharded_report", 4)
    assert report["device_count"] == 4
    assert report["grid_size"] == 6
    # every train-state and best-params leaf is split along the grid axis: 8 rows (6 + 2 padding), 2 per device
    assert report["specs"] == [str(("grid",))]
    assert report["leading"] == [8] and report["shard_rows"] == [[2]] and report["shard_devices"] == [4]
    one, four = report["one"], report["four"]
    assert one["best"] == four["best"]
    for a, b in zip(one["rows"], four["rows"]):
        assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"] and a["status"] == b["status"]
        for key in ("best_val_loss", "train_loss", "train_accuracy", "val_accuracy"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for key in one["test"]:
        np.testing.assert_allclose(four["test"][key], one["test"][key], rtol=1e-5, atol=1e-6)
    # with 2 training seeds per setting (a per-column key, split over the devices too): the same per-seed rows
    seeded_one, seeded_four = report["seeded_one"], report["seeded_four"]
    assert seeded_one["best"] == seeded_four["best"] and len(seeded_four["rows"]) == 6
    for a, b in zip(seeded_one["rows"], seeded_four["rows"]):
        assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"]
        np.testing.assert_allclose(b["best_val_loss"], a["best_val_loss"], rtol=1e-5, atol=1e-6)
    # make_evaluate_grid over the sharded, padded carry: each column's make_evaluate, padding dropped
    evaluated = report["evaluate_grid"]
    assert len(evaluated["grid"]) == 6
    np.testing.assert_allclose(evaluated["grid"], evaluated["columns"], rtol=1e-5)
    assert report["small"] == {"leading": 3, "devices": 3}  # 3 columns on 4 devices: 3 used, no padding
