"""Experiment 6: L2 regularization and early stopping, chosen by grid search on held-out data, 5 seeds.

``configs/exp_regularization.yaml``: a 64-256-256-10 ReLU MLP on digits, SGD
with momentum and the coupled L2 penalty ½λΣ‖W_k‖² (gradient g + λW), a grid
of 5 λ × 3 learning rates × 5 training seeds (all traced: one compiled
program), each column early-stopped on its own validation loss (patience 10,
best epoch restored). The setting with the lowest seed mean of the best
validation loss is selected (held-out grid search); only it is reported on test.

Claims (the notes): regularized training minimizes the loss "while also
minimizing the weights"; increasing λ "make[s] greater error on training data,
to obtain a more acceptable network"; "perform a grid search for hyper
parameters (learning rate, regularization parameter, …) on held-out data";
"evaluate periodically on validation data, for early stopping".

Verdict rules, fixed before running (Δ: difference of seed means in the claimed
direction, sd: standard deviation over seeds; each comparison held if
Δ > sd(A) + sd(B), did not hold if Δ < −(sd(A) + sd(B)), inconclusive
otherwise; a claim of several comparisons held if all held, did not hold if any
did not):
  (a) held-out grid search prefers a regularized network: the best λ > 0
      setting has a lower best validation loss than the best λ = 0 setting
      (each the lowest mean over its learning rates);
  (b) at the selected learning rate, ‖W‖² of the restored weights falls with λ:
      each step up the λ grid, ‖W‖² is smaller;
  (c) at the selected learning rate, the training loss (eval mode, restored
      weights) is higher at the largest λ than at λ = 0;
  (d) early stopping: at the selected learning rate, the λ = 0 run stops before
      the epoch limit (Δ = limit − epochs run).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402
import _seeds  # noqa: E402

from functional_nn.experiment.plots import plot_heatmap  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_regularization.yaml"
NAME = "exp6_regularization"
SMOKE = _common.tiny_overrides((0, 2), {"optimizer.l2": [0.0, 0.01], "optimizer.learning_rate": [0.1]})


def squared_weight_norm(params) -> float:
    """Σ_k ‖W_k‖² over the dense layers' weight matrices (biases excluded, as the penalty)."""
    return float(sum(np.sum(np.square(np.asarray(layer["w"]))) for layer in params if isinstance(layer, dict) and "w" in layer))


def plot(result, at_rate: list, val_loss, norms, train_loss, path: str) -> None:
    fig, (left, middle, right) = _common.panel_row(3)
    curves = _seeds.curves(result, "val_loss")
    lambdas = [result.settings[i]["optimizer.l2"] for i in at_rate]
    drawn = [max(lam, 1e-5) for lam in lambdas]
    for index, lam in zip(at_rate, lambdas):
        _digits.band(left, curves[index], f"λ={lam:g}")
    middle.errorbar(drawn, norms.mean(axis=1), norms.std(axis=1, ddof=1), marker="o", capsize=2)
    right.errorbar(drawn, train_loss.mean(axis=1), train_loss.std(axis=1, ddof=1), marker="o", capsize=2, label="training (eval mode)")
    right.errorbar(drawn, val_loss[at_rate].mean(axis=1), val_loss[at_rate].std(axis=1, ddof=1), marker="s", capsize=2, label="validation (best)")
    left.set(xlabel="epoch", ylabel="validation loss (until each seed stopped)", yscale="log")
    middle.set(xscale="log", yscale="log", xlabel="λ (0 drawn at 1e-5)", ylabel="‖W‖² of the restored weights")
    right.set(xscale="log", yscale="log", xlabel="λ (0 drawn at 1e-5)", ylabel="loss")
    rate = result.settings[at_rate[0]]["optimizer.learning_rate"]
    _common.finish_panels(fig, (left, middle, right), f"L2 regularization at the selected learning rate η={rate:g} (mean ± sd over seeds)", path, legends=(left, right))


