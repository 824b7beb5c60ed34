"""The experiments: the seeds axis trains what separate runs train, the verdict rule
is the one stated, and ``run_all.py --smoke`` runs all six scripts end to end
(tiny settings, 2 seeds) writing their tables, verdicts, pictures and the summary."""

from __future__ import annotations

import importlib
import json
import os
import sys

import jax
import numpy as np
import pytest

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
PICTURES = {
    "exp1_surfaces": ["exp1_surfaces_quadratic.png", "exp1_surfaces_rosenbrock.png", "exp1_surfaces_steep.png"],
    "exp2_optimizers_digits": ["exp2_optimizers_digits.png", "exp2_optimizers_digits_grid.png"],
    "exp3_batchnorm": ["exp3_batchnorm.png"],
    "exp4_dropout": ["exp4_dropout.png", "exp4_dropout_gaps.png"],
    "exp5_divergence": ["exp5_divergence.png"],
    "exp6_regularization": ["exp6_regularization.png", "exp6_regularization_grid.png"],
}


@pytest.fixture(scope="module")
def experiments():
    """The experiments' helper modules, imported from experiments/ (not a package)."""
    sys.path.insert(0, EXPERIMENTS)
    try:
        yield {name: importlib.import_module(name) for name in ("_common", "_seeds", "run_all")}
    finally:
        sys.path.remove(EXPERIMENTS)


def test_seeds_axis_matches_one_run_grid_per_seed(experiments):
    """Column (setting s, seed n) of the seeded program = setting s of run_grid(key=jax.random.key(seed_n))
    (batch norm and dropout included: the key drives initialisation, shuffles and masks), and the
    accessors read that column: evaluate_all and train_state agree with make_evaluate on it."""
    from functional_nn.experiment import build_data, build_loss, build_model, load_config
    from functional_nn.experiment.search import expand_grid, make_build, selection_rule, split_hparams, split_keys
    from functional_nn.train import make_evaluate, run_grid

    seeds_module = experiments["_seeds"]
    config = load_config(os.path.join(DATA, "tiny_digits.yaml"), [("training.epochs", 1)])
    data = build_data(config.data)
    grid, seeds = {"optimizer.learning_rate": [0.001, 0.03]}, [4, 5]
    seeded = seeds_module.seeded_search(config, seeds, grid, data=data)
    optimizer_hparams, model_hparams = split_hparams(split_keys(grid, config.model)[0], expand_grid(grid))
    curves = seeds_module.curves(seeded, "val_loss")  # (settings, seeds, epochs)
    separate = run_grid(make_build(config, optimizer_hparams, model_hparams), {f"optimizer:{k}": v for k, v in optimizer_hparams.items()},
                        data.train, data.val, batch_size=config.training.batch_size, epochs=1, key=jax.random.key(seeds[1]),
                        early_stopping=selection_rule(config))
    # the second seed's columns; vmapped matmuls round differently: 0.5 % tolerance
    np.testing.assert_allclose(curves[:, 1, :].T, separate.history["val_loss"], rtol=5e-3)
    assert abs(curves[1, 0, 0] - curves[1, 1, 0]) > 10 * 5e-3 * curves[1, 1, 0]  # the seeds differ far beyond the tolerance
    # every (setting, seed) of evaluate_all is make_evaluate of that column's kept train state
    evaluate = make_evaluate(build_model(config.model), build_loss(config.loss))
    evaluated = seeds_module.evaluate_all(seeded, data.test)
    for (index, seed_index), loss in np.ndenumerate(evaluated["loss"]):
        want = evaluate(seeds_module.train_state(seeded, index, seed_index), data.test.x, data.test.y)
        np.testing.assert_allclose([loss, evaluated["accuracy"][index, seed_index]], [want["loss"], want["accuracy"]], rtol=1e-5)


@pytest.mark.parametrize("a, b, expected", [
    ([1.0, 1.2, 1.1], [0.0, 0.1, 0.2], "held"),            # Δ = 1.0 > 0.1 + 0.1
    ([0.0, 0.1, 0.2], [1.0, 1.2, 1.1], "did not hold"),
    ([0.5, 0.7, 0.6], [0.4, 0.6, 0.5], "inconclusive at this noise level"),   # Δ = 0.1 < 0.2
])
def test_verdict_rule_against_the_float64_formula(experiments, a, b, expected):
    common = experiments["_common"]
    verdict = common.compare("A larger", a, b, larger=True, what="x")
    effect = np.mean(a) - np.mean(b)
    spread = np.std(a, ddof=1) + np.std(b, ddof=1)
    assert verdict.outcome == expected
    assert (effect > spread) == (expected == "held") and (effect < -spread) == (expected == "did not hold")
    assert common.compare("B smaller", b, a, larger=False, what="x").outcome == expected  # the direction flips Δ's sign
    assert verdict.effect == f"Δ = {effect:+.3g}" and verdict.spread == f"{spread:.3g}"


def test_combined_verdict(experiments):
    common = experiments["_common"]
    held = common.compare("a", [2.0, 2.1], [0.0, 0.1], larger=True, what="x")
    unclear = common.compare("b", [0.5, 0.7], [0.4, 0.6], larger=True, what="x")
    failed = common.compare("c", [0.0, 0.1], [2.0, 2.1], larger=True, what="x")
    assert common.combine("all", [held, held]).outcome == common.HELD
    assert common.combine("some", [held, unclear]).outcome == common.INCONCLUSIVE
    assert common.combine("any failed", [held, unclear, failed]).outcome == common.NOT_HELD


@pytest.fixture
def fast_compilation():
    """XLA without most optimizations while the smoke run compiles its ~20 tiny programs (its numbers mean nothing)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.mark.slow
def test_run_all_smoke_writes_every_result_and_the_summary(experiments, fast_compilation, tmp_path, capsys):
    assert experiments["run_all"].main(["--smoke", "--out", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text()
    for name, pictures in PICTURES.items():
        text = (tmp_path / f"{name}.md").read_text()
        assert "SMOKE RUN" in text and "**2 seeds**" in text and "**Verdict: " in text, name
        verdicts = json.loads((tmp_path / f"{name}.verdicts.json").read_text())
        assert verdicts and all(v["outcome"] in ("held", "did not hold", "inconclusive at this noise level") for v in verdicts)
        assert all(f"**Verdict: {v['outcome'].upper()}.** {v['claim']}" in text for v in verdicts), name
        assert all(v["claim"] in summary for v in verdicts) and f"]({name}.md)" in summary
        for picture in pictures:
            assert (tmp_path / picture).stat().st_size > 1000, picture
            assert picture in text, f"{name}.md does not link {picture}"
