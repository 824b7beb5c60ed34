"""Data parallelism on 4 forced host devices (run by tests/test_parallel.py through
``conftest.run_with_devices``): prints ``REPORT`` and a JSON report of measured
differences and shardings."""

import os, sys, json, io, contextlib, tempfile
import jax, jax.numpy as jnp, numpy as np
from tests.conftest import read_run
from functional_nn import layers, optim
from functional_nn.layers.base import Layer
from functional_nn.losses import softmax_cross_entropy
from functional_nn.data.augment import make_augment
from functional_nn.data.datasets import Split
from functional_nn.train import EarlyStopping, fit, init_train_state, make_evaluate, make_train_epoch
from functional_nn.train import parallel
from functional_nn.__main__ import main

assert jax.device_count() == 4
TINY, work = sys.argv[1], tempfile.mkdtemp()
report = {}

# ---------------------------------------------------------------- a small problem
rng = np.random.default_rng(0)
centers = rng.standard_normal((3, 8)).astype(np.float32) * 2
def make_split(n):
    y = rng.integers(0, 3, n).astype(np.int32)
    return Split((centers[y] + rng.standard_normal((n, 8))).astype(np.float32), y)
train, val = make_split(100), make_split(30)       # 100 = 6 batches of 16 + 4 left out per epoch
B = 16

seen = []   # (number of devices of the sharding, per-device shape) of the activations
def record(sharding):
    seen.append((len(sharding.device_set), list(sharding.shard_shape((B, 16)))))
def probe_apply(params, state, x, *, train, key=None):
    if train:
        jax.debug.inspect_array_sharding(x, callback=record)
    return x, state
probe = Layer(lambda key, shape: (tuple(shape), (), ()), probe_apply)

model = layers.serial(layers.dense(16), probe, layers.batchnorm(), layers.relu, layers.dropout(0.25),
                      layers.dense(16), layers.batchnorm(stats="cumulative"), layers.tanh, layers.dense(3))
optimizer = optim.momentum(0.05, 0.9)
augment = make_augment(noise_std=0.1)
loss = softmax_cross_entropy
mesh = parallel.make_data_mesh(4)
epoch1 = make_train_epoch(model, loss, optimizer, B, augment=augment)
epoch4 = parallel.make_parallel_train_epoch(model, loss, optimizer, B, devices=mesh, augment=augment)
evaluate1 = make_evaluate(model, loss, chunk_size=12)
evaluate4 = parallel.make_parallel_evaluate(model, loss, mesh, chunk_size=12)
no_early_stop = EarlyStopping(restore_best=False)

def fresh_state():
    return init_train_state(model, optimizer, jax.random.key(7), (B, 8))

def run(devices, epochs, path=None, resume=False):
    epoch_fn, evaluate, m = (epoch1, evaluate1, None) if devices == 1 else (epoch4, evaluate4, mesh)
    return fit(fresh_state(), epoch_fn, evaluate, train, val, epochs=epochs, early_stopping=no_early_stop,
               checkpoint_path=path, resume=resume, progress=False, log=lambda message: None, mesh=m)

def max_difference(a, b):
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))) for p, q in leaves)

def metric_difference(h1, h2):
    keys = [k for k in h1[0] if k.startswith(("train_", "val_"))]
    return max(abs(r1[k] - r2[k]) for r1, r2 in zip(h1, h2) for k in keys)

def replicated_on_4(tree):
    leaves = jax.tree.leaves(jax.tree.map(lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a, tree))
    return all(len(a.sharding.device_set) == 4 and a.sharding.is_fully_replicated
               and all(s.data.shape == a.shape for s in a.addressable_shards) for a in leaves)

# ---------------------------------------------------------------- 3 epochs: 4 devices vs 1
state1, history1 = run(1, 3)
state4, history4 = run(4, 3)
report["equal"] = {
    "params": max_difference(state1.params, state4.params),
    "model_state": max_difference(state1.model_state, state4.model_state),
    "opt_state": max_difference(state1.opt_state, state4.opt_state),
    "metrics": metric_difference(history1, history4),
    "step": [int(state1.step), int(state4.step)],
    "key_equal": bool(np.array_equal(jax.random.key_data(state1.key), jax.random.key_data(state4.key))),
    "bn_count": int(state4.model_state[2].count),
    "train_loss_epochs": [r["train_loss"] for r in history4],
    "state_replicated_on_4": replicated_on_4(state4),
}

# ---------------------------------------------------------------- the batch is split
x4 = parallel.shard_batch(train.x[:B], mesh)
report["split"] = {
    "activations": sorted(set(map(tuple, [(n, tuple(s)) for n, s in seen]))),
    "shard_shapes": [list(s.data.shape) for s in x4.addressable_shards],
    "shard_rows": sorted(s.index[0].start for s in x4.addressable_shards),
    "shard_devices": len({s.device for s in x4.addressable_shards}),
    "gathered_equal": bool(np.array_equal(np.asarray(x4), train.x[:B])),
}

# ---------------------------------------------------------------- errors
try:
    parallel.make_parallel_train_epoch(model, loss, optimizer, 18, devices=mesh)
    report["indivisible"] = None
except ValueError as e:
    report["indivisible"] = str(e)
try:
    parallel.make_data_mesh(5)
    report["too_many"] = None
except ValueError as e:
    report["too_many"] = str(e)

# ---------------------------------------------------------------- checkpoints: 4 -> 1 and 1 -> 4
moves = {}
for first, then in ((4, 1), (1, 4)):
    path = os.path.join(work, f"from{first}.npz")
    run(first, 2, path)
    resumed, history = run(then, 3, path, resume=True)
    moves[f"{first}to{then}"] = {
        "params": max_difference(resumed.params, state1.params),
        "model_state": max_difference(resumed.model_state, state1.model_state),
        "opt_state": max_difference(resumed.opt_state, state1.opt_state),
        "metrics": metric_difference(history, history1),
        "epochs": [r["epoch"] for r in history],
        "replicated_on_4": replicated_on_4(resumed) if then == 4 else None,
    }
report["checkpoint"] = moves

# ---------------------------------------------------------------- the CLI: training.devices
def cli(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", TINY, "--no-progress", "--set", "optimizer.name=sgd",
                     "--set", "optimizer.learning_rate=0.1", *args])
    return code, err.getvalue()


one, four = os.path.join(work, "cli1"), os.path.join(work, "cli4")
codes = [cli("--out", one, "--set", "training.epochs=2")[0],
         cli("--out", four, "--set", "training.epochs=1", "--set", "training.devices=4")[0],
         cli("--out", four, "--set", "training.epochs=2", "--set", "training.devices=1", "--resume")[0]]
(h1, s1), (h4, s4) = read_run(one), read_run(four)
code, message = cli("--out", os.path.join(work, "bad"), "--set", "training.devices=4", "--set", "training.batch_size=30")
report["cli"] = {
    "codes": codes,
    "metrics": metric_difference(h1, h4),
    "test": abs(s1["test_loss"] - s4["test_loss"]),
    "epochs": [r["epoch"] for r in h4],
    "bad_code": code,
    "bad_message": message,
}
print("REPORT" + json.dumps(report))
