"""Experiment 3: batch normalization, with and without, over a range of learning rates.

``configs/exp_batchnorm.yaml``: a 3-hidden-layer sigmoid MLP trained with plain
SGD on digits, the learning-rate grid trained at once; the same config with its
batchnorm layers removed is the baseline.

Claims (the notes): batch normalization "improves both convergence rate and
neural network performance"; "to get maximum benefit from BN, learning rates
must be increased"; on test data BN uses statistics "obtained from the final
converged network" (μ_BN = mean of the batch means, σ²_BN = B/(B−1) × mean of
the batch variances).

Verdict rules, fixed before running:
  (a) convergence: BN at its best learning rate reaches 90% validation accuracy
      in fewer epochs than no-BN at its best learning rate;
  (b) larger learning rates: the largest grid learning rate whose run reaches
      90% validation accuracy is larger with BN than without;
  (c) test-time statistics: test accuracy with statistics recomputed on the
      final network is at least that with cumulative statistics averaged over
      the whole training (EMA statistics reported too).
"""

from __future__ import annotations

import math
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402

from functional_nn.experiment import build_loss, build_model, config_to_dict, parse_config  # noqa: E402
from functional_nn.layers import recompute_statistics  # noqa: E402
from functional_nn.train import make_evaluate  # noqa: E402
from functional_nn.experiment.search import concrete_config, grid_search, setting_train_state  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_batchnorm.yaml"
NAME = "exp3_batchnorm"
TARGET = 0.90
SMOKE = _common.tiny_overrides((0, 3, 6), {"optimizer.learning_rate": [0.1, 1.0]})


def without_batchnorm(config):
    raw = config_to_dict(config)
    raw["model"]["layers"] = [layer for layer in raw["model"]["layers"] if layer["type"] != "batchnorm"]
    raw["name"] = config.name + "_without_batchnorm"
    return parse_config(raw)


def with_stats(config, stats: str):
    raw = config_to_dict(config)
    for layer in raw["model"]["layers"]:
        if layer["type"] == "batchnorm":
            layer["stats"] = stats
    raw.pop("search", None)
    return parse_config(raw)


def retrain_with_cumulative_statistics(best_config, data):
    """The selected setting trained again with the notes' cumulative rule for the
    running statistics. Training itself normalises with batch statistics, so the
    weights follow the same path; only the test-time statistics differ."""
    config = with_stats(best_config, "cumulative")
    result = grid_search(config, {"optimizer.learning_rate": [config.optimizer.learning_rate]}, data=data, progress=False)
    return result.best_train_state


def test_time_statistics(best_config, ema_state, data) -> dict:
    """Test accuracy of the selected BN network with three kinds of statistics."""
    cumulative_state = retrain_with_cumulative_statistics(best_config, data)
    model, loss = build_model(best_config.model), build_loss(best_config.loss)
    evaluate = make_evaluate(model, loss)
    batch = best_config.training.batch_size
    count = len(data.train.x) // batch
    batches = [data.train.x[i * batch:(i + 1) * batch] for i in range(count)]
    recomputed = recompute_statistics(model, ema_state.params, ema_state.model_state, batches)
    states = {
        "EMA (λ=0.9) during training": ema_state,
        "cumulative over all training batches": cumulative_state,
        "recomputed on the final network": ema_state._replace(model_state=recomputed),
    }
    return {label: evaluate(state, data.test.x, data.test.y) for label, state in states.items()}, _statistics_distance(states)


def _statistics_distance(states: dict) -> dict:
    """Mean |μ − μ_recomputed| over all BN units, per kind of statistics (how different they are)."""
    from functional_nn.layers import BatchNormState

    def means(state):
        return np.concatenate([np.ravel(s.mean) for s in jax.tree.leaves(state.model_state, is_leaf=lambda n: isinstance(n, BatchNormState)) if isinstance(s, BatchNormState)])

    reference = means(states["recomputed on the final network"])
    return {label: float(np.mean(np.abs(means(state) - reference))) for label, state in states.items()}


def largest_reaching(result, target: float) -> float:
    reached = [s["optimizer.learning_rate"] for i, s in enumerate(result.settings) if _digits.epochs_to_reach(result, i, "val_accuracy", target) < math.inf]
    return max(reached) if reached else 0.0


