"""The grid search sharded over 4 forced host devices (run by
tests/test_grid_search_sharded.py through ``conftest.run_with_devices``)."""

import json
import jax
from functional_nn.experiment import build_data, parse_config
from functional_nn.experiment.search import expand_grid, grid_search, group_build, split_keys, validate_grid
from functional_nn.train import kept_train_state, make_evaluate, make_evaluate_grid

raw = {
    "data": {"name": "spirals", "n": 240, "num_classes": 3, "val_fraction": 0.25, "test_fraction": 0.2},
    "model": {"layers": [{"dense": 16}, "tanh", {"dropout": 0.0}, {"dense": 3}]},
    "optimizer": {"name": "adam"},
    "training": {"epochs": 4, "batch_size": 32, "early_stopping": {"patience": 1, "min_delta": 0.01}},
    # 3 x 2 = 6 settings on 4 devices: padded to 8, two per device
    "search": {"optimizer.learning_rate": [1e-3, 3e-3, 1e-2], "model.layers.2.rate": [0.0, 0.3]},
}
one = grid_search(parse_config(raw), devices=1)
raw["training"]["devices"] = 4  # the config's switch
four = grid_search(parse_config(raw))
# training seeds as one more vmapped axis: 3 settings x 2 seeds = 6 columns, padded to 8, also split
seeded = {**raw, "search": {"optimizer.learning_rate": [1e-3, 3e-3, 1e-2], "seeds": 2}}
seeded_four = grid_search(parse_config(seeded))
seeded_one = grid_search(parse_config({**seeded, "training": {**raw["training"], "devices": 1}}))
carry = four.runs[0].carry
# a grid of 3 columns asked for 4 devices runs on 3 (no device computes padding alone)
small = grid_search(parse_config({**raw, "search": {"optimizer.learning_rate": [1e-3, 3e-3, 1e-2]}}))
small_leaf = jax.tree.leaves(small.runs[0].carry.train_state.params)[0]
# every column of the sharded, padded run evaluated at once, against make_evaluate of each column
config = parse_config(raw)
grid = validate_grid(config)
build, hparams = group_build(config, split_keys(grid, config.model)[0], expand_grid(grid))
test = build_data(config.data).test
grid_loss = make_evaluate_grid(build, chunk_size=32)(hparams, four.runs[0], test.x, test.y)["loss"]
evaluators = {}
column_loss = []
for column in range(four.runs[0].size):
    h = {name: float(values[column]) for name, values in hparams.items()}
    key = tuple(sorted(h.items()))
    evaluators.setdefault(key, make_evaluate(*build(h)[:2], chunk_size=32))
    column_loss.append(evaluators[key](kept_train_state(carry, column), test.x, test.y)["loss"])
leaves = jax.tree.leaves(carry.train_state.params) + jax.tree.leaves(carry.stopping.kept_params)
print("REPORT" + json.dumps({
    "device_count": jax.device_count(),
    "grid_size": four.runs[0].size,
    "specs": sorted({str(tuple(leaf.sharding.spec)) for leaf in leaves}),
    "shard_rows": sorted({tuple(s.data.shape[:1]) for leaf in leaves for s in leaf.addressable_shards}),
    "shard_devices": sorted({len({s.device.id for s in leaf.addressable_shards}) for leaf in leaves}),
    "leading": sorted({leaf.shape[0] for leaf in leaves}),
    "one": {"rows": one.rows, "best": one.best_index, "test": one.test_metrics},
    "four": {"rows": four.rows, "best": four.best_index, "test": four.test_metrics},
    "seeded_one": {"rows": [r for rows in seeded_one.seed_rows for r in rows], "best": seeded_one.best_index},
    "seeded_four": {"rows": [r for rows in seeded_four.seed_rows for r in rows], "best": seeded_four.best_index},
    "evaluate_grid": {"grid": [float(v) for v in grid_loss], "columns": column_loss},
    "small": {"leading": small_leaf.shape[0], "devices": len(small_leaf.sharding.device_set)},
}))
