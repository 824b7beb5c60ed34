"""Experiment 5: the divergence, L2 vs KL, for classification, 5 seeds.

``configs/exp_divergence.yaml``: a sigmoid MLP ending in a softmax, trained on
digits with plain SGD, once with the L2 divergence ½Σ(y−d)² and once with the
KL divergence Σ d log d − Σ d log y (the same network and output y; only the
divergence differs), each over 7 learning rates × 5 training seeds trained at
once. Each divergence's learning rate is the one with the highest seed mean of
the best validation accuracy (the two divergences have different scales).

Claim (the notes): "L2 is particularly appropriate when attempting to perform
regression"; "the KL divergence is better when the intent is classification".

Verdict rule, fixed before running (Δ: difference of seed means in the claimed
direction, sd: standard deviation over seeds): two comparisons, each at the
divergence's selected rate — (i) best validation accuracy, KL higher, and
(ii) epochs until validation accuracy first reaches 90% (never = epochs + 1),
KL fewer; each held if Δ > sd(A) + sd(B), did not hold if Δ < −(sd(A) + sd(B)),
inconclusive otherwise. The claim held when (ii) held and (i) did not fail
("at least as accurate"), did not hold when either did not hold, and is
inconclusive otherwise.
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402
import _seeds  # noqa: E402

from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_divergence.yaml"
NAME = "exp5_divergence"
TARGET = 0.90
LOSSES = ("kl_divergence", "l2_divergence")
SMOKE = _common.tiny_overrides((0, 2), {"loss.name": list(LOSSES), "optimizer.learning_rate": [1.0]})


def indices(result, loss: str) -> list:
    return [i for i, s in enumerate(result.settings) if s["loss.name"] == loss]


def judge(accuracy: _common.Verdict, speed: _common.Verdict) -> _common.Verdict:
    """Held: faster and not less accurate; did not hold: either comparison failed; else inconclusive."""
    outcomes = (accuracy.outcome, speed.outcome)
    if _common.NOT_HELD in outcomes:
        result = _common.NOT_HELD
    else:
        result = _common.HELD if speed.outcome == _common.HELD else _common.INCONCLUSIVE
    combined = _common.combine("The KL divergence suits classification better than L2", [accuracy, speed])
    return combined._replace(outcome=result)


def plot(result, best: dict, accuracy, path: str) -> None:
    fig, (left, middle, right) = _common.panel_row(3)
    val_accuracy, train_loss = _seeds.curves(result, "val_accuracy"), _seeds.curves(result, "train_loss")
    for loss, index in best.items():
        chosen = indices(result, loss)
        rates = [result.settings[i]["optimizer.learning_rate"] for i in chosen]
        left.errorbar(rates, accuracy[chosen].mean(axis=1), accuracy[chosen].std(axis=1, ddof=1), marker="o", capsize=2, label=loss)
        rate = result.settings[index]["optimizer.learning_rate"]
        _digits.band(middle, val_accuracy[index], f"{loss} (η={rate:g})")
        _digits.band(right, train_loss[index], loss)
    left.set(xscale="log", xlabel="learning rate", ylabel="best validation accuracy")
    middle.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1))
    right.set(xlabel="epoch", ylabel="training divergence (own scale)", yscale="log")
    _common.finish_panels(fig, (left, middle, right), "L2 vs KL divergence on the same softmax output (digits, SGD; mean ± sd over seeds)", path)


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    seeds = _common.seeds(args.smoke)
    with _common.Timer() as timer:
        result = _seeds.seeded_search(config, seeds, data=data)
        test_accuracy = _seeds.evaluate_all(result, data.test)["accuracy"]
    accuracy = _seeds.final(result, "best_value")  # monitor: val_accuracy
    epochs = _common.censored(_seeds.epochs_to_reach(result, "val_accuracy", TARGET), config.training.epochs)
    best = {loss: _digits.best_by_mean(accuracy, indices(result, loss), mode="max") for loss in LOSSES if indices(result, loss)}
    summary = [{"divergence": loss, "selected η": result.settings[i]["optimizer.learning_rate"], "best val accuracy": _common.pm(accuracy[i]),
                "best epoch": _common.pm(_seeds.final(result, "best_epoch")[i], 2), f"epochs to {TARGET:.0%}": _common.pm(epochs[i], 2),
                "test accuracy": _common.pm(test_accuracy[i])} for loss, i in best.items()]
    grid = [{"divergence": s["loss.name"], "η": s["optimizer.learning_rate"], "best val accuracy": _common.pm(accuracy[i]),
             f"epochs to {TARGET:.0%}": _common.pm(epochs[i], 2), "diverged seeds": int(_seeds.final(result, "diverged")[i].sum())}
            for i, s in enumerate(result.settings)]
    plot(result, best, accuracy, os.path.join(args.out, f"{NAME}.png"))
    kl, l2 = best["kl_divergence"], best["l2_divergence"]
    labels = (f"KL η={result.settings[kl]['optimizer.learning_rate']:g}", f"L2 η={result.settings[l2]['optimizer.learning_rate']:g}")
    verdict = judge(_common.compare("KL at least as accurate", accuracy[kl], accuracy[l2], larger=True, what="best validation accuracy", labels=labels),
                    _common.compare("KL faster", epochs[kl], epochs[l2], larger=False, what=f"epochs to {TARGET:.0%}", labels=labels, digits=2))
    text = _common.header("Experiment 5: L2 vs KL divergence", "exp5_divergence.py", CONFIG, timer.seconds, args.smoke, seeds)
    text += (f"{len(result.settings)} settings × {len(seeds)} seeds (one compiled program per divergence), {config.training.epochs} epochs of plain SGD; "
             "each divergence's learning rate by the seed mean of its best validation accuracy; test accuracy reported, not used to select.\n\n")
    text += markdown_table(summary) + f"\n![divergence]({NAME}.png)\n\nThe whole grid:\n\n" + markdown_table(grid) + "\n"
    _common.write_report(args.out, NAME, text, [verdict])
    return 0


if __name__ == "__main__":
    _common.run_script(main)
