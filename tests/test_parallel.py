"""Data parallelism (issue 6) on 4 forced CPU devices: the sharded epoch equals
the 1-device epoch with the same global batch (batch norm, dropout and
augmentation included), each device holds 1/4 of every minibatch, metrics are
reduced over devices, checkpoints move between 4 devices and 1, and the CLI's
``training.devices``.

Everything runs in one subprocess, ``tests/device_programs/parallel_report.py``
through ``conftest.run_with_devices_once`` (the device count is fixed when JAX
starts, and pytest-xdist workers share their JAX backend; once per session, also
when the tests are split over xdist workers); it prints a JSON report of the measured differences and shardings, which the tests below check.
The reference is always the 1-device path (``make_train_epoch`` / ``fit`` /
the CLI with ``training.devices: 1``).
"""

from __future__ import annotations

import pytest

from tests.conftest import TINY_DIGITS as TINY
from tests.conftest import run_with_devices_once

pytestmark = pytest.mark.slow
DEVICES = 4
FLOAT32_TOL = 2e-5  # float32 summation order differs between 1 and 4 devices



@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_with_devices_once(tmp_path_factory, "parallel_report", DEVICES, str(TINY))


def test_three_epochs_on_4_devices_equal_3_epochs_on_1_device(report):
    equal = report["equal"]
    assert equal["params"] < FLOAT32_TOL
    assert equal["model_state"] < FLOAT32_TOL  # both batch norms' running statistics: global-batch μ_B, σ_B²
    assert equal["opt_state"] < FLOAT32_TOL
    assert equal["metrics"] < FLOAT32_TOL  # train loss/accuracy (reduced over devices) and validation
    assert equal["step"] == [18, 18] and equal["key_equal"] and equal["bn_count"] == 18
    assert equal["train_loss_epochs"][-1] < equal["train_loss_epochs"][0]  # it trains
    assert equal["state_replicated_on_4"]


def test_each_device_holds_a_quarter_of_the_global_batch(report):
    split = report["split"]
    # inside the compiled step, the (B=16, 16) activations: whole on 1 device, (4, 16) on each of 4
    assert split["activations"] == [[1, [16, 16]], [4, [4, 16]]]
    assert split["shard_shapes"] == [[4, 8]] * 4 and split["shard_rows"] == [0, 4, 8, 12]
    assert split["shard_devices"] == 4 and split["gathered_equal"]


def test_indivisible_batch_and_too_many_devices_are_clear_errors(report):
    # the library names its own arguments; the CLI reports them under the YAML keys (test_cli_training_devices)
    assert report["indivisible"].startswith("batch_size=18") and "device count 4" in report["indivisible"]
    assert report["too_many"].startswith("devices=5") and "[1, 4]" in report["too_many"]


@pytest.mark.parametrize("move", ["4to1", "1to4"])
def test_checkpoint_moves_between_4_devices_and_1(report, move):
    resumed = report["checkpoint"][move]
    assert resumed["epochs"] == [1, 2, 3]
    for part in ("params", "model_state", "opt_state", "metrics"):
        assert resumed[part] < FLOAT32_TOL, part
    if move == "1to4":
        assert resumed["replicated_on_4"]


def test_cli_training_devices(report):
    cli = report["cli"]
    # 1 device for 2 epochs  vs  4 devices for 1 epoch, resumed on 1 device for the 2nd
    assert cli["codes"] == [0, 0, 0] and cli["epochs"] == [1, 2]
    assert cli["metrics"] < 1e-4 and cli["test"] < 1e-4
    assert cli["bad_code"] == 2 and "error: training.batch_size=30" in cli["bad_message"]