def plot(results: dict, path: str) -> None:
    fig, (left, middle, right) = _common.panel_row(3)
    for label, result in results.items():
        lrs = [s["optimizer.learning_rate"] for s in result.settings]
        left.plot(lrs, [r["best_val_loss"] for r in result.rows], "o-", label=label)
        middle.plot(lrs, [min(_digits.epochs_to_reach(result, i, "val_accuracy", TARGET), 99) for i in range(len(lrs))], "o-", label=label)
        best = _digits.best_index_where(result, lambda s: True)
        epochs, values = _digits.curve(result, best, "val_accuracy")
        right.plot(epochs, values, label=f"{label} (best η={lrs[best]:g})")
    left.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="best validation loss")
    middle.set(xscale="log", xlabel="learning rate", ylabel=f"epochs to {TARGET:.0%} val. accuracy (99 = never)")
    right.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1))
    _common.finish_panels(fig, (left, middle, right), "batch normalization: sigmoid MLP, plain SGD, digits", path)


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    with _common.Timer() as timer:
        results = {"with BN": grid_search(config, data=data, progress=False),
                   "without BN": grid_search(without_batchnorm(config), data=data, progress=False)}
        bn = results["with BN"]
        bn_best = _digits.best_index_where(bn, lambda s: True)
        statistics, distances = test_time_statistics(concrete_config(config, bn.settings[bn_best]), setting_train_state(bn, bn_best), data)
    rows = []
    for index, setting in enumerate(bn.settings):
        row = {"learning_rate": setting["optimizer.learning_rate"]}
        for label, result in results.items():
            row[f"{label}: best val loss"] = result.rows[index]["best_val_loss"]
            row[f"{label}: val acc@best"] = result.rows[index]["val_accuracy"]
            row[f"{label}: epochs to {TARGET:.0%}"] = _digits.epochs_to_reach(result, index, "val_accuracy", TARGET)
        rows.append(row)
    plot(results, os.path.join(args.out, f"{NAME}.png"))

    best = {label: _digits.best_index_where(result, lambda s: True) for label, result in results.items()}
    speed = {label: _digits.epochs_to_reach(results[label], best[label], "val_accuracy", TARGET) for label in results}
    best_lr = {label: results[label].settings[best[label]]["optimizer.learning_rate"] for label in results}
    largest = {label: largest_reaching(result, TARGET) for label, result in results.items()}
    verdicts = [
        (speed["with BN"] < speed["without BN"], "Batch norm improves the convergence rate",
         f"epochs to {TARGET:.0%} validation accuracy at the best learning rate: with BN {speed['with BN']:g} (η={best_lr['with BN']:g}), "
         f"without {speed['without BN']:g} (η={best_lr['without BN']:g})"),
        (largest["with BN"] > largest["without BN"], "Batch norm allows larger learning rates",
         f"largest learning rate reaching {TARGET:.0%} validation accuracy: with BN {largest['with BN']:g}, without {largest['without BN']:g}; "
         f"best learning rate: with BN {best_lr['with BN']:g}, without {best_lr['without BN']:g}"),
        (statistics["recomputed on the final network"]["accuracy"] >= statistics["cumulative over all training batches"]["accuracy"],
         "Test-time statistics from the final converged network are at least as good as the average over all of training",
         "test accuracy: " + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in statistics.items())),
    ]
    text = _common.header("Experiment 3: batch normalization", "exp3_batchnorm.py", CONFIG, timer.seconds, args.smoke)
    text += (f"Same network, data and seed with and without its batchnorm layers; {len(bn.settings)} learning rates trained at "
             f"once per variant, {config.training.epochs} epochs, plain SGD, sigmoid units.\n\n")
    text += markdown_table(rows) + "\n" + f"![batch norm]({NAME}.png)\n\n"
    text += "Test accuracy of the selected BN network (its best-epoch weights) with three kinds of test-time statistics:\n\n"
    text += markdown_table([{"statistics": k, "test accuracy": v["accuracy"], "test loss": v["loss"], "mean |μ − μ_recomputed|": distances[k]}
                            for k, v in statistics.items()]) + "\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
