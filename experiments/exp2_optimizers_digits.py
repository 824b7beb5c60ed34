"""Experiment 2: the optimizers on digits, each at its best learning rate.

A grid search (``configs/exp_optimizers_digits.yaml``) over optimizer ×
learning rate on the validation split: one compiled program per optimizer,
its 9 learning rates trained together. For each optimizer the learning rate
with the lowest validation loss is kept and its learning curves are drawn.

Claim (the notes): "Momentum and Nesterov's method improve convergence".
Verdict rule, fixed before running: the claim holds when momentum and Nesterov
(each at its best learning rate) both reach 95% validation accuracy in fewer
epochs than plain SGD at its best learning rate.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402

from functional_nn.experiment.search import grid_search  # noqa: E402
from functional_nn.experiment.search import evaluate_setting  # noqa: E402
from functional_nn.experiment.plots import plot_heatmap  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_optimizers_digits.yaml"
NAME = "exp2_optimizers_digits"
TARGET = 0.95
SMOKE = _common.tiny_overrides((0, 2), {"optimizer.name": ["momentum"], "optimizer.learning_rate": [0.01, 0.1]})


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    with _common.Timer() as timer:
        result = grid_search(config, data=data, progress=False)
    names = list(dict.fromkeys(s["optimizer.name"] for s in result.settings))
    cache, rows, series = {}, [], []
    for name in names:
        index = _digits.best_index_where(result, lambda s, name=name: s["optimizer.name"] == name)
        row = result.rows[index]
        test = evaluate_setting(result, config, index, data.test, cache=cache)
        rows.append({
            "optimizer": name,
            "best_lr": row["optimizer.learning_rate"],
            "best_val_loss": row["best_val_loss"],
            "best_epoch": row["best_epoch"],
            "val_accuracy@best": row["val_accuracy"],
            f"epochs_to_{TARGET:.0%}_val_acc": _digits.epochs_to_reach(result, index, "val_accuracy", TARGET),
            "test_accuracy": test["accuracy"],
        })
        series.append((f"{name} (η={row['optimizer.learning_rate']:g})", result, index, "-"))
    fig = _common.figure(15, 4.5)
    _digits.plot_curves(fig, series, ["train_loss", "val_loss", "val_accuracy"], title="digits: each optimizer at its best learning rate")
    fig.savefig(os.path.join(args.out, f"{NAME}.png"), dpi=90)
    plot_heatmap(result.rows, "optimizer.name", "optimizer.learning_rate", "best_val_loss", os.path.join(args.out, f"{NAME}_grid.png"), title="best validation loss", chosen=result.best_index)

    epochs = {name: math.inf for name in ("sgd", "momentum", "nesterov")}
    epochs.update({r["optimizer"]: r[f"epochs_to_{TARGET:.0%}_val_acc"] for r in rows})
    held = epochs["momentum"] < epochs["sgd"] and epochs["nesterov"] < epochs["sgd"]
    show = lambda e: "never" if math.isinf(e) else f"{e:g}"  # noqa: E731
    evidence = (f"epochs to {TARGET:.0%} validation accuracy at the best learning rate: SGD {show(epochs['sgd'])}, "
                f"momentum {show(epochs['momentum'])}, Nesterov {show(epochs['nesterov'])}")
    claim = "Momentum and Nesterov converge faster than plain SGD"
    text = _common.header("Experiment 2: optimizers on digits", "exp2_optimizers_digits.py", CONFIG, timer.seconds, args.smoke)
    text += (f"{len(result.settings)} settings ({len(result.groups)} compiled programs, one per optimizer), "
             f"{config.training.epochs} epochs each, no early stopping (the best epoch is restored). "
             "Best learning rate per optimizer by validation loss; test accuracy of that setting (reported, not used to select).\n\n")
    text += markdown_table(rows) + "\n"
    text += f"![learning curves]({NAME}.png)\n\nThe whole grid (best validation loss; red: overall selection): ![grid]({NAME}_grid.png)\n\n"
    _common.write_report(args.out, NAME, text, [(held, claim, evidence)], spacing="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
