"""Sharded grid search (issue 6): the grid axis split over 4 forced CPU devices
gives the same results as one device, and the arrays really are split.

Runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the device count is fixed when JAX starts, and tests share worker processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from functional_nn.experiment import parse_config
    from functional_nn.experiment.search import grid_search

    raw = {
        "data": {"name": "spirals", "n": 240, "num_classes": 3, "val_fraction": 0.25, "test_fraction": 0.2},
        "model": {"layers": [{"dense": 16}, "tanh", {"dropout": 0.0}, {"dense": 3}]},
        "optimizer": {"name": "adam"},
        "training": {"epochs": 4, "batch_size": 32, "early_stopping": {"patience": 1, "min_delta": 0.01}},
        # 3 x 2 = 6 settings on 4 devices: padded to 8, two per device
        "search": {"optimizer.learning_rate": [1e-3, 3e-3, 1e-2], "model.layers.2.rate": [0.0, 0.3]},
    }
    one = grid_search(parse_config(raw), devices=1)
    raw["training"]["devices"] = 4  # the config's switch
    four = grid_search(parse_config(raw))
    carry = four.runs[0].carry
    leaves = jax.tree.leaves(carry.train_state.params) + jax.tree.leaves(carry.stopping.kept_params)
    print(json.dumps({
        "device_count": jax.device_count(),
        "grid_size": four.runs[0].size,
        "specs": sorted({str(tuple(leaf.sharding.spec)) for leaf in leaves}),
        "shard_rows": sorted({tuple(s.data.shape[:1]) for leaf in leaves for s in leaf.addressable_shards}),
        "shard_devices": sorted({len({s.device.id for s in leaf.addressable_shards}) for leaf in leaves}),
        "leading": sorted({leaf.shape[0] for leaf in leaves}),
        "one": {"rows": one.rows, "best": one.best_index, "test": one.test_metrics},
        "four": {"rows": four.rows, "best": four.best_index, "test": four.test_metrics},
    }))
    """
)


def test_sharded_grid_search_equals_unsharded_and_splits_the_grid_over_4_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
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
