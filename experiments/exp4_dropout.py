"""Experiment 4: dropout, the train/validation gap, and its two implementations.

``configs/exp_dropout.yaml``: a 64-256-256-10 ReLU MLP (large enough to overfit
digits) trained 60 epochs with Adam, a 3 × 3 grid of the two dropout rates
trained at once (the rates are traced), once with ``mode: inverted`` and once
with ``mode: scale_at_test``. Every number is measured on the last epoch's
weights in eval mode.

Claims (the notes): dropout "forces the network to learn more robust models"
(it reduces overfitting); the two implementations — scale the activations by
α at test (W_test = α W_trained), or divide by α during training and leave
test time alone — are equivalent.

Verdict rules, fixed before running:
  (a) the generalisation gap (validation loss − training loss, eval mode) with
      both rates 0.5 is smaller than without dropout, in both modes;
  (b) inverted and scale-at-test dropout give the same test accuracy within 2
      percentage points at every pair of rates; and for a scale-at-test network,
      pushing α into the next layer's weights (W_test = α W) gives the same
      outputs as scaling the activations (max |Δ logit| < 1e-4).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402

from functional_nn.experiment import build_model, config_to_dict, parse_config  # noqa: E402
from functional_nn.layers import fold_into_dense  # noqa: E402
from functional_nn.experiment.search import concrete_config, evaluate_setting, grid_search, setting_train_state  # noqa: E402
from functional_nn.experiment.plots import plot_heatmap  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG = "exp_dropout.yaml"
NAME = "exp4_dropout"
MODES = ("inverted", "scale_at_test")
RATE_KEYS = ("model.layers.2.rate", "model.layers.5.rate")
SMOKE = _common.tiny_overrides((0, 3), {"model.layers.2.rate": [0.5], "model.layers.5.rate": [0.5]})


def with_mode(config, mode: str):
    raw = config_to_dict(config)
    for layer in raw["model"]["layers"]:
        if layer["type"] == "dropout":
            layer["mode"] = mode
    raw["search"] = config.search
    return parse_config(raw)


def measure(result, config, data) -> list:
    """Eval-mode metrics of every setting's last-epoch weights on the three splits."""
    cache, rows = {}, []
    for index, setting in enumerate(result.settings):
        metrics = {split: evaluate_setting(result, config, index, getattr(data, split), cache=cache) for split in ("train", "val", "test")}
        rows.append({
            "rate 1": setting[RATE_KEYS[0]],
            "rate 2": setting[RATE_KEYS[1]],
            "train loss": metrics["train"]["loss"],
            "val loss": metrics["val"]["loss"],
            "loss gap": metrics["val"]["loss"] - metrics["train"]["loss"],
            "train acc": metrics["train"]["accuracy"],
            "val acc": metrics["val"]["accuracy"],
            "acc gap": metrics["train"]["accuracy"] - metrics["val"]["accuracy"],
            "test acc": metrics["test"]["accuracy"],
        })
    return rows


def folded_weights_difference(result, config, index: int, x) -> float:
    """max |logits(scale activations by α) − logits(W_test = α W, no scaling)| of a scale-at-test network."""
    setting_config = concrete_config(config, result.settings[index])
    state = setting_train_state(result, index)
    scaled, _ = build_model(setting_config.model).apply(state.params, state.model_state, x, train=False)
    layers = setting_config.model.layers
    params = list(state.params)
    for i, layer in enumerate(layers):
        if layer.type == "dropout":
            params[i + 1] = fold_into_dense(params[i + 1], layer.args["rate"])
    identity_dropout = with_mode(setting_config, "inverted")  # inverted dropout is the identity at test time
    folded, _ = build_model(identity_dropout.model).apply(tuple(params), state.model_state, x, train=False)
    return float(jnp.max(jnp.abs(scaled - folded)))


