"""Experiment 3: batch normalization, with and without, over a range of learning rates, 5 seeds.

``configs/exp_batchnorm.yaml``: a 3-hidden-layer sigmoid MLP trained with plain
SGD on digits (30 epochs); ``configs/exp_batchnorm_cnn.yaml``: a small ReLU CNN
(conv 3×3 with 8 channels, max-pool, dense; 15 epochs). Each is trained with
its batchnorm layers and with them removed, over 8 learning rates × 5 training
seeds (one compiled program per variant).

Claims (the notes): batch normalization "improves both convergence rate and
neural network performance"; "to get maximum benefit from BN, learning rates
must be increased"; on test data BN uses statistics "obtained from the final
converged network" (μ_BN = mean of the batch means, σ²_BN = B/(B−1) × mean of
the batch variances).

Verdict rules, fixed before running (Δ: difference of seed means in the claimed
direction, sd: standard deviation over seeds; held if Δ > sd(A) + sd(B), did
not hold if Δ < −(sd(A) + sd(B)), inconclusive otherwise):
  (a) convergence: epochs until validation accuracy first reaches 90% (never =
      epochs + 1), each variant at its fastest learning rate by that criterion:
      fewer with BN, for the MLP and for the CNN (held if both held, did not
      hold if either did not);
  (b) larger learning rates: a learning rate *trains stably* when every seed
      reaches 90% validation accuracy without diverging; the claim held for an
      architecture when the largest stable rate is larger with BN, did not hold
      when it is smaller, inconclusive when equal (or none is stable); overall
      as in (a);
  (c) test-time statistics (the MLP with BN at its learning rate with the lowest
      mean best validation loss): test accuracy with statistics recomputed on
      the final network is higher than with the cumulative statistics averaged
      over the whole training (EMA statistics reported too).
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
import _seeds  # noqa: E402

from functional_nn.experiment import build_data, build_loss, build_model, config_to_dict, parse_config  # noqa: E402
from functional_nn.experiment.search import concrete_config  # noqa: E402
from functional_nn.train import make_evaluate  # noqa: E402
from functional_nn.layers import BatchNormState, recompute_statistics  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIGS = {"MLP": "exp_batchnorm.yaml", "CNN": "exp_batchnorm_cnn.yaml"}
NAME = "exp3_batchnorm"
TARGET = 0.90
SMOKE = {"MLP": _common.tiny_overrides((0, 3, 6), {"optimizer.learning_rate": [0.1, 1.0]}),
         "CNN": [("training.epochs", 1), ("model.layers.1.out_channels", 2), ("search", {"optimizer.learning_rate": [0.1, 1.0]})]}


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
    return parse_config(raw)


def learning_rates(result) -> np.ndarray:
    return np.array([s["optimizer.learning_rate"] for s in result.settings])


def stable(result, epochs) -> np.ndarray:
    """(S,) True where every seed reached the target and none diverged."""
    return np.all(epochs <= result.config.training.epochs, axis=1) & ~np.any(_seeds.final(result, "diverged"), axis=1)


def largest_stable(result, epochs) -> float:
    rates = learning_rates(result)[stable(result, epochs)]
    return float(rates.max()) if len(rates) else math.nan


def rate_verdict(architecture: str, largest: dict, seeds: int) -> _common.Verdict:
    with_bn, without = largest["with BN"], largest["without BN"]
    evidence = f"{architecture}: largest learning rate stable in all {seeds} seeds with BN {with_bn:g}, without {without:g}"
    if math.isnan(with_bn) or math.isnan(without) or with_bn == without:
        result = _common.INCONCLUSIVE
    else:
        result = _common.HELD if with_bn > without else _common.NOT_HELD
    effect = "n/a" if math.isnan(with_bn) or math.isnan(without) else f"×{with_bn / without:.3g}"
    return _common.Verdict(f"{architecture} larger", result, effect, "stable in all seeds", evidence)


def test_time_statistics(result, index: int, data, seeds) -> tuple:
    """(S=3 kinds, N) test accuracies and mean abs(μ − μ_recomputed) of the selected BN network: EMA statistics,
    the cumulative rule over all training batches (a second run with ``stats: cumulative``, same seeds: the
    weights follow the same path, only the statistics differ), and statistics recomputed on the final network."""
    config = concrete_config(result.config, result.settings[index])
    rate = result.settings[index]["optimizer.learning_rate"]
    cumulative = _seeds.seeded_search(with_stats(config, "cumulative"), seeds, {"optimizer.learning_rate": [rate]}, data=data)
    model = build_model(config.model)
    batch = config.training.batch_size
    batches = [data.train.x[i * batch:(i + 1) * batch] for i in range(len(data.train.x) // batch)]
    evaluate = make_evaluate(model, build_loss(config.loss))
    accuracy, distance = {}, {}
    for n in range(len(seeds)):
        ema = _seeds.train_state(result, index, n)
        states = {"EMA (decay 0.9) during training": ema,
                  "cumulative over all training batches": _seeds.train_state(cumulative, 0, n),
                  "recomputed on the final network": ema._replace(model_state=recompute_statistics(model, ema.params, ema.model_state, batches))}
        for label, state in states.items():
            accuracy.setdefault(label, []).append(evaluate(state, data.test.x, data.test.y)["accuracy"])
            distance.setdefault(label, []).append(np.mean(np.abs(running_means(state) - running_means(states["recomputed on the final network"]))))
    return accuracy, distance


def running_means(state) -> np.ndarray:
    """Every batch norm's running mean μ_BN, concatenated."""
    leaves = jax.tree.leaves(state.model_state, is_leaf=lambda n: isinstance(n, BatchNormState))
    return np.concatenate([np.ravel(s.mean) for s in leaves if isinstance(s, BatchNormState)])


