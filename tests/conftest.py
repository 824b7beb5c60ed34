"""Helpers shared by the test files: paths, reading a run directory, the one
runner for programs that need several (forced host) devices, and the XLA flags
every test process (and every subprocess a test starts) runs with."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# CLI runs called in-process (main([...])) would turn on JAX's persistent
# compilation cache in the user's ~/.cache for the rest of the test process;
# tests/test_compile_cache.py turns it on where it tests it.
os.environ.setdefault("FUNCTIONAL_NN_COMPILE_CACHE", "0")
TINY_DIGITS = REPO_ROOT / "tests" / "data" / "tiny_digits.yaml"
DEVICE_PROGRAMS = REPO_ROOT / "tests" / "device_programs"

#: XLA's CPU backend skips LLVM's optimisation passes: the suite's programs are
#: tiny and compiled once each, so compilation dominates its CPU time and this
#: cuts it by about a third (measured: tests/test_optim_aliases.py 36 s -> 24 s of
#: CPU). It changes no semantics (no fast-math either way) and every comparison
#: keeps its tolerance. XLA reads the variable when JAX's backend starts, which
#: happens after this conftest is imported.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def with_test_xla_flags(flags: str = "") -> str:
    """``flags`` followed by :data:`TEST_XLA_FLAGS` (for a subprocess's XLA_FLAGS)."""
    return " ".join(part for part in (flags, TEST_XLA_FLAGS) if part)


if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = with_test_xla_flags(os.environ.get("XLA_FLAGS", ""))


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` (multi-device subprocesses, end-to-end runs) first:
    under ``-n 2`` a long test that starts last keeps one worker busy while the
    other idles, so the heavy ones start while the short ones fill in."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def read_run(directory) -> tuple:
    """(history from ``metrics.jsonl``, ``summary.json``) of a run directory."""
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    with open(os.path.join(directory, "summary.json")) as f:
        return history, json.load(f)


def device_environment(devices: int) -> dict:
    """The environment of a fresh Python with ``devices`` forced host CPU devices
    (the count is fixed when JAX starts, so it needs its own process) that
    imports this checkout of ``functional_nn`` and the ``tests`` package."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(
        os.environ,
        XLA_FLAGS=with_test_xla_flags(f"--xla_force_host_platform_device_count={devices}"),
        JAX_PLATFORMS="cpu",
        PYTHONPATH=path,
    )


def run_with_devices(program: str, devices: int, *args: str, timeout: float = 300) -> dict:
    """Run ``tests/device_programs/<program>.py`` with ``devices`` forced host
    devices and return the JSON object it prints on its ``REPORT`` line."""
    result = subprocess.run(
        [sys.executable, str(DEVICE_PROGRAMS / f"{program}.py"), *args],
        cwd=REPO_ROOT,
        env=device_environment(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


@pytest.fixture(scope="module")
def shared_compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache in a temporary directory, for one
    test module: each CLI ``main`` call compiles its programs afresh, so a
    module that runs the same config several times compiles each program once
    and loads it afterwards. Yields the directory (a subprocess shares it
    through ``JAX_COMPILATION_CACHE_DIR``); the settings are restored after
    the module."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    directory = str(tmp_path_factory.mktemp("compilation_cache"))
    settings = {
        "jax_compilation_cache_dir": directory,
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    saved = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield directory
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def run_with_devices_once(tmp_path_factory, program: str, devices: int, *args: str, timeout: float = 300) -> dict:
    """:func:`run_with_devices`, run once per test session even under pytest-xdist:
    the first worker to ask runs the program and leaves its report in the
    session's shared temporary directory (under a file lock); the others read
    it. Without this, a module fixture's subprocess runs once on every worker
    that receives one of the module's tests (``-n 2`` balances test by test)."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base is <session dir>/popen-gwN: the session dir is shared
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    name = "_".join((program, str(devices), *(os.path.basename(a) for a in args)))
    report_file = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if report_file.exists():
            return json.loads(report_file.read_text())
        report = run_with_devices(program, devices, *args, timeout=timeout)
        report_file.write_text(json.dumps(report))
        return report
