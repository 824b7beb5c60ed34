"""Training seeds as one more vmapped axis of the grid (``search.seeds``):
a grid trained with N seeds equals N separate single-seed grids, setting by
setting and seed by seed; rows report the mean over seeds and the sample
standard deviation, and the selection uses the mean."""

from __future__ import annotations

import copy

import jax
import numpy as np
import pytest

from functional_nn.experiment import ConfigError, parse_config
from functional_nn.experiment.search import grid_search, select_best, setting_train_state
from functional_nn.experiment.search_outputs import best_checkpoint, summary
from functional_nn.experiment.search_report import csv_text
from functional_nn.train import seed_keys

LEARNING_RATES = [3e-3, 1e-2, 3e-2]
SEEDS = 2
RAW = {
    "name": "seeds_test",
    "data": {"name": "spirals", "n": 240, "num_classes": 3, "val_fraction": 0.25, "test_fraction": 0.2},
    # dropout: the seed changes the initial weights, the shuffles and the dropout masks
    "model": {"layers": [{"dense": 16}, "tanh", {"dropout": 0.2}, {"dense": 3}]},
    "optimizer": {"name": "adam"},
    "training": {"epochs": 4, "batch_size": 32, "seed": 5, "early_stopping": {"patience": 2}},
    "search": {"optimizer.learning_rate": LEARNING_RATES, "seeds": SEEDS},
}
METRICS = ("best_val_loss", "train_loss", "train_accuracy", "val_accuracy")


def _config(seed=None, seeds=None):
    raw = copy.deepcopy(RAW)
    if seed is not None:
        raw["training"]["seed"] = seed
    if seeds is not None:
        raw["search"]["seeds"] = seeds
    return parse_config(raw)


@pytest.fixture(scope="module")
def seeded_and_single():
    """One grid with 2 seeds, and one single-seed grid per seed (training.seed 5, 6)."""
    seeded = grid_search(_config())
    singles = [grid_search(_config(seed=5 + k, seeds=1)) for k in range(SEEDS)]
    return seeded, singles


def test_each_seed_of_the_seeded_grid_equals_a_separate_single_seed_grid(seeded_and_single):
    seeded, singles = seeded_and_single
    assert seeded.seeds == SEEDS and len(seeded.groups) == 1  # every setting and seed: one compiled program
    for index in range(len(LEARNING_RATES)):
        for k, single in enumerate(singles):
            ours, reference = seeded.seed_rows[index][k], single.rows[index]
            assert ours["best_epoch"] == reference["best_epoch"] and ours["epochs_run"] == reference["epochs_run"]
            for name in METRICS:
                np.testing.assert_allclose(ours[name], reference[name], rtol=2e-5, atol=1e-6, err_msg=f"{index} {k} {name}")
    # the seeds really differ (otherwise the comparison above would prove nothing)
    assert seeded.seed_rows[0][0]["best_val_loss"] != seeded.seed_rows[0][1]["best_val_loss"]
    # seed 0 of the seeded grid kept the same weights as the single grid with training.seed
    ours = setting_train_state(seeded, 1).params
    reference = setting_train_state(singles[0], 1).params
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_rows_are_means_over_seeds_with_sample_std_and_selection_uses_the_mean(seeded_and_single):
    seeded, singles = seeded_and_single
    for index, row in enumerate(seeded.rows):
        per_seed = np.array([single.rows[index]["best_val_loss"] for single in singles], np.float64)
        np.testing.assert_allclose(row["best_val_loss"], per_seed.mean(), rtol=2e-5)
        np.testing.assert_allclose(row["best_val_loss_std"], per_seed.std(ddof=1), rtol=1e-3, atol=1e-6)
        for name in ("train_loss", "val_accuracy"):
            np.testing.assert_allclose(row[name], np.mean([s.rows[index][name] for s in singles]), rtol=2e-5)
        assert row["best_epoch"] == singles[0].rows[index]["best_epoch"]  # seed training.seed's, as best/
        assert row["best_epochs"] == [s.rows[index]["best_epoch"] for s in singles]
    means = [np.mean([s.rows[i]["best_val_loss"] for s in singles]) for i in range(len(LEARNING_RATES))]
    assert seeded.best_index == int(np.argmin(means))
    # the chosen setting's test metrics: seed 0's (the best/ run) and each seed's
    assert seeded.test_metrics == seeded.seed_test_metrics[0] and len(seeded.seed_test_metrics) == SEEDS


def test_select_best_reads_the_rows_mean_and_never_picks_nan():
    """The rule itself on hand-made rows (the seeded grid's own choice is checked against the
    per-seed means of separate grids above): a setting that won one seed alone loses on the mean."""
    rows = [
        {"best_val_loss": float(np.mean(v))} for v in ([0.10, 0.40], [0.20, 0.21])  # setting 0 wins seed 0 alone
    ]
    assert select_best(rows, "val_loss", "min") == 1
    assert select_best([{"best_val_loss": float("nan")}, {"best_val_loss": 0.3}], "val_loss", "min") == 1


@pytest.mark.parametrize("seeds", [0, -1, 1.5, "three"])
def test_invalid_seeds_name_the_key(seeds):
    raw = copy.deepcopy(RAW)
    raw["search"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=r"search\.seeds"):
        parse_config(raw)


def test_seed_keys_are_the_keys_of_each_seed_and_reject_bad_seeds():
    keys = seed_keys([0, 7])
    for key, seed in zip(keys, (0, 7)):
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(seed)))
    for bad in ([], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match="seeds="):
            seed_keys(bad)


