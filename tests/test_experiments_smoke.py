"""Each experiment script runs end to end on a tiny setting (``--smoke``) and
writes its markdown table (with a verdict line) and its pictures."""

from __future__ import annotations

import importlib.util
import os

import pytest

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
SCRIPTS = {
    "exp1_surfaces": ["exp1_surfaces_quadratic.png", "exp1_surfaces_rosenbrock.png", "exp1_surfaces_steep.png"],
    "exp2_optimizers_digits": ["exp2_optimizers_digits.png", "exp2_optimizers_digits_grid.png"],
    "exp3_batchnorm": ["exp3_batchnorm.png"],
    "exp4_dropout": ["exp4_dropout.png", "exp4_dropout_gap_inverted.png", "exp4_dropout_gap_scale_at_test.png"],
    "exp5_divergence": ["exp5_divergence.png"],
    "exp6_regularization": ["exp6_regularization.png", "exp6_regularization_grid.png"],
}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_experiment_runs_on_a_tiny_setting(name, tmp_path):
    assert _load(name).main(["--smoke", "--out", str(tmp_path)]) == 0
    text = (tmp_path / f"{name}.md").read_text()
    assert "SMOKE RUN" in text and "**Verdict: the claim" in text
    for picture in SCRIPTS[name]:
        assert (tmp_path / picture).stat().st_size > 1000, picture
        assert picture in text, f"{name}.md does not link {picture}"
