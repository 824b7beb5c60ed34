"""Experiment 6: L2 regularization and early stopping, chosen by grid search on held-out data.

``configs/exp_regularization.yaml``: a 64-256-256-10 ReLU MLP on digits, SGD
with momentum and the coupled L2 penalty ½λΣ‖W_k‖² (gradient g + λW), a grid
of λ × learning rate (20 settings, all traced: one compiled program), each
setting early-stopped on its validation loss (patience 10, best epoch
restored). The setting with the lowest validation loss is selected and only
it is evaluated on the test split.

Claims (the notes): regularized training minimizes the loss "while also
minimizing the weights"; increasing λ "make[s] greater error on training data,
to obtain a more acceptable network"; "perform a grid search for hyper
parameters (learning rate, regularization parameter, …) on held-out data";
"evaluate periodically on validation data, for early stopping".

Verdict rules, fixed before running:
  (a) the setting selected on validation data has λ > 0;
  (b) at the selected learning rate, ‖W‖² of the restored weights decreases
      strictly as λ increases over the grid;
  (c) at the selected learning rate, the training loss (eval mode, restored
      weights) is higher at the largest λ than at λ = 0;
  (d) early stopping: at the selected learning rate, the λ = 0 run stopped
      before the epoch limit (its validation loss stopped improving).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402

from functional_nn.experiment.search import evaluate_setting, grid_search, setting_train_state  # noqa: E402
from functional_nn.experiment.plots import plot_heatmap  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_regularization.yaml"
NAME = "exp6_regularization"
SMOKE = _common.tiny_overrides((0, 2), {"optimizer.l2": [0.0, 0.01], "optimizer.learning_rate": [0.01, 0.1]})


def squared_weight_norm(params) -> float:
    """Σ_k ‖W_k‖² over the dense layers' weight matrices (biases excluded, as the penalty)."""
    return float(sum(np.sum(np.square(np.asarray(layer["w"]))) for layer in params if isinstance(layer, dict) and "w" in layer))


def plot(result, rows_at_lr: list, path: str) -> None:
    fig, (left, middle, right) = _common.panel_row(3)
    for row in rows_at_lr:
        epochs, values = _digits.curve(result, row["setting"], "val_loss")
        line, = left.plot(epochs, values, label=f"λ={row['λ']:g}")
        left.plot([row["best_epoch"]], [row["best_val_loss"]], "o", color=line.get_color())
    lambdas = [max(r["λ"], 1e-5) for r in rows_at_lr]
    middle.plot(lambdas, [r["‖W‖²"] for r in rows_at_lr], "o-")
    right.plot(lambdas, [r["train loss"] for r in rows_at_lr], "o-", label="training (eval mode)")
    right.plot(lambdas, [r["best_val_loss"] for r in rows_at_lr], "s-", label="validation")
    left.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="validation loss until early stopping (dot: best)")
    middle.set(xscale="log", yscale="log", xlabel="λ (0 drawn at 1e-5)", ylabel="‖W‖² of the restored weights")
    right.set(xscale="log", yscale="log", xlabel="λ (0 drawn at 1e-5)", ylabel="loss")
    title = f"L2 regularization at the selected learning rate η={result.settings[rows_at_lr[0]['setting']]['optimizer.learning_rate']:g}"
    _common.finish_panels(fig, (left, middle, right), title, path, legends=(left, right))


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    with _common.Timer() as timer:
        result = grid_search(config, data=data, progress=False)
    chosen = result.settings[result.best_index]
    lr = chosen["optimizer.learning_rate"]
    cache, rows_at_lr = {}, []
    for index, setting in enumerate(result.settings):
        if setting["optimizer.learning_rate"] != lr:
            continue
        row = result.rows[index]
        rows_at_lr.append({
            "setting": index,
            "λ": setting["optimizer.l2"],
            "best_val_loss": row["best_val_loss"],
            "best_epoch": row["best_epoch"],
            "epochs_run": row["epochs_run"],
            "status": row["status"],
            "‖W‖²": squared_weight_norm(setting_train_state(result, index).params),
            "train loss": evaluate_setting(result, config, index, data.train, cache=cache)["loss"],
        })
    rows_at_lr.sort(key=lambda r: r["λ"])
    plot(result, rows_at_lr, os.path.join(args.out, f"{NAME}.png"))
    plot_heatmap(result.rows, "optimizer.l2", "optimizer.learning_rate", "best_val_loss", os.path.join(args.out, f"{NAME}_grid.png"),
                 title="best validation loss (early stopped)", chosen=result.best_index)

    norms = [r["‖W‖²"] for r in rows_at_lr]
    first, last = rows_at_lr[0], rows_at_lr[-1]
    verdicts = [
        (chosen["optimizer.l2"] > 0, "Grid search on held-out data selects a regularized network (λ > 0)",
         f"selected λ={chosen['optimizer.l2']:g}, η={lr:g}, best validation loss {result.rows[result.best_index]['best_val_loss']:.4f}; "
         f"test: " + ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items())),
        (all(b < a for a, b in zip(norms, norms[1:])), "L2 regularization keeps the weights small (‖W‖² falls as λ grows)",
         "‖W‖² at η=" + f"{lr:g}: " + ", ".join(f"λ={r['λ']:g}: {r['‖W‖²']:.1f}" for r in rows_at_lr)),
        (last["train loss"] > first["train loss"], "Increasing λ makes a greater error on the training data",
         f"training loss λ=0: {first['train loss']:.4f}, λ={last['λ']:g}: {last['train loss']:.4f}"),
        (first["status"] == "stopped early", "Early stopping on validation data stops the unregularized run before the epoch limit",
         f"λ=0, η={lr:g}: {first['status']} after {first['epochs_run']} of {config.training.epochs} epochs, best epoch {first['best_epoch']}"),
    ]
    text = _common.header("Experiment 6: L2 regularization and early stopping", "exp6_regularization.py", CONFIG, timer.seconds, args.smoke)
    text += (f"{len(result.settings)} settings (λ × learning rate) in one compiled program, each early-stopped on its own validation loss "
             f"(patience {config.training.early_stopping.patience}, up to {config.training.epochs} epochs); selection on validation, the "
             "selected setting alone evaluated on test.\n\n")
    text += f"![grid]({NAME}_grid.png)\n\nAt the selected learning rate η={lr:g}:\n\n" + markdown_table(rows_at_lr) + f"\n![regularization]({NAME}.png)\n\n"
    text += "The whole grid:\n\n" + markdown_table(result.rows) + "\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
