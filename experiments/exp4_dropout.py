"""Experiment 4: dropout, the train/validation gap, and its two implementations, 5 seeds.

``configs/exp_dropout.yaml``: a wide 64-512-512-10 ReLU MLP on a small training
set (359 digits, no augmentation) trained 80 epochs with Adam — a setting where
it overfits — over a 2 × 2 grid of the two dropout rates {0, 0.5} × 5 training
seeds (rates traced: one program), once with ``mode: inverted`` and once with
``mode: scale_at_test``. ``configs/exp_dropout_cnn.yaml``: a small CNN with
dropout {0, 0.5} before its last layer, same data and training. Every number is
measured on the last epoch's weights in eval mode.

Claims (the notes): dropout "forces the network to learn more robust models"
(it reduces overfitting); the two implementations — scale the activations by
α at test (W_test = α W_trained), or divide by α during training and leave
test time alone — are equivalent.

Verdict rules, fixed before running:
  (a) the generalisation gap (validation loss − training loss, eval mode, last
      epoch) is smaller with dropout (both rates 0.5; the CNN's rate 0.5) than
      without: Δ = mean gap without − mean gap with over the 5 seeds; held if
      Δ > sd(A) + sd(B), did not hold if Δ < −(sd(A) + sd(B)), inconclusive
      otherwise. MLP: both modes must hold for "held" (either not holding makes
      it "did not hold"); the CNN is a separate verdict.
  (b) equivalence: at every rate pair the two modes' mean test accuracies differ
      by at most max(0.02, sd(A) + sd(B)), and for every scale-at-test network
      pushing α into the next layer's weights (W_test = α W) gives the same
      outputs as scaling the activations (max |Δ logit| < 1e-4): held; otherwise
      did not hold.
"""

from __future__ import annotations

import os
import sys

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _digits  # noqa: E402
import _seeds  # noqa: E402

from functional_nn.experiment import build_data, build_model, config_to_dict, parse_config  # noqa: E402
from functional_nn.experiment.search import concrete_config  # noqa: E402
from functional_nn.layers import fold_into_dense  # noqa: E402
from functional_nn.experiment.search_report import markdown_table  # noqa: E402

CONFIG, CNN_CONFIG = "exp_dropout.yaml", "exp_dropout_cnn.yaml"
NAME = "exp4_dropout"
MODES = ("inverted", "scale_at_test")
SMOKE = _common.tiny_overrides((0, 3), {"model.layers.2.rate": [0.0, 0.5], "model.layers.5.rate": [0.5]})
CNN_SMOKE = [("training.epochs", 2), ("model.layers.1.out_channels", 2), ("model.layers.5.out_dim", 8)]


def with_mode(config, mode: str):
    raw = config_to_dict(config)
    for layer in raw["model"]["layers"]:
        if layer["type"] == "dropout":
            layer["mode"] = mode
    return parse_config(raw)


def rates(result, index: int) -> tuple:
    return tuple(v for k, v in result.settings[index].items() if k.endswith(".rate"))


def measure(result, data) -> dict:
    """(S, N) eval-mode metrics of every column's last-epoch weights: losses, accuracies and the gaps."""
    out = {f"{split} {metric}": values for split in ("train", "val", "test")
           for metric, values in _seeds.evaluate_all(result, getattr(data, split)).items()}
    out["loss gap"] = out["val loss"] - out["train loss"]
    out["acc gap"] = out["train accuracy"] - out["val accuracy"]
    return out


def rows(result, measured: dict) -> list:
    return [{"rates": ", ".join(f"{r:g}" for r in rates(result, i)), **{k: _common.pm(v[i]) for k, v in measured.items()}}
            for i in range(len(result.settings))]


def folded_weights_difference(result, index: int, seed_index: int, x) -> float:
    """max |logits(scale activations by α) − logits(W_test = α W, no scaling)| of one scale-at-test network."""
    config = concrete_config(result.config, result.settings[index])
    state = _seeds.train_state(result, index, seed_index)
    scaled, _ = build_model(config.model).apply(state.params, state.model_state, x, train=False)
    params = list(state.params)
    for i, layer in enumerate(config.model.layers):
        if layer.type == "dropout":
            params[i + 1] = fold_into_dense(params[i + 1], layer.args["rate"])
    identity = with_mode(config, "inverted")  # inverted dropout is the identity at test time
    folded, _ = build_model(identity.model).apply(tuple(params), state.model_state, x, train=False)
    return float(jnp.max(jnp.abs(scaled - folded)))


def gap_verdict(claim: str, result, measured: dict, label: str) -> _common.Verdict:
    """Gap without dropout (all rates 0) vs with (all rates at their largest value)."""
    all_rates = [rates(result, i) for i in range(len(result.settings))]
    without = all_rates.index(tuple(min(r) for r in zip(*all_rates)))
    with_dropout = all_rates.index(tuple(max(r) for r in zip(*all_rates)))
    top = ", ".join(f"{r:g}" for r in all_rates[with_dropout])
    return _common.compare(claim, measured["loss gap"][without], measured["loss gap"][with_dropout], larger=True,
                           what=f"{label} validation − training loss", labels=("without dropout", f"with rates {top}"))


