"""The same training code on several hosts: two processes joined by
``jax.distributed.initialize`` (the CLI's ``--distributed``), each with 2 forced
CPU devices, train over the 4 devices of both (``training.devices: all``) and
reach the same result as one process on one device.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from functional_nn.__main__ import main

from tests.conftest import REPO_ROOT, TINY_DIGITS, read_run, with_test_xla_flags

pytestmark = pytest.mark.slow
TINY = str(TINY_DIGITS)
SETTINGS = ["--no-progress", "--set", "training.epochs=2", "--set", "optimizer.name=sgd", "--set", "optimizer.learning_rate=0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_two_devices_equal_one_device(tmp_path, capsys):
    port = free_port()
    env = dict(
        os.environ,
        XLA_FLAGS=with_test_xla_flags("--xla_force_host_platform_device_count=2"),
        JAX_PLATFORMS="cpu",
        JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",  # IPv4 loopback (the default binds [::])
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "functional_nn", "train", TINY, *SETTINGS, "--set", "training.devices=all",
             "--out", str(tmp_path / f"process{i}"), "--distributed", "--coordinator-address", f"127.0.0.1:{port}",
             "--num-processes", "2", "--process-id", str(i)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]

    assert main(["train", TINY, *SETTINGS, "--out", str(tmp_path / "one_device")]) == 0  # the reference
    capsys.readouterr()
    reference_history, reference = read_run(tmp_path / "one_device")
    for i in range(2):
        history, summary = read_run(tmp_path / f"process{i}")
        assert [r["epoch"] for r in history] == [1, 2]
        for record, expected in zip(history, reference_history):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                assert record[key] == pytest.approx(expected[key], abs=1e-5), key
        assert summary["test_loss"] == pytest.approx(reference["test_loss"], abs=1e-5)
