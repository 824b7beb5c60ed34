"""Experiment 5: the divergence, L2 vs KL, for classification.

``configs/exp_divergence.yaml``: a sigmoid MLP ending in a softmax, trained on
digits with plain SGD, once with the L2 divergence ½Σ(y−d)² and once with the
KL divergence Σ d log d − Σ d log y (the same network and output y; only the
divergence differs), each over a grid of learning rates trained at once.
Selection is by validation accuracy, since the two divergences have different
scales.

Claim (the notes): "L2 is particularly appropriate when attempting to perform
regression"; "the KL divergence is better when the intent is classification".

Verdict rule, fixed before running: the claim holds when, each at its best
learning rate, KL reaches a validation accuracy at least as high as L2 AND
reaches 90% validation accuracy in fewer epochs than L2.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402

from functional_nn.experiment.search import evaluate_setting, grid_search  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_divergence.yaml"
NAME = "exp5_divergence"
TARGET = 0.90
LOSSES = ("kl_divergence", "l2_divergence")
SMOKE = _common.tiny_overrides((0, 2), {"loss.name": ["kl_divergence"], "optimizer.learning_rate": [0.1, 1.0]})


def plot(result, best: dict, path: str) -> None:
    fig, (left, middle, right) = _common.panel_row(3)
    for loss in best:
        indices = [i for i, s in enumerate(result.settings) if s["loss.name"] == loss]
        lrs = [result.settings[i]["optimizer.learning_rate"] for i in indices]
        left.plot(lrs, [result.rows[i]["best_val_accuracy"] for i in indices], "o-", label=loss)
        epochs, accuracy = _digits.curve(result, best[loss], "val_accuracy")
        middle.plot(epochs, accuracy, label=f"{loss} (η={result.settings[best[loss]]['optimizer.learning_rate']:g})")
        epochs, train_loss = _digits.curve(result, best[loss], "train_loss")
        right.plot(epochs, train_loss, label=loss)
    left.set(xscale="log", xlabel="learning rate", ylabel="best validation accuracy")
    middle.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1))
    right.set(xlabel="epoch", ylabel="training divergence (own scale)", yscale="log")
    _common.finish_panels(fig, (left, middle, right), "L2 vs KL divergence on the same softmax output (digits, SGD)", path)


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    with _common.Timer() as timer:
        result = grid_search(config, data=data, progress=False)
    present = [loss for loss in LOSSES if any(s["loss.name"] == loss for s in result.settings)]
    best = {loss: _digits.best_index_where(result, lambda s, loss=loss: s["loss.name"] == loss) for loss in present}
    cache, summary = {}, []
    for loss, index in best.items():
        summary.append({
            "divergence": loss,
            "best_lr": result.settings[index]["optimizer.learning_rate"],
            "best_val_accuracy": result.rows[index]["best_val_accuracy"],
            "best_epoch": result.rows[index]["best_epoch"],
            f"epochs_to_{TARGET:.0%}": _digits.epochs_to_reach(result, index, "val_accuracy", TARGET),
            "test_accuracy": evaluate_setting(result, config, index, data.test, cache=cache)["accuracy"],
        })
    plot(result, best, os.path.join(args.out, f"{NAME}.png"))
    missing = {"best_lr": math.nan, "best_val_accuracy": math.nan, f"epochs_to_{TARGET:.0%}": math.inf}
    kl, l2 = ({**missing, **next((r for r in summary if r["divergence"] == loss), {})} for loss in LOSSES)
    held = kl["best_val_accuracy"] >= l2["best_val_accuracy"] and kl[f"epochs_to_{TARGET:.0%}"] < l2[f"epochs_to_{TARGET:.0%}"]
    evidence = (f"best validation accuracy KL {kl['best_val_accuracy']:.4f} (η={kl['best_lr']:g}) vs L2 {l2['best_val_accuracy']:.4f} "
                f"(η={l2['best_lr']:g}); epochs to {TARGET:.0%}: KL {kl[f'epochs_to_{TARGET:.0%}']:g}, L2 {l2[f'epochs_to_{TARGET:.0%}']:g}")
    claim = "The KL divergence suits classification better than L2"
    grid_rows = [{k: v for k, v in r.items() if k in ("loss.name", "optimizer.learning_rate", "best_val_accuracy", "best_epoch", "val_loss", "train_loss", "status")}
                 for r in result.rows]
    text = _common.header("Experiment 5: L2 vs KL divergence", "exp5_divergence.py", CONFIG, timer.seconds, args.smoke)
    text += (f"{len(result.settings)} settings (one compiled program per divergence), {config.training.epochs} epochs of plain SGD; "
             "each divergence's best learning rate by validation accuracy; test accuracy reported, not used to select.\n\n")
    text += markdown_table(summary) + f"\n![divergence]({NAME}.png)\n\nThe whole grid (`val_loss`, `train_loss` in each divergence's own units):\n\n"
    text += markdown_table(grid_rows) + "\n"
    _common.write_report(args.out, NAME, text, [(held, claim, evidence)], spacing="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
