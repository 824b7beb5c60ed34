"""``python -m functional_nn eval CONFIG``: a run's checkpoint evaluated on one split."""

from __future__ import annotations

import json
import os

from functional_nn.experiment.builders import build_experiment
from functional_nn.experiment.run_dir import CHECKPOINT_FILE
from functional_nn.train import load_training_checkpoint, make_evaluate, restore_best


def eval_command(config, directory: str, *, checkpoint: str | None, split: str) -> int:
    data, model, loss, _, train_state = build_experiment(config)
    loaded = load_training_checkpoint(checkpoint or os.path.join(directory, CHECKPOINT_FILE), train_state)
    train_state = restore_best(loaded.early_stopping, loaded.train_state)
    evaluate = make_evaluate(model, loss, chunk_size=config.training.eval_chunk_size)
    xy = getattr(data, split)
    metrics = {f"{split}_{k}": v for k, v in evaluate(train_state, xy.x, xy.y).items()}
    print(json.dumps({"epoch": loaded.epoch, "best_epoch": loaded.early_stopping.best_epoch, **metrics}))
    return 0


