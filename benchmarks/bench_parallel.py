"""Step time of data-parallel training on 1, 2 and 4 devices.

Network: the digits MLP of ``bench_train.py`` (64-256-256-10, each hidden layer
dense → batch norm → ReLU → dropout(0.2)), Adam(1e-3), softmax cross-entropy,
over the 80 % training split of scikit-learn's digits (1437 examples), for
each global batch size B given (each device processes B/n examples per step).

Each device count n runs in its own worker process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=n`` (the flag must be set
before JAX is imported); the driver alternates the workers epoch by epoch
(one epoch = one jitted ``lax.scan`` over the shuffled batches), so load
drifts hit every variant alike, and reports the median time per step (epoch
time / steps per epoch) and its ratio to the 1-device epoch without a mesh
(``make_train_epoch``). The 1-device worker also runs the sharded epoch on a
mesh of one device, which shows what the sharding machinery itself costs.

On CPU this shows overhead, not speedup: forced CPU devices are not extra
hardware, they share the machine's cores (2 on the development machine), so
splitting a batch over them only adds the partitioning and the all-reduces
of the gradients and batch-norm statistics. A speedup needs real devices
(several GPUs/TPUs): there ``--platform gpu`` uses ``jax.devices()`` as they are.

Run:  python benchmarks/bench_parallel.py [--devices 1,2,4] [--batch 64,256] [--rounds 5] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HIDDEN, RATE, LR, CLASSES = 256, 0.2, 1e-3, 10
BASELINE = "1 device, no mesh"


# --------------------------------------------------------------------------
# worker: one process, one device count


def _model():
    from functional_nn import layers

    def block():
        return [layers.dense(HIDDEN), layers.batchnorm(), layers.relu, layers.dropout(RATE)]

    return layers.serial(*block(), *block(), layers.dense(CLASSES))


def _epoch_runner(epoch, state, x, y):
    import jax

    holder = {"state": state}

    def run_epoch():
        holder["state"], metrics = epoch(holder["state"], x, y)
        jax.block_until_ready((holder["state"], metrics))

    return run_epoch


def worker_variants(devices: int, batches: list) -> dict:
    """name -> run_epoch for every batch size: the sharded epoch on ``devices``
    devices (and, for 1 device, the plain epoch without a mesh)."""
    import jax
    import numpy as np

    from functional_nn import optim
    from functional_nn.data import load_digits
    from functional_nn.losses import softmax_cross_entropy
    from functional_nn.train import init_train_state, make_train_epoch
    from functional_nn.train.parallel import make_data_mesh, make_parallel_train_epoch, place_replicated

    data = load_digits(seed=0, val_fraction=0.0, test_fraction=0.2)
    x, y = np.asarray(data.train.x), np.asarray(data.train.y)
    model, optimizer = _model(), optim.adam(LR)
    mesh = make_data_mesh(devices)
    variants = {}
    for batch in batches:
        fresh = lambda: init_train_state(model, optimizer, jax.random.key(0), (batch, x.shape[1]))  # noqa: E731
        if devices == 1:
            epoch = make_train_epoch(model, softmax_cross_entropy, optimizer, batch)
            variants[f"B={batch} | {BASELINE}"] = _epoch_runner(epoch, fresh(), jax.device_put(x), jax.device_put(y))
        epoch = make_parallel_train_epoch(model, softmax_cross_entropy, optimizer, batch, devices=mesh)
        xs, ys, state = place_replicated((x, y, fresh()), mesh)
        label = f"{devices} device{'s' if devices > 1 else ''}, mesh"
        variants[f"B={batch} | {label}"] = _epoch_runner(epoch, state, xs, ys)
    return variants


def worker(devices: int, batches: list) -> None:
    """Compile, report the compile times, then run one epoch of the named variant per request."""
    import jax

    from bench_train import timed_first_calls

    variants = worker_variants(devices, batches)
    compile_seconds = timed_first_calls(variants)
    platform = jax.devices()[0].platform
    print(json.dumps({"compile": compile_seconds, "platform": platform, "device_count": jax.device_count()}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name == "quit":
            break
        started = time.perf_counter()
        variants[name]()
        print(json.dumps(time.perf_counter() - started), flush=True)


# --------------------------------------------------------------------------
# driver


def start_worker(devices: int, batches: list, platform: str) -> subprocess.Popen:
    env = dict(os.environ)
    if platform == "cpu":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, os.path.abspath(__file__), "--worker", str(devices), "--batch", ",".join(map(str, batches))]
    return subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _request(process: subprocess.Popen, name: str) -> float:
    process.stdin.write(name + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def steps_per_epoch(batch: int) -> int:
    return 1437 // batch  # the digits training split (80 % of 1797)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="device counts, comma-separated (1 is the baseline)")
    parser.add_argument("--batch", default="64,256", help="global batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per variant per round")
    parser.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"))
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error(f"--rounds={args.rounds}: must be at least 2 (the table reports quartiles over the rounds)")
    batches = [int(b) for b in args.batch.split(",")]
    if args.worker is not None:
        worker(args.worker, batches)
        return
    counts = sorted({1, *(int(d) for d in args.devices.split(","))})
    processes, infos = {}, {}
    for n in counts:  # one at a time, so that the compile times are not shared
        processes[n] = start_worker(n, batches, args.platform)
        infos[n] = json.loads(processes[n].stdout.readline())
    names = {n: list(infos[n]["compile"]) for n in counts}
    times = {(n, name): [] for n in counts for name in names[n]}
    try:
        for _ in range(args.rounds * args.epochs):  # alternate epoch by epoch over every variant
            for n in counts:
                for name in names[n]:
                    times[(n, name)].append(_request(processes[n], name))
    finally:
        for p in processes.values():
            p.stdin.write("quit\n")
            p.stdin.close()
            p.wait()
    print_table(args, batches, counts, names, infos, times)


def print_table(args, batches, counts, names, infos, times) -> None:
    platform = infos[1]["platform"]
    print(
        f"digits MLP 64-256-256-10 (batch norm, ReLU, dropout {RATE}), Adam; {platform}; "
        f"each device count in its own process, alternated epoch by epoch, {args.rounds} rounds x {args.epochs} epochs"
    )
    if platform == "cpu":
        print(
            f"NOTE: forced CPU devices share this machine's {os.cpu_count()} cores: this shows the overhead "
            "of splitting a batch over devices (partitioning, all-reduces), not a speedup."
        )
    print()
    print("| global batch B | variant | examples / device / step | ms / step (median) | IQR ms | ratio to 1 device, no mesh | first call (compile) s |")
    print("|---|---|---|---|---|---|---|")
    for batch in batches:
        steps = steps_per_epoch(batch)
        baseline = statistics.median(times[(1, f"B={batch} | {BASELINE}")]) / steps
        for n in counts:
            for name in names[n]:
                if not name.startswith(f"B={batch} |"):
                    continue
                samples = [t / steps for t in times[(n, name)]]
                median = statistics.median(samples)
                q1, _, q3 = statistics.quantiles(samples, n=4)
                row = [
                    str(batch),
                    name.split(" | ")[1],
                    str(batch // n),
                    f"{1e3 * median:.3f}",
                    f"{1e3 * q1:.3f}–{1e3 * q3:.3f}",
                    f"{median / baseline:.2f}x",
                    f"{infos[n]['compile'][name]:.2f}",
                ]
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