def plot(results: dict, measured: dict, path: str) -> None:
    fig, (left, right) = _common.panel_row(2)
    for mode, style in zip(MODES, ("-", "--")):
        result = results[mode]
        for index, setting in enumerate(result.settings):
            if setting[RATE_KEYS[0]] == setting[RATE_KEYS[1]]:
                epochs, train = _digits.curve(result, index, "train_loss")
                _, val = _digits.curve(result, index, "val_loss")
                label = f"{mode}, rates {setting[RATE_KEYS[0]]:g}"
                left.plot(epochs, val, style, label=label)
                right.plot(epochs, train, style, label=label)
    left.set(yscale="log", xlabel="epoch", ylabel="validation loss (eval mode)")
    right.set(yscale="log", xlabel="epoch", ylabel="training loss (train mode, dropout on)")
    _common.finish_panels(fig, (left, right), "dropout on a 64-256-256-10 MLP (digits), equal rates in both layers", path, legend_fontsize=7)


def main(argv=None) -> int:
    args, base, data = _common.start_experiment(__doc__, CONFIG, SMOKE, argv)
    results, measured, configs = {}, {}, {}
    with _common.Timer() as timer:
        for mode in MODES:
            configs[mode] = with_mode(base, mode)
            results[mode] = grid_search(configs[mode], data=data, progress=False)
            measured[mode] = measure(results[mode], configs[mode], data)
        fold_difference = max(folded_weights_difference(results["scale_at_test"], configs["scale_at_test"], i, data.test.x)
                              for i in range(len(results["scale_at_test"].settings)))
    plot(results, measured, os.path.join(args.out, f"{NAME}.png"))
    for mode in MODES:
        plot_heatmap(measured[mode], "rate 1", "rate 2", "loss gap", os.path.join(args.out, f"{NAME}_gap_{mode}.png"), title=f"val − train loss ({mode})")

    def find(mode, r1, r2):
        return next((r for r in measured[mode] if r["rate 1"] == r1 and r["rate 2"] == r2), None)

    rates = sorted({r["rate 1"] for r in measured["inverted"]} | {r["rate 2"] for r in measured["inverted"]})
    low, high = rates[0], rates[-1]
    gaps = {mode: (find(mode, low, low), find(mode, high, high)) for mode in MODES}
    gap_held = all(a is not None and b is not None and b["loss gap"] < a["loss gap"] for a, b in gaps.values())
    gap_text = "; ".join(f"{mode}: {a['loss gap']:.3f} without → {b['loss gap']:.3f} with rates {high:g}" for mode, (a, b) in gaps.items() if a and b)
    differences = [abs(a["test acc"] - b["test acc"]) for a, b in zip(measured["inverted"], measured["scale_at_test"])]
    same_held = max(differences) <= 0.02 and fold_difference < 1e-4
    comparison = [{"rate 1": a["rate 1"], "rate 2": a["rate 2"], "test acc inverted": a["test acc"], "test acc scale_at_test": b["test acc"],
                   "|difference|": abs(a["test acc"] - b["test acc"])} for a, b in zip(measured["inverted"], measured["scale_at_test"])]
    verdicts = [
        (gap_held, "Dropout reduces the train/validation gap", f"validation − training loss (eval mode, last epoch): {gap_text}"),
        (same_held, "Inverted and scale-at-test dropout give the same eval accuracy",
         f"largest test-accuracy difference over the {len(differences)} rate pairs {max(differences):.4f} (rule: ≤ 0.02); "
         f"W_test = αW vs scaling activations: max |Δ logit| over all scale-at-test networks = {fold_difference:.2e}"),
    ]
    text = _common.header("Experiment 4: dropout", "exp4_dropout.py", CONFIG, timer.seconds, args.smoke)
    text += (f"Grid of the two layers' dropout rates ({len(results['inverted'].settings)} settings trained at once per mode), "
             f"{base.training.epochs} epochs of Adam, no early stopping; metrics of the last epoch's weights in eval mode.\n\n")
    for mode in MODES:
        text += f"## mode: {mode}\n\n" + markdown_table(measured[mode]) + f"\n![gap]({NAME}_gap_{mode}.png)\n\n"
    text += "## inverted vs scale at test\n\n" + markdown_table(comparison) + f"\n![curves]({NAME}.png)\n\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
