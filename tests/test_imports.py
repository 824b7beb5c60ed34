"""The floors of the package, read from every module's imports (``ast``):
registry, optim, layers, losses, data import nothing above them; train never
imports the experiment layer, ``config`` or ``__main__``; experiment never
imports ``__main__``. Lazy imports inside functions count too."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "functional_nn"

# floor -> the top-level parts of functional_nn it may not import
FORBIDDEN = {
    "registry": {"optim", "layers", "losses", "data", "train", "experiment", "config", "__main__"},
    "_validation": {"optim", "layers", "losses", "data", "train", "experiment", "config", "__main__"},
    "optim": {"train", "experiment", "config", "__main__"},
    "layers": {"train", "experiment", "config", "__main__"},
    "losses": {"train", "experiment", "config", "__main__"},
    "data": {"train", "experiment", "config", "__main__"},
    "train": {"experiment", "config", "__main__"},
    "experiment": {"__main__", "config"},
}


def _floor(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_parts(path: pathlib.Path, package: pathlib.Path = PACKAGE) -> set:
    """The top-level parts of ``functional_nn`` that ``path`` imports (absolute or relative)."""
    parts, where = set(), list(path.relative_to(package).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = where[: len(where) - node.level + 1]
                module = ".".join(["functional_nn", *base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names = [module] + ([f"{module}.{alias.name}" for alias in node.names] if module == "functional_nn" else [])
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "functional_nn" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _floor(p) in FORBIDDEN)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_nothing_above_its_floor(path):
    above = _imported_parts(path) & FORBIDDEN[_floor(path)]
    assert not above, f"{path.relative_to(PACKAGE)} imports {sorted(above)} from above its floor"


def test_the_checker_sees_imports_of_every_form(tmp_path):
    fake = tmp_path / "functional_nn" / "train"
    fake.mkdir(parents=True)
    module = fake / "m.py"
    module.write_text(
        "import functional_nn.experiment.schema\n"
        "def f():\n    from functional_nn import config\n"
        "from ..data import load_digits\n"
    )
    assert _imported_parts(module, tmp_path / "functional_nn") == {"experiment", "config", "data"}


def test_config_module_is_gone():
    assert not (PACKAGE / "config.py").exists()
    assert (PACKAGE / "experiment" / "__init__.py").exists()