def equivalence_verdict(results: dict, measured: dict, fold_difference: float) -> _common.Verdict:
    a, b = (measured[mode]["test accuracy"] for mode in MODES)
    differences = np.abs(a.mean(axis=1) - b.mean(axis=1))
    allowed = np.maximum(0.02, a.std(axis=1, ddof=1) + b.std(axis=1, ddof=1))
    held = bool(np.all(differences <= allowed)) and fold_difference < 1e-4
    worst = int(np.argmax(differences - allowed))
    return _common.Verdict(
        "Inverted and scale-at-test dropout give the same eval accuracy", _common.HELD if held else _common.NOT_HELD,
        f"largest |Δ test acc| {differences.max():.4f}", f"allowed max(0.02, sd sum) = {allowed[worst]:.4f} at the tightest pair",
        "|difference of mean test accuracies| per rate pair: " + ", ".join(f"({', '.join(f'{r:g}' for r in rates(results['inverted'], i))}) {d:.4f} (allowed {m:.4f})"
                                                                           for i, (d, m) in enumerate(zip(differences, allowed)))
        + f"; W_test = αW vs scaling activations: max |Δ logit| over all scale-at-test networks {fold_difference:.2e} (rule < 1e-4)")


def plot(results: dict, path: str) -> None:
    fig, panels = _common.panel_row(3)
    for (label, result), style in zip(results.items(), ("-", "--", ":")):
        train, val = _seeds.curves(result, "train_loss"), _seeds.curves(result, "val_loss")
        for i in range(len(result.settings)):
            if len(set(rates(result, i))) == 1:
                name = f"{label}, rates {rates(result, i)[0]:g}"
                _digits.band(panels[0 if label != "CNN" else 2], val[i], name, style=style)
                _digits.band(panels[1], train[i], name, style=style)
    panels[0].set(yscale="log", xlabel="epoch", ylabel="MLP validation loss (eval mode)")
    panels[1].set(yscale="log", xlabel="epoch", ylabel="training loss (train mode, dropout on)")
    panels[2].set(yscale="log", xlabel="epoch", ylabel="CNN validation loss (eval mode)")
    _common.finish_panels(fig, panels, "dropout: 359 training digits, 80 epochs of Adam (mean ± sd over seeds)", path, legend_fontsize=7)


def plot_gaps(results: dict, measured: dict, path: str) -> None:
    fig = _common.figure(8, 4.5)
    axes = fig.subplots()
    labels, position = [], 0
    for label, result in results.items():
        for i in range(len(result.settings)):
            gap = measured[label]["loss gap"][i]
            axes.errorbar([position], [gap.mean()], [gap.std(ddof=1)], marker="o", capsize=3, color="tab:blue" if label != "CNN" else "tab:orange")
            labels.append(f"{label}\n" + ", ".join(f"{r:g}" for r in rates(result, i)))
            position += 1
    axes.set_xticks(range(position), labels, fontsize=7)
    axes.set(ylabel="validation − training loss (eval mode)", title="generalisation gap by dropout rates (mean ± sd over seeds)")
    axes.grid(alpha=0.3)
    fig.savefig(path, dpi=_common.DPI)


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    seeds = _common.seeds(args.smoke)
    base = _common.load(CONFIG, smoke_overrides=SMOKE, smoke=args.smoke)
    cnn = _common.load(CNN_CONFIG, smoke_overrides=CNN_SMOKE, smoke=args.smoke)
    data = build_data(base.data)
    results, measured = {}, {}
    with _common.Timer() as timer:
        for mode in MODES:
            results[mode] = _seeds.seeded_search(with_mode(base, mode), seeds, data=data)
        results["CNN"] = _seeds.seeded_search(cnn, seeds, data=data)
        measured = {label: measure(result, data) for label, result in results.items()}
        scale = results["scale_at_test"]
        fold_difference = max(folded_weights_difference(scale, i, n, data.test.x) for i in range(len(scale.settings)) for n in range(len(seeds)))
    plot(results, os.path.join(args.out, f"{NAME}.png"))
    plot_gaps(results, measured, os.path.join(args.out, f"{NAME}_gaps.png"))

    verdicts = [
        _common.combine("Dropout reduces the train/validation gap (MLP)",
                        [gap_verdict(f"MLP {mode}", results[mode], measured[mode], f"MLP {mode}") for mode in MODES]),
        gap_verdict("Dropout reduces the train/validation gap (CNN)", results["CNN"], measured["CNN"], "CNN"),
        equivalence_verdict(results, measured, fold_difference),
    ]
    text = _common.header("Experiment 4: dropout", "exp4_dropout.py", [CONFIG, CNN_CONFIG], timer.seconds, args.smoke, seeds)
    text += (f"{len(data.train.x)} training examples, no augmentation, {base.training.epochs} epochs of Adam, no early stopping; "
             f"each grid ({len(results['inverted'].settings)} MLP rate pairs per mode, {len(results['CNN'].settings)} CNN rates) × {len(seeds)} seeds "
             "trained at once; metrics of the last epoch's weights in eval mode.\n\n")
    for label in results:
        text += f"## {'MLP, mode: ' + label if label in MODES else 'CNN (inverted dropout)'}\n\n" + markdown_table(rows(results[label], measured[label])) + "\n"
    text += f"![gaps]({NAME}_gaps.png)\n\n![curves]({NAME}.png)\n\n"
    _common.write_report(args.out, NAME, text, verdicts)
    return 0


if __name__ == "__main__":
    _common.run_script(main)
