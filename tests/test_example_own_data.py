"""``examples/own_data.py`` runs as written: own arrays and model through
``fit``, evaluate, save, ``load_run`` and predict; the loaded run gives the
trained run's test accuracy, and ``predict`` on the saved run directory
agrees with the loaded run's predictions."""

from __future__ import annotations

import runpy

import numpy as np
import pytest

from functional_nn.__main__ import main as cli
from tests.conftest import REPO_ROOT


def test_own_data_example_trains_saves_loads_and_predicts(tmp_path, capsys):
    example = runpy.run_path(str(REPO_ROOT / "examples" / "own_data.py"))
    run_dir = tmp_path / "own"
    result = example["main"](str(run_dir))
    assert result["loaded_test_accuracy"] == pytest.approx(result["test_accuracy"])
    assert result["test_accuracy"] > 0.85 and result["new_data_accuracy"] > 0.85
    # the run directory is a run like any other: the CLI predicts what load_run predicts
    x, y = example["rings"](50, np.random.default_rng(2))
    np.savez(tmp_path / "new.npz", x=x)
    assert cli(["predict", str(run_dir), "--input", str(tmp_path / "new.npz"), "--output", str(tmp_path / "p.npz")]) == 0
    import functional_nn

    expected = functional_nn.load_run(str(run_dir)).predict(x)
    with np.load(tmp_path / "p.npz") as f:
        np.testing.assert_array_equal(f["class"], expected.classes)
        np.testing.assert_allclose(f["probabilities"], expected.probabilities, rtol=1e-6)
