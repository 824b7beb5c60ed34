"""README.md runs as written.

Rules (a README section that adds code must follow them):

1. **Python blocks.** Every fenced block opened with ```` ```python ```` is
   executed, each on its own in a fresh namespace (a block must be complete:
   its imports, data, model, loss and optimizer), with the working directory a
   temporary folder. A block fails the test if it raises.
2. **Commands.** Every ``python -m functional_nn ...`` command is run: in
   fenced blocks opened with ```` ```bash ````/```` ```sh ```` (the part after
   ``&&`` on a line with ``pip install ... &&``; ``\\``-continued lines are
   joined) and in inline code spans of the text (which may wrap across
   lines). Untagged fenced blocks are synopses (``CONFIG``, ``RUN_DIR``
   placeholders) and are not run.
3. Commands run **in document order, in one temporary working directory**
   holding a ``configs`` link to the repository's configs, so a command may
   use what an earlier one wrote (``runs/<name>/``). They run in this process
   through ``functional_nn.__main__.main``; each must exit with 0.
4. **Allowed changes.** To keep the suite fast, ``train`` and ``search`` get
   ``--set training.epochs=1 --no-compile-cache`` appended (and ``train``
   ``--no-progress``); nothing else of a command is changed.
5. **Skipping.** A command is not run when, in prose, the markdown line where
   it starts holds ``<!-- not run: REASON -->``, or, in a bash block, the
   command (its last line when continued) ends with ``# not run: REASON``: use it for
   commands that need files CI does not have (MNIST IDX files), several
   processes or hosts (``--distributed``, ``srun``), forced devices
   (``XLA_FLAGS=...``), or shell variables. Every skip must give a reason.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from functional_nn.__main__ import main
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
COMMAND = "python -m functional_nn"
SKIP = re.compile(r"<!--\s*not run:\s*(\S[^>]*?)\s*-->|#\s*not run:\s*(\S.*?)\s*$")
FAST = ["--set", "training.epochs=1", "--no-compile-cache"]


def fenced_blocks(text: str) -> list:
    """``(language, first line number, body)`` of every fenced block."""
    blocks, pattern = [], re.compile(r"^```([\w-]*)\n(.*?)^```\s*$", re.S | re.M)
    for match in pattern.finditer(text):
        blocks.append((match.group(1), text.count("\n", 0, match.start()) + 1, match.group(2)))
    return blocks


def python_blocks(text: str) -> list:
    return [(line, body) for language, line, body in fenced_blocks(text) if language == "python"]


def _outside_fences(text: str) -> str:
    """The text with fenced blocks blanked (line numbers kept)."""
    return re.sub(r"^```.*?^```\s*$", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)


def _line_of(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start : end if end >= 0 else len(text)]


def readme_commands(text: str) -> list:
    """``(line number, command, skip reason or None)`` in document order, rules 2 and 5."""
    found = []
    for language, first, body in fenced_blocks(text):
        if language not in ("bash", "sh"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for number, line in enumerate(joined.splitlines()):
            if COMMAND in line:
                found.append((first + number + 1, " ".join(line[line.index(COMMAND) :].split()), _skip_reason(line)))
    prose = _outside_fences(text)
    for match in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(match.group(1).split())
        if COMMAND in span:
            line_text = _line_of(prose, match.start())
            found.append((prose.count("\n", 0, match.start()) + 1, span[span.index(COMMAND) :], _skip_reason(line_text)))
    return sorted(found)


def _skip_reason(line: str):
    match = SKIP.search(line)
    return (match.group(1) or match.group(2)) if match else None


def command_arguments(command: str) -> list:
    """The arguments ``main`` gets for a README command (rule 4)."""
    arguments = shlex.split(command, comments=True)[len(COMMAND.split()) :]
    command = arguments[0] if arguments else None
    return arguments + (FAST if command in ("train", "search") else []) + (["--no-progress"] if command == "train" else [])


TEXT = README.read_text()


def test_the_readme_has_what_the_rules_read():
    assert len(python_blocks(TEXT)) >= 3
    commands = readme_commands(TEXT)
    assert [c for _, c, _ in commands][0] == "python -m functional_nn train digits_mlp"
    assert all(reason.strip() for _, _, reason in commands if reason is not None)


def test_the_rules_find_commands_in_blocks_and_wrapped_inline_code():
    text = (
        "Run `python -m\nfunctional_nn configs` now.\n\n```bash\npip install . && python -m functional_nn train a \\\n"
        "    --set x=1\n```\n\nAnd `python -m functional_nn eval b` <!-- not run: needs b -->\n"
        "```\npython -m functional_nn train CONFIG\n```\n"
    )
    assert readme_commands(text) == [
        (1, "python -m functional_nn configs", None),
        (5, "python -m functional_nn train a --set x=1", None),
        (9, "python -m functional_nn eval b", "needs b"),
    ]
    assert command_arguments("python -m functional_nn train a --set x=1") == ["train", "a", "--set", "x=1", *FAST, "--no-progress"]
    assert command_arguments("python -m functional_nn configs") == ["configs"]


@pytest.mark.parametrize("line, code", python_blocks(TEXT), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": f"readme_block_{line}"})


@pytest.mark.slow
def test_commands_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.symlink(REPO_ROOT / "configs", tmp_path / "configs")
    ran = []
    for line, command, reason in readme_commands(TEXT):
        if reason is not None:
            continue
        code = main(command_arguments(command))
        captured = capsys.readouterr()
        assert code == 0, f"README.md:{line}: {command} exited with {code}: {captured.err[-2000:]}"
        ran.append(command)
    assert ran, "no README command ran"
    assert Path("runs/digits_mlp/summary.json").exists()