def plot(results: dict, epochs: dict, path: str) -> None:
    fig = _common.figure(15, 8)
    for row, architecture in zip(fig.subplots(2, 3), CONFIGS):
        left, middle, right = row
        for variant in ("with BN", "without BN"):
            result, steps = results[architecture][variant], epochs[architecture][variant]
            rates = learning_rates(result)
            accuracy = _seeds.curves(result, "val_accuracy")
            final_accuracy = np.nanmax(accuracy, axis=-1)
            left.errorbar(rates, final_accuracy.mean(axis=1), final_accuracy.std(axis=1, ddof=1), marker="o", capsize=2, label=variant)
            middle.errorbar(rates, steps.mean(axis=1), steps.std(axis=1, ddof=1), marker="o", capsize=2, label=variant)
            fastest = _digits.best_by_mean(steps)
            _digits.band(right, accuracy[fastest], f"{variant} (fastest η={rates[fastest]:g})")
        limit = result.config.training.epochs + 1
        left.set(xscale="log", xlabel="learning rate", ylabel="best validation accuracy", title=architecture, ylim=(0, 1))
        middle.set(xscale="log", xlabel="learning rate", ylabel=f"epochs to {TARGET:.0%} val. acc. ({limit} = never)", title=architecture)
        right.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1), title=architecture)
        for axes in row:
            axes.grid(alpha=0.3)
            axes.legend(fontsize=7)
    fig.suptitle("batch normalization, plain SGD, digits (mean ± sd over seeds)")
    fig.savefig(path, dpi=_common.DPI)


def table(results: dict, epochs: dict) -> list:
    rows = []
    for architecture, variants in results.items():
        for index, rate in enumerate(learning_rates(variants["with BN"])):
            row = {"model": architecture, "learning rate": rate}
            for variant, result in variants.items():
                steps = epochs[architecture][variant][index]
                row[f"{variant}: best val loss"] = _common.pm(_seeds.final(result, "best_value")[index])
                row[f"{variant}: epochs to {TARGET:.0%}"] = _common.pm(steps, 2)
                row[f"{variant}: stable"] = "yes" if stable(result, epochs[architecture][variant])[index] else "no"
            rows.append(row)
    return rows


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    seeds = _common.seeds(args.smoke)
    configs = {a: _common.load(name, smoke_overrides=SMOKE[a], smoke=args.smoke) for a, name in CONFIGS.items()}
    data = build_data(configs["MLP"].data)
    with _common.Timer() as timer:
        results = {a: {"with BN": _seeds.seeded_search(c, seeds, data=data), "without BN": _seeds.seeded_search(without_batchnorm(c), seeds, data=data)}
                   for a, c in configs.items()}
        mlp = results["MLP"]["with BN"]
        selected = _digits.best_by_mean(_seeds.final(mlp, "best_value"))
        accuracy, distance = test_time_statistics(mlp, selected, data, seeds)
    epochs = {a: {v: _common.censored(_seeds.epochs_to_reach(r, "val_accuracy", TARGET), r.config.training.epochs) for v, r in variants.items()}
              for a, variants in results.items()}
    plot(results, epochs, os.path.join(args.out, f"{NAME}.png"))

    speed, rates = [], []
    for architecture, variants in epochs.items():
        fastest = {v: _digits.best_by_mean(steps) for v, steps in variants.items()}
        labels = tuple(f"{v} η={learning_rates(results[architecture][v])[fastest[v]]:g}" for v in variants)
        speed.append(_common.compare(f"{architecture} faster", variants["with BN"][fastest["with BN"]], variants["without BN"][fastest["without BN"]],
                                     larger=False, what=f"{architecture} epochs to {TARGET:.0%}", labels=labels, digits=2))
        rates.append(rate_verdict(architecture, {v: largest_stable(results[architecture][v], steps) for v, steps in variants.items()}, len(seeds)))
    labels = ("recomputed", "cumulative")
    verdicts = [
        _common.combine("Batch norm improves the convergence rate (each variant at its fastest learning rate)", speed),
        _common.combine("Batch norm allows larger learning rates (largest rate that trains stably in all seeds)", rates),
        _common.compare("Test-time statistics recomputed on the final converged network beat the average over all of training",
                        accuracy["recomputed on the final network"], accuracy["cumulative over all training batches"], larger=True,
                        what=f"MLP test accuracy at η={mlp.settings[selected]['optimizer.learning_rate']:g}", labels=labels),
    ]
    text = _common.header("Experiment 3: batch normalization", "exp3_batchnorm.py", list(CONFIGS.values()), timer.seconds, args.smoke, seeds)
    text += (f"Same network, data and seeds with and without the batchnorm layers; {len(mlp.settings)} learning rates × {len(seeds)} seeds "
             f"trained at once per variant, plain SGD; MLP {configs['MLP'].training.epochs} epochs (sigmoid), CNN {configs['CNN'].training.epochs} epochs (ReLU). "
             f"*Stable*: every seed reaches {TARGET:.0%} validation accuracy without diverging.\n\n")
    text += markdown_table(table(results, epochs)) + "\n" + f"![batch norm]({NAME}.png)\n\n"
    text += "Test accuracy of the selected MLP-with-BN network (best-epoch weights) with three kinds of test-time statistics:\n\n"
    text += markdown_table([{"statistics": k, "test accuracy": _common.pm(v), "mean abs(μ − μ_recomputed)": _common.pm(distance[k])} for k, v in accuracy.items()]) + "\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    _common.run_script(main)