def test_the_summary_keeps_best_epoch_an_int_and_lists_each_seeds(seeded_and_single):
    """summary.json's ``best_epoch`` is seed ``training.seed``'s (the best/ run's), ``best_epochs`` each seed's."""
    seeded, singles = seeded_and_single
    best = seeded.best_index
    shown = summary(seeded, _config(), 1.0)
    assert shown["best_epoch"] == singles[0].rows[best]["best_epoch"] and isinstance(shown["best_epoch"], int)
    assert shown["best_epoch"] == best_checkpoint(seeded, _config()).early_stopping.best_epoch  # best/'s
    assert shown["best_epochs"] == [single.rows[best]["best_epoch"] for single in singles]
    header, *lines = [line.split(",") for line in csv_text(seeded.rows).splitlines()]
    expected = "/".join(str(single.rows[best]["best_epoch"]) for single in singles)
    assert lines[best][header.index("best_epochs")] == expected


def test_the_first_grid_carry_holds_each_seeds_init_train_state_in_separate_buffers():
    """init_grid_carry (two compiled functions) gives column s·N + k exactly what
    init_train_state gives seed k (weights, batch-norm state, optimizer state
    with setting s's values, key), and W* and the kept model state start equal
    to W and the model state in buffers of their own (the epoch donates both);
    with one key, every column holds that key's init_train_state."""
    from functional_nn import layers, optim
    from functional_nn.train import init_train_state
    from functional_nn.train.search_engine import init_grid_carry

    model = layers.serial(layers.dense(5), layers.batchnorm(), layers.relu, layers.dense(3))
    build = lambda h: (model, None, optim.rmsprop(h["lr"], initial_scale=h["scale"]))  # noqa: E731
    rates, scales, seeds = np.array([1e-3, 1e-2], np.float32), np.array([0.5, 2.0], np.float32), [4, 9]
    hparams = {"lr": np.repeat(rates, len(seeds)), "scale": np.repeat(scales, len(seeds))}
    carry = init_grid_carry(build, hparams, seed_keys(seeds), (2, 7))
    for column in range(len(rates) * len(seeds)):
        setting, seed = column // len(seeds), seeds[column % len(seeds)]
        optimizer = optim.rmsprop(float(rates[setting]), initial_scale=float(scales[setting]))  # its state depends on the setting
        expected = init_train_state(model, optimizer, jax.random.key(seed), (2, 7))
        ours = jax.tree.map(lambda a: a[column], carry.train_state)
        for a, b in zip(jax.tree.leaves((ours.params, ours.model_state, ours.opt_state)), jax.tree.leaves((expected.params, expected.model_state, expected.opt_state))):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(jax.random.key_data(ours.key), jax.random.key_data(expected.key))
    single = init_grid_carry(build, hparams, jax.random.key(4), (2, 7))
    expected = init_train_state(model, optim.rmsprop(1e-2, initial_scale=2.0), jax.random.key(4), (2, 7))
    last = jax.tree.map(lambda a: a[-1], single.train_state._replace(key=None))
    for a, b in zip(jax.tree.leaves((last.params, last.model_state, last.opt_state)), jax.tree.leaves((expected.params, expected.model_state, expected.opt_state))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(single.train_state.key), jax.random.key_data(expected.key))
    for grid in (carry, single):
        trained, kept = (grid.train_state.params, grid.train_state.model_state), (grid.stopping.kept_params, grid.stopping.kept_model_state)
        for w, w_kept in zip(jax.tree.leaves(trained), jax.tree.leaves(kept)):
            np.testing.assert_array_equal(w, w_kept)
            assert w.unsafe_buffer_pointer() != w_kept.unsafe_buffer_pointer()


def test_make_evaluate_grid_gives_each_column_what_make_evaluate_gives_its_kept_weights():
    """All columns evaluated in one vmapped program = make_evaluate of each column's
    kept train state, with its model built from its own traced values (the
    scale-at-test dropout rate changes the test-time output; batch norm uses
    each column's running statistics)."""
    from functional_nn import layers, losses, optim
    from functional_nn.data import Split
    from functional_nn.train import kept_train_state, make_evaluate, make_evaluate_grid, run_grid

    def build(h):
        model = layers.serial(layers.dense(8), layers.batchnorm(), layers.relu,
                              layers.dropout(h["rate"], mode="scale_at_test"), layers.dense(3))
        return model, losses.softmax_cross_entropy, optim.sgd(0.1)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 4)).astype(np.float32), rng.integers(0, 3, 96)
    hparams = {"rate": np.array([0.0, 0.5], np.float32)}
    run = run_grid(build, hparams, Split(x[:64], y[:64]), Split(x[64:], y[64:]), batch_size=16, epochs=1, key=seed_keys([1, 2]))
    test_x, test_y = x[:40], y[:40]
    evaluate = make_evaluate_grid(build, chunk_size=16)
    got = evaluate(hparams, run, test_x, test_y)
    references = [make_evaluate(*build({"rate": float(rate)})[:2], chunk_size=16) for rate in hparams["rate"]]
    for column in range(run.size):
        want = references[column // 2](kept_train_state(run.carry, column), test_x, test_y)
        np.testing.assert_allclose(got["loss"][column], want["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["accuracy"][column], want["accuracy"], atol=1e-7)
    assert abs(got["loss"][0] - got["loss"][2]) > 1e-3  # the rate matters at test time: the check can fail
    with pytest.raises(ValueError, match="empty"):
        evaluate(hparams, run, test_x[:0], test_y[:0])
    with pytest.raises(ValueError, match="3 settings; the run trained 2"):
        evaluate({"rate": np.zeros(3, np.float32)}, run, test_x, test_y)
