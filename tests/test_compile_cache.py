"""The persistent compilation cache of CLI runs: where it lives, how it is
turned off, and that a second run in a new process loads every program from
it (writes nothing new) and gives the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from functional_nn.__main__ import main
from functional_nn.experiment import compile_cache
from tests.conftest import REPO_ROOT, TINY_DIGITS


def test_the_cache_folder_follows_the_environment(tmp_path):
    home = os.path.expanduser("~")
    assert compile_cache.default_cache_dir({}) == os.path.join(home, ".cache", "functional_nn", "jax")
    assert compile_cache.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == os.path.join("/x", "functional_nn", "jax")
    assert compile_cache.default_cache_dir({"XDG_CACHE_HOME": "/x", "FUNCTIONAL_NN_CACHE_DIR": "/y"}) == "/y"


@pytest.mark.parametrize("value, wanted", [("0", False), ("off", False), ("False", False), ("1", True), ("", True)])
def test_the_environment_switch(value, wanted):
    assert compile_cache.compile_cache_wanted({"FUNCTIONAL_NN_COMPILE_CACHE": value}) is wanted
    assert compile_cache.compile_cache_wanted({}) is True


@pytest.mark.parametrize(
    "flags, environment, enabled",
    [([], {}, True), (["--no-compile-cache"], {}, False), ([], {"FUNCTIONAL_NN_COMPILE_CACHE": "0"}, False)],
)
def test_commands_enable_the_cache_unless_told_not_to(tmp_path, monkeypatch, capsys, flags, environment, enabled):
    calls = []
    monkeypatch.setattr(compile_cache, "enable_compile_cache", lambda *a: calls.append(a))
    monkeypatch.delenv("FUNCTIONAL_NN_COMPILE_CACHE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["train", str(tmp_path / "missing.yaml"), *flags]) == 2  # stops right after the switch
    assert bool(calls) is enabled
    capsys.readouterr()


def _run(cache_dir, out_dir) -> dict:
    env = dict(os.environ, FUNCTIONAL_NN_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
    env.pop("FUNCTIONAL_NN_COMPILE_CACHE", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, "-m", "functional_nn", "train", str(TINY_DIGITS), "--out", str(out_dir)]
    result = subprocess.run(
        [*command, "--set", "training.epochs=1", "--no-progress"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two fresh processes
def test_a_second_run_loads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _run(cache, tmp_path / "first")
    written = sorted(os.listdir(cache))
    assert written, "the first run cached nothing"
    second = _run(cache, tmp_path / "second")
    assert sorted(os.listdir(cache)) == written  # every program found, none compiled anew
    assert {k: v for k, v in first.items() if k != "wall_time_s"} == {k: v for k, v in second.items() if k != "wall_time_s"}