def main(argv=None) -> int:
    args, config, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    seeds = _common.seeds(args.smoke)
    with _common.Timer() as timer:
        result = _seeds.seeded_search(config, seeds, data=data)
    val_loss = _seeds.final(result, "best_value")
    epochs_run = _seeds.final(result, "epochs_run")
    selected = _digits.best_by_mean(val_loss)
    rate = result.settings[selected]["optimizer.learning_rate"]
    at_rate = sorted((i for i, s in enumerate(result.settings) if s["optimizer.learning_rate"] == rate), key=lambda i: result.settings[i]["optimizer.l2"])
    norms = np.array([[squared_weight_norm(_seeds.train_state(result, i, n).params) for n in range(len(seeds))] for i in at_rate])
    train_loss = _seeds.evaluate_all(result, data.train)["loss"][at_rate]
    test = _seeds.evaluate_all(result, data.test)["accuracy"][selected]  # only the selected setting's is reported
    plot(result, at_rate, val_loss, norms, train_loss, os.path.join(args.out, f"{NAME}.png"))
    means = [{"optimizer.l2": s["optimizer.l2"], "optimizer.learning_rate": s["optimizer.learning_rate"], "mean best val loss": float(val_loss[i].mean())}
             for i, s in enumerate(result.settings)]
    plot_heatmap(means, "optimizer.l2", "optimizer.learning_rate", "mean best val loss", os.path.join(args.out, f"{NAME}_grid.png"),
                 title=f"best validation loss, mean over {len(seeds)} seeds (early stopped)", chosen=selected)

    lam = [result.settings[i]["optimizer.l2"] for i in at_rate]
    unregularized = [i for i, s in enumerate(result.settings) if s["optimizer.l2"] == 0]
    regularized = [i for i, s in enumerate(result.settings) if s["optimizer.l2"] > 0]
    best_zero, best_positive = _digits.best_by_mean(val_loss, unregularized), _digits.best_by_mean(val_loss, regularized)
    describe = lambda i: f"λ={result.settings[i]['optimizer.l2']:g} η={result.settings[i]['optimizer.learning_rate']:g}"  # noqa: E731
    limit = np.full(len(seeds), float(config.training.epochs))
    verdicts = [
        _common.compare("Grid search on held-out data prefers a regularized network (λ > 0)", val_loss[best_zero], val_loss[best_positive], larger=True,
                        what="best validation loss", labels=(f"best λ = 0 ({describe(best_zero)})", f"best λ > 0 ({describe(best_positive)})")),
        _common.combine("L2 regularization keeps the weights small (‖W‖² falls as λ grows)",
                        [_common.compare(f"λ {a:g}→{b:g}", norms[k], norms[k + 1], larger=True, what=f"‖W‖² at η={rate:g}", labels=(f"λ={a:g}", f"λ={b:g}"))
                         for k, (a, b) in enumerate(zip(lam, lam[1:]))]),
        _common.compare("Increasing λ makes a greater error on the training data", train_loss[-1], train_loss[0], larger=True,
                        what=f"training loss at η={rate:g}", labels=(f"λ={lam[-1]:g}", "λ=0")),
        _common.compare("Early stopping on validation data stops the unregularized run before the epoch limit", limit, epochs_run[at_rate[0]], larger=True,
                        what=f"epochs at λ=0, η={rate:g}", labels=("limit", "epochs run"), digits=2),
    ]
    rows = [{"λ": lam[k], "best val loss": _common.pm(val_loss[i]), "best epoch": _common.pm(_seeds.final(result, "best_epoch")[i], 2),
             "epochs run": _common.pm(epochs_run[i], 2), "‖W‖²": _common.pm(norms[k]), "train loss": _common.pm(train_loss[k])}
            for k, i in enumerate(at_rate)]
    grid = [{"λ": s["optimizer.l2"], "η": s["optimizer.learning_rate"], "best val loss": _common.pm(val_loss[i]), "epochs run": _common.pm(epochs_run[i], 2),
             "diverged seeds": int(_seeds.final(result, "diverged")[i].sum())} for i, s in enumerate(result.settings)]
    text = _common.header("Experiment 6: L2 regularization and early stopping", "exp6_regularization.py", CONFIG, timer.seconds, args.smoke, seeds)
    text += (f"{len(result.settings)} settings (λ × learning rate) × {len(seeds)} seeds in one compiled program, each column early-stopped on its own "
             f"validation loss (patience {config.training.early_stopping.patience}, up to {config.training.epochs} epochs); selection on the seed mean of "
             f"the validation loss: {describe(selected)}, test accuracy {_common.pm(test)} (selection reads validation data only; the only test number reported).\n\n")
    text += f"![grid]({NAME}_grid.png)\n\nAt the selected learning rate η={rate:g}:\n\n" + markdown_table(rows) + f"\n![regularization]({NAME}.png)\n\n"
    text += "The whole grid:\n\n" + markdown_table(grid) + "\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    _common.run_script(main)
