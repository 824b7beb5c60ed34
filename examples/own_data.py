"""Your own NumPy arrays and your own model: fit, evaluate, save, load_run, predict.

    python examples/own_data.py [RUN_DIR]      # a few seconds; RUN_DIR defaults to runs/own_data

1. arrays of your own (here: two noisy rings, 2 classes, features on very
   different scales), saved as ``.npz`` with arrays ``x`` and ``y``;
2. split and standardised with the training split's statistics;
3. your own model and optimizer, trained by ``fit`` with early stopping and a
   checkpoint in RUN_DIR;
4. evaluated on the test split, and RUN_DIR completed (``config.yaml``,
   ``preprocessing.npz``) so that it is a run directory like ``train`` writes;
5. ``functional_nn.load_run(RUN_DIR)``: the same model and weights, which
   ``predict`` raw inputs (the run's own standardisation is applied), as
   ``python -m functional_nn predict RUN_DIR --input FILE`` does.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

import functional_nn
from functional_nn import losses, optim
from functional_nn.data import make_splits
from functional_nn.experiment import build_model, config_to_dict, parse_config
from functional_nn.experiment.load import write_run_files
from functional_nn.train import EarlyStopping, fit, init_train_state, make_evaluate, make_train_epoch


def rings(n: int, rng: np.random.Generator):
    """Points on two noisy rings (radius 1: class 0, radius 2: class 1); the
    second feature is scaled by 100, so standardising matters."""
    y = rng.integers(0, 2, n).astype(np.int32)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = 1.0 + y + rng.normal(0.0, 0.3, n)
    x = np.stack([radius * np.cos(angle), 100.0 * radius * np.sin(angle)], axis=1)
    return x, y


def main(run_dir: str = os.path.join("runs", "own_data")) -> dict:
    os.makedirs(run_dir, exist_ok=True)
    # 1. your own arrays, in a file the run's config can name
    x, y = rings(600, np.random.default_rng(0))
    data_path = os.path.join(run_dir, "rings.npz")
    np.savez(data_path, x=x, y=y)

    # 2. the config that describes this run (data file, model, optimizer, training);
    #    make_splits with the same seed and fractions is what data.name=npz does
    config = parse_config({
        "name": "own_data",
        "data": {"name": "npz", "path": data_path, "seed": 0, "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"layers": [{"dense": 32}, "tanh", {"dense": 32}, "tanh", {"dense": 2}]},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "training": {"epochs": 60, "batch_size": 32, "seed": 0, "early_stopping": {"patience": 8}},
    })
    data = make_splits(x, y, seed=0, val_fraction=0.2, test_fraction=0.2, num_classes=2)

    # 3. your own model (from the config's layer list), optimizer and loss, trained by fit
    model = build_model(config.model)  # = layers.serial(dense(32), tanh, dense(32), tanh, dense(2))
    optimizer = optim.adam(0.01)
    loss = losses.softmax_cross_entropy
    state = init_train_state(model, optimizer, jax.random.key(0), (32, 2))
    evaluate = make_evaluate(model, loss)
    state, history = fit(
        state, make_train_epoch(model, loss, optimizer, 32), evaluate, data.train, data.val,
        epochs=60, early_stopping=EarlyStopping(patience=8), progress=False,
        checkpoint_path=os.path.join(run_dir, "checkpoint.npz"), config=config_to_dict(config),
    )

    # 4. evaluate on the test split; save the config and the standardisation with the checkpoint
    test = evaluate(state, data.test.x, data.test.y)
    write_run_files(run_dir, config, data)

    # 5. load the run back and predict raw inputs (standardised with the saved statistics)
    run = functional_nn.load_run(run_dir)
    new_x, new_y = rings(200, np.random.default_rng(1))
    predictions = run.predict(new_x)
    result = {
        "epochs": len(history),
        "test_accuracy": test["accuracy"],
        "loaded_test_accuracy": run.evaluate("test")["accuracy"],
        "new_data_accuracy": float(np.mean(predictions.classes == new_y)),
    }
    print(result)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
