"""A run never damages a directory that holds another run: the lock, staged
fresh runs and their journaled commit, recovery after a kill, stale temporary
files, file modes under the umask, symlinks, and a full disk.

One real two-epoch run (a linear model, so it compiles fast) is trained once
per module and copied for each test that needs an earlier run; kills are
simulated in-process (a hook raising an exception that skips every cleanup,
as SIGKILL would)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import zipfile

import pytest

from functional_nn.__main__ import main
from functional_nn.experiment import run_dir
from functional_nn.experiment.commands import train as train_module
from functional_nn.experiment.run_dir import locked_run_directory, RunFiles
from functional_nn.train import checkpoint as checkpoint_module
from functional_nn.train.checkpoint import atomic_write_bytes
from tests.conftest import TINY_DIGITS

TINY = str(TINY_DIGITS)
RUN = ["--set", "model.layers=[{dense: 10}]", "--set", "training.epochs=2", "--no-progress"]


pytestmark = pytest.mark.usefixtures("shared_compilation_cache")  # the module's runs compile the same programs


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the package catches it."""


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished two-epoch run written under umask 022."""
    out = tmp_path_factory.mktemp("runs") / "earlier"
    old = os.umask(0o022)
    try:
        assert main(["train", TINY, "--out", str(out), *RUN]) == 0
    finally:
        os.umask(old)
    return out


def copy_run(earlier_run, tmp_path):
    destination = tmp_path / "run"
    shutil.copytree(earlier_run, destination, symlinks=True)
    return destination


def snapshot(directory) -> dict:
    """Every file of a run directory (not the lock, not ``.staging``) and its bytes."""
    return {
        name: (directory / name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name not in (run_dir.LOCK_FILE, run_dir.STAGING_DIR) and not (directory / name).is_dir()
    }


def arrays(directory) -> dict:
    with zipfile.ZipFile(directory / "checkpoint.npz") as z:
        return {name: z.read(name) for name in z.namelist() if name != "__metadata__.npy"}


def metrics(directory) -> list:
    with open(directory / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"} for line in f]


# --------------------------------------------------------------------------
# the lock


def test_a_second_run_into_a_locked_directory_exits_2_naming_the_holder(earlier_run, tmp_path, capsys):
    run = copy_run(earlier_run, tmp_path)
    before = snapshot(run)
    holder = f"pid {os.getpid()} on host {socket.gethostname()}"
    with locked_run_directory(str(run)):  # another open file description: flock conflicts as across processes
        for command in ("train", "search"):
            capsys.readouterr()
            assert main([command, TINY, "--out", str(run), *RUN[:2]]) == 2
            err = capsys.readouterr().err.strip()
            assert err == (
                f"error: run directory '{run}' is in use by another run ({holder}); "
                "wait for it to finish or choose another --out"
            )
    assert snapshot(run) == before
    with locked_run_directory(str(run)):  # released: free again
        pass


# --------------------------------------------------------------------------
# staging, kills and recovery


def test_a_fresh_run_killed_before_its_first_checkpoint_leaves_every_earlier_file_byte_identical(
    earlier_run, tmp_path, capsys, monkeypatch
):
    run = copy_run(earlier_run, tmp_path)
    before = snapshot(run)

    def killed_fit(*args, checkpoint_path, metrics_path, **kwargs):
        with open(metrics_path, "a") as f:  # the first epoch logged ...
            f.write('{"epoch": 1}\n')
        temporary = os.path.join(os.path.dirname(checkpoint_path), ".checkpoint.npz.dead.tmp")
        with open(temporary, "wb") as f:  # ... and the kill lands in the middle of the checkpoint write
            f.write(b"PK half a checkpoint")
        raise Killed

    monkeypatch.setattr(train_module, "fit", killed_fit)
    monkeypatch.setattr(RunFiles, "discard", lambda self: None)  # SIGKILL runs no cleanup
    with pytest.raises(Killed):
        main(["train", TINY, "--out", str(run), *RUN, "--set", "training.seed=11"])
    assert "holds an earlier run; this run starts afresh" in capsys.readouterr().err
    staged = set(os.listdir(run / run_dir.STAGING_DIR))
    assert {"config.yaml", "metrics.jsonl", ".checkpoint.npz.dead.tmp"} <= staged
    assert snapshot(run) == before  # nothing of the earlier run touched

    notes = run_dir.recover(str(run))  # the next start rolls the staged run back
    assert any("a run that stopped before its first checkpoint" in note for note in notes)
    assert not os.path.exists(run / run_dir.STAGING_DIR) and snapshot(run) == before


def test_a_kill_during_the_commit_is_finished_at_the_next_start(earlier_run, tmp_path, monkeypatch):
    run = copy_run(earlier_run, tmp_path)
    new = {"config.yaml": b"name: new\n", "metrics.jsonl": b'{"epoch": 1}\n', "checkpoint.npz": b"PK new"}
    files = RunFiles(str(run), staged=True)
    for name, data in new.items():
        files.write(name, data)
    real_replace, moves = os.replace, []

    def replace_then_die(source, destination):
        real_replace(source, destination)
        if source.endswith(".tmp"):  # an atomic write (the journal itself)
            return
        moves.append(destination)
        raise Killed

    monkeypatch.setattr(run_dir.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        files.commit()
    monkeypatch.setattr(run_dir.os, "replace", real_replace)
    assert len(moves) == 1 and os.path.exists(run / run_dir.STAGING_DIR / run_dir.COMMIT_FILE)

    notes = run_dir.recover(str(run))
    assert any("finished moving" in note for note in notes)
    # the new run's files, all of them; the earlier run's plot and summary are gone with it
    assert snapshot(run) == new and not os.path.exists(run / run_dir.STAGING_DIR)


def test_a_staged_run_equals_a_run_into_an_empty_directory(earlier_run, tmp_path, capsys):
    """The staged run trains to its first checkpoint in .staging, commits, and
    continues from it in place: bit-identical to the earlier run, which had
    the same config and an empty directory."""
    run = copy_run(earlier_run, tmp_path)
    (run / "summary.json").write_text('{"status": "an earlier run"}')
    assert main(["train", TINY, "--out", str(run), *RUN]) == 0
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "resumed from" not in err
    assert arrays(run) == arrays(earlier_run) and metrics(run) == metrics(earlier_run)
    assert set(os.listdir(run)) == set(run_dir.RUN_FILES) | {run_dir.LOCK_FILE}
    with open(run / "summary.json") as f:
        assert json.load(f)["status"] == "ok"


# --------------------------------------------------------------------------
# a resume: stale temporaries, modes, symlinks


@pytest.fixture(scope="module")
def resumed_run(earlier_run, tmp_path_factory):
    """A copy of the earlier run with a killed run's temporary files and a
    symlinked plot pointing outside, resumed (nothing left to train) under
    umask 022: (run directory, the symlink's target, the resume's stderr)."""
    base = tmp_path_factory.mktemp("resumed")
    run = base / "run"
    shutil.copytree(earlier_run, run)
    for name in (".checkpoint.npz.1a2b3c.tmp", ".metrics.jsonl.4d5e6f.tmp"):
        (run / name).write_bytes(b"left by a killed run")
    victim = base / "outside.png"
    victim.write_bytes(b"not the run's plot")
    (run / "learning_curves.png").unlink()
    (run / "learning_curves.png").symlink_to(victim)
    old = os.umask(0o022)
    try:
        code = main(["train", TINY, "--out", str(run), *RUN, "--resume"])
    finally:
        os.umask(old)
    assert code == 0
    return run, victim


def test_stale_temporary_files_are_gone_after_a_resume(resumed_run):
    run, _ = resumed_run
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")]


def test_files_follow_the_umask(resumed_run, tmp_path):
    run, _ = resumed_run
    modes = {name: os.stat(run / name).st_mode & 0o777 for name in os.listdir(run)}
    assert modes == {name: 0o644 for name in modes} and len(modes) == 7  # the run's files and the lock
    for umask, mode in ((0o077, 0o600), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            atomic_write_bytes(str(tmp_path / f"file{umask}"), b"x")
        finally:
            os.umask(old)
        assert os.stat(tmp_path / f"file{umask}").st_mode & 0o777 == mode


def test_a_symlinked_plot_is_replaced_not_written_through(resumed_run):
    run, victim = resumed_run
    assert victim.read_bytes() == b"not the run's plot"
    plot = run / "learning_curves.png"
    assert not plot.is_symlink() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_search_into_a_training_run_is_refused(earlier_run, tmp_path, capsys):
    run = copy_run(earlier_run, tmp_path)
    before = snapshot(run)
    capsys.readouterr()
    assert main(["search", TINY, "--out", str(run), "--set", "search={optimizer.learning_rate: [0.1]}"]) == 2
    assert f"error: run directory '{run}' holds a training run (checkpoint.npz)" in capsys.readouterr().err
    assert snapshot(run) == before


@pytest.mark.parametrize("marker", ["results.csv", "best"])
def test_a_training_run_into_a_search_directory_is_refused(earlier_run, tmp_path, capsys, marker):
    """A search directory: its config and summary, and its results table or its chosen run ``best/``."""
    search = tmp_path / "search"
    search.mkdir()
    for name in ("config.yaml", "summary.json"):
        shutil.copy(earlier_run / name, search / name)
    if marker == "best":
        shutil.copytree(earlier_run, search / "best")
    else:
        (search / "results.csv").write_text("setting,best_val_loss\n0,0.5\n")
    before = (snapshot(search), snapshot(search / "best") if marker == "best" else None)
    for extra in ([], ["--resume"]):
        capsys.readouterr()
        assert main(["train", TINY, "--out", str(search), *RUN, *extra]) == 2
        err = capsys.readouterr().err
        assert f"error: run directory '{search}' holds a grid search ({marker})" in err, err
        assert (snapshot(search), snapshot(search / "best") if marker == "best" else None) == before


def test_symlinked_lock_and_staging_are_replaced_not_followed(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (outside / "file").write_bytes(b"keep")
    (run / run_dir.LOCK_FILE).symlink_to(outside / "file")
    (run / run_dir.STAGING_DIR).symlink_to(outside)
    with locked_run_directory(str(run)):
        run_dir.recover(str(run))
    assert not (run / run_dir.LOCK_FILE).is_symlink() and not os.path.lexists(run / run_dir.STAGING_DIR)
    assert os.listdir(outside) == ["file"] and (outside / "file").read_bytes() == b"keep"


# --------------------------------------------------------------------------
# disk full


def test_disk_full_keeps_the_last_checkpoint(earlier_run, tmp_path, capsys, monkeypatch):
    run = copy_run(earlier_run, tmp_path)
    checkpoint = (run / "checkpoint.npz").read_bytes()
    real_write_all = checkpoint_module._write_all

    def disk_full_for_checkpoints(f, data, *args):
        if bytes(data[:2]) == b"PK" and b"mean.npy" not in bytes(data[:64]):  # a checkpoint (not preprocessing.npz)
            real_write_all(f, data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(f, data, *args)

    monkeypatch.setattr(checkpoint_module, "_write_all", disk_full_for_checkpoints)
    capsys.readouterr()
    assert main(["train", TINY, "--out", str(run), *RUN, "--set", "training.epochs=3", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: [Errno {errno.ENOSPC}] No space left on device: '{run / 'checkpoint.npz'}'"
    assert (run / "checkpoint.npz").read_bytes() == checkpoint
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")]
