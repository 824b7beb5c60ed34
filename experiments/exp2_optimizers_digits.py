"""Experiment 2: the optimizers on digits, compared on convergence speed with 5 seeds.

``configs/exp_optimizers_digits.yaml``: a 64-128-128-10 ReLU MLP, 30 epochs,
8 optimizers × 7 learning rates × 5 training seeds (one compiled program per
optimizer: its learning rates × seeds train together).

Claim (the notes): "Momentum and Nesterov's method improve convergence".

Speed criterion, fixed before running: epochs until the validation accuracy
first reaches 95% (a seed that never reaches it counts as 31 = epochs + 1).
Each optimizer is compared at its *fastest* learning rate by that criterion
itself: the rate with the smallest seed mean of epochs-to-95%.

Verdict rules, fixed before running (Δ: difference of seed means in the
claimed direction; sd: standard deviation over the 5 seeds):
  (a) at each one's fastest rate, momentum and Nesterov each need fewer epochs
      than SGD: each comparison held if Δ > sd(A) + sd(B), did not hold if
      Δ < −(sd(A) + sd(B)), inconclusive otherwise; the claim held if both
      held, did not hold if either did not, inconclusive otherwise;
  (b) the same at matched effective step η/(1−μ): SGD at its fastest rate η
      against momentum and Nesterov at η(1−μ) (μ = 0.9; if η(1−μ) is not on the
      grid, SGD's fastest rate among those whose match is).
A second table keeps the final-loss comparison (each optimizer at the rate
with the lowest mean best validation loss); it carries no verdict.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402
import _seeds  # noqa: E402

from functional_nn.experiment.search_report import markdown_table  # noqa: E402
from functional_nn.experiment.sections import alias_hyperparameters  # noqa: E402

CONFIG = "exp_optimizers_digits.yaml"
NAME = "exp2_optimizers_digits"
TARGET = 0.95
MOMENTUM_FAMILY = ("momentum", "nesterov")
SMOKE = _common.tiny_overrides((0, 2), {"optimizer.name": ["sgd", "momentum"], "optimizer.learning_rate": [0.01, 0.1]})


def group_indices(result, name: str) -> list:
    return [i for i, s in enumerate(result.settings) if s["optimizer.name"] == name]


def learning_rate(result, index: int) -> float:
    return result.settings[index]["optimizer.learning_rate"]


def matched_index(result, name: str, rate: float):
    """The setting of optimizer ``name`` at learning rate ``rate`` (relative tolerance 1e-6), or None."""
    return next((i for i in group_indices(result, name) if np.isclose(learning_rate(result, i), rate, rtol=1e-6)), None)


def speed_rows(result, names, epochs, best_loss) -> tuple:
    """(fastest setting per optimizer, table rows)."""
    fastest, rows = {}, []
    for name in names:
        index = _digits.best_by_mean(epochs, group_indices(result, name))
        fastest[name] = index
        rows.append({"optimizer": name, "fastest η": learning_rate(result, index),
                     f"epochs to {TARGET:.0%} val acc": _common.pm(epochs[index], 2),
                     "seeds reaching it": f"{int(np.sum(epochs[index] <= result.config.training.epochs))}/{len(result.seeds)}",
                     "best val loss": _common.pm(best_loss[index])})
    return fastest, rows


def loss_rows(result, names, epochs, best_loss, test_accuracy) -> list:
    rows = []
    for name in names:
        index = _digits.best_by_mean(best_loss, group_indices(result, name))
        rows.append({"optimizer": name, "η (lowest mean val loss)": learning_rate(result, index), "best val loss": _common.pm(best_loss[index]),
                     f"epochs to {TARGET:.0%}": _common.pm(epochs[index], 2), "test accuracy": _common.pm(test_accuracy[index])})
    return rows


def matched_rows(result, epochs, mu: float) -> list:
    """Epochs-to-target of SGD at η and the momentum family at η(1−μ), for every η with a match."""
    rows = []
    for index in group_indices(result, "sgd"):
        eta = learning_rate(result, index)
        row = {"effective step η/(1−μ)": eta, "sgd (η)": _common.pm(epochs[index], 2)}
        for name in MOMENTUM_FAMILY:
            match = matched_index(result, name, eta * (1 - mu))
            row[f"{name} (η(1−μ))"] = "n/a" if match is None else _common.pm(epochs[match], 2)
        rows.append(row)
    return rows


def matched_verdict(result, epochs, fastest_sgd: int, mu: float) -> _common.Verdict:
    claim = "At matched effective step η/(1−μ), momentum and Nesterov converge faster than SGD"
    with_match = [i for i in group_indices(result, "sgd") if all(matched_index(result, n, learning_rate(result, i) * (1 - mu)) is not None for n in MOMENTUM_FAMILY)]
    if not with_match:
        return _common.Verdict(claim, _common.INCONCLUSIVE, "n/a", "n/a", "no SGD rate has a momentum match on the grid")
    sgd = fastest_sgd if fastest_sgd in with_match else _digits.best_by_mean(epochs, with_match)
    eta = learning_rate(result, sgd)
    parts = [_common.compare(f"{name} faster", epochs[matched_index(result, name, eta * (1 - mu))], epochs[sgd], larger=False,
                             what=f"epochs to {TARGET:.0%}, effective step {eta:g}", labels=(f"{name} η={eta * (1 - mu):g}", f"SGD η={eta:g}"), digits=2)
             for name in MOMENTUM_FAMILY]
    return _common.combine(claim, parts)


def plot_speed(result, names, epochs, mu: float, path: str) -> None:
    fig = _common.figure(13, 4.5)
    left, right = fig.subplots(1, 2)
    for name in names:
        indices = group_indices(result, name)
        rates = np.array([learning_rate(result, i) for i in indices])
        means, sds = epochs[indices].mean(axis=1), epochs[indices].std(axis=1, ddof=1)
        left.errorbar(rates, means, sds, marker="o", capsize=2, label=name)
        if name in ("sgd",) + MOMENTUM_FAMILY:
            right.errorbar(rates / (1 - mu) if name in MOMENTUM_FAMILY else rates, means, sds, marker="o", capsize=2, label=name)
    limit = result.config.training.epochs + 1
    left.set(xscale="log", xlabel="learning rate η", ylabel=f"epochs to {TARGET:.0%} val. accuracy ({limit} = never)")
    right.set(xscale="log", xlabel="effective step: η (SGD), η/(1−μ) (momentum, Nesterov)", ylabel=f"epochs to {TARGET:.0%} ({limit} = never)")
    _common.finish_panels(fig, (left, right), f"speed over the learning-rate grid (mean ± sd over {len(result.seeds)} seeds)", path)


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    seeds = _common.seeds(args.smoke)
    mu = alias_hyperparameters("momentum")["momentum"]
    with _common.Timer() as timer:
        result = _seeds.seeded_search(config, seeds, data=data)
        test_accuracy = _seeds.evaluate_all(result, data.test)["accuracy"]
    names = list(dict.fromkeys(s["optimizer.name"] for s in result.settings))
    epochs = _common.censored(_seeds.epochs_to_reach(result, "val_accuracy", TARGET), config.training.epochs)
    best_loss = _seeds.final(result, "best_value")
    fastest, rows = speed_rows(result, names, epochs, best_loss)

    curves = {metric: _seeds.curves(result, metric) for metric in ("train_loss", "val_loss", "val_accuracy")}
    series = [(f"{name} (η={learning_rate(result, i):g})", {m: c[i] for m, c in curves.items()}) for name, i in fastest.items()]
    fig = _common.figure(15, 4.5)
    _digits.plot_band_curves(fig, series, ["train_loss", "val_loss", "val_accuracy"], title="digits: each optimizer at its fastest learning rate (mean ± sd over seeds)")
    fig.savefig(os.path.join(args.out, f"{NAME}.png"), dpi=_common.DPI)
    plot_speed(result, names, epochs, mu, os.path.join(args.out, f"{NAME}_grid.png"))

    speed = [_common.compare(f"{name} faster", epochs[fastest[name]], epochs[fastest["sgd"]], larger=False, what=f"epochs to {TARGET:.0%} at the fastest rate",
                             labels=(f"{name} η={learning_rate(result, fastest[name]):g}", f"SGD η={learning_rate(result, fastest['sgd']):g}"), digits=2)
             for name in MOMENTUM_FAMILY if name in fastest]
    verdicts = [_common.combine("Momentum and Nesterov converge faster than plain SGD (each at its fastest learning rate)", speed),
                matched_verdict(result, epochs, fastest["sgd"], mu)]
    text = _common.header("Experiment 2: optimizers on digits", "exp2_optimizers_digits.py", CONFIG, timer.seconds, args.smoke, seeds)
    text += (f"{len(result.settings)} settings × {len(seeds)} seeds ({len(result.groups)} compiled programs, one per optimizer), "
             f"{config.training.epochs} epochs each, no early stopping. Speed: epochs until validation accuracy first reaches {TARGET:.0%} "
             f"({config.training.epochs + 1} = never).\n\n")
    text += "## Speed, each optimizer at its fastest learning rate (by the speed criterion)\n\n" + markdown_table(rows) + "\n"
    text += f"![learning curves]({NAME}.png)\n\n"
    text += f"## Speed at matched effective step η/(1−μ), μ = {mu:g}\n\n" + markdown_table(matched_rows(result, epochs, mu)) + "\n"
    text += f"![speed over the grid]({NAME}_grid.png)\n\n"
    text += ("## Final loss, each optimizer at its lowest mean best validation loss (no verdict)\n\n"
             "Test accuracy of the best-epoch weights, reported, not used to select.\n\n")
    text += markdown_table(loss_rows(result, names, epochs, best_loss, test_accuracy)) + "\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    _common.run_script(main)
