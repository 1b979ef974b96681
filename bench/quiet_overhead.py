"""Time trials spend waiting for latency measurements: the node-wide lock vs the device scope (nas.run.quiet).

SIMULATED: no GPU is used. Ray declares N GPUs that do not exist and runs 2N trial slots with `gpu: 0.5` (two trials
packed per GPU, as in studies/cifar10-gpu.yaml), each slot a Ray task running trials back to back. A trial takes its
placement from `nas.run.quiet.for_trial` (as `nas.run.trial.evaluate` does), measures its latency once, quiet, then
trains. A training step is a timed wait standing in for GPU work, and so is the measurement. Trials last as ASHA
(grace 2, reduction 3, 15 epochs) lets them: 2, 6 or 15 epochs, 4.3 on average. Waiting is the time a trial spends
blocked: paused for another trial's measurement, or before its own measurement can start.

    python bench/quiet_overhead.py [--devices 2 4 8] [--seconds 20] [--step-ms 50] [--steps 20] [--measure-ms 100]

Modes: `node-wide` is the lock nas had before (a measurement pauses every trial on the node, at epoch ends);
`device, epoch` is the device scope with pauses at epoch ends only; `device, step` is what trials do now (the device
scope, paused between optimizer steps). Target: under 5 % at 8 devices where the node-wide lock exceeds it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from typing import Any

import ray

LIFETIMES = (2, 2, 6, 2, 2, 15, 2, 6, 2)  # epochs of successive trials: ASHA with grace 2, reduction 3, max 15
MODES = ("node-wide", "device, epoch", "device, step")


@ray.remote
def slot(mode: str, seed: int, seconds: float, steps: int, step_s: float, measure_s: float) -> list[dict[str, Any]]:
    """Run simulated trials back to back for `seconds`; one row per trial: wall and waiting seconds."""
    from nas.run import quiet

    until = time.time() + seconds
    rng = random.Random(seed)
    time.sleep(rng.random() * steps * step_s)  # start out of phase, like trials that began at different times
    rows = []
    k = seed
    while time.time() < until:
        epochs = LIFETIMES[k % len(LIFETIMES)]
        k += 1
        start = time.perf_counter()
        q = quiet.for_trial(1, "cuda", {"device": "cuda"})
        scope = None if mode == "node-wide" else q.measure_scope
        t = time.perf_counter()
        with q.lock.quiet(scope):
            waited = time.perf_counter() - t
            time.sleep(measure_s)  # stands in for timing the network on the GPU
        with q.busy() as busy:
            for _ in range(epochs):
                for _ in range(steps):
                    time.sleep(step_s)  # stands in for one training step on the GPU
                    if mode == "device, step":
                        busy.poll()  # what the optimizer step pre-hook calls
                busy.breathe()
            waited += busy.waited
        rows.append({"wall": time.perf_counter() - start, "waited": waited, "epochs": epochs})
    return rows


def run(mode: str, devices: int, args: argparse.Namespace) -> tuple[float, int]:
    """Waiting fraction (sum of waits / sum of trial wall time) of one mode at `devices` declared GPUs; trials run."""
    step_s, measure_s = args.step_ms / 1e3, args.measure_ms / 1e3
    tasks = [slot.options(num_cpus=1, num_gpus=0.5).remote(mode, i, args.seconds, args.steps, step_s, measure_s)
             for i in range(2 * devices)]
    rows = [r for rs in ray.get(tasks) for r in rs]
    return sum(r["waited"] for r in rows) / sum(r["wall"] for r in rows), len(rows)


def main() -> None:
    """Run every mode at every device count and print the waiting fractions."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--seconds", type=float, default=20.0, help="simulated run per mode and device count")
    ap.add_argument("--step-ms", type=float, default=50.0, help="one simulated training step")
    ap.add_argument("--steps", type=int, default=20, help="steps per simulated epoch")
    ap.add_argument("--measure-ms", type=float, default=100.0, help="one simulated latency measurement")
    args = ap.parse_args()
    os.environ["NAS_QUIET_DIR"] = tempfile.mkdtemp(prefix="nas-quiet-bench-")  # the workers inherit it
    most = max(args.devices)
    ray.init(num_cpus=2 * most, num_gpus=most, include_dashboard=False, log_to_driver=False)
    # Start every worker first, so that no cell pays for it.
    ray.get([slot.options(num_cpus=1, num_gpus=0.5).remote(MODES[-1], i, 0.0, 1, 0.0, 0.0) for i in range(2 * most)])
    epoch = args.steps * args.step_ms / 1e3
    print(f"SIMULATED (timed waits stand in for GPU work): epoch {epoch:g} s ({args.steps} steps of "
          f"{args.step_ms:g} ms), measurement {args.measure_ms:g} ms, trials of {statistics.mean(LIFETIMES):.1f} "
          f"epochs on average, 2 trials per declared GPU, {args.seconds:g} s per cell\n")
    print(f"{'GPUs':>4}  " + "  ".join(f"{m:>20}" for m in MODES) + "  node-wide / device, step")
    for devices in args.devices:
        fractions, counts = zip(*(run(mode, devices, args) for mode in MODES))
        print(f"{devices:>4}  " + "  ".join(f"{100 * f:>6.1f}% ({n:>3} trials)" for f, n in zip(fractions, counts))
              + f"  {fractions[0] / max(fractions[-1], 1e-9):>8.1f}x")
    print("\nwaiting = time trials are blocked by measurements (paused, or before their own) / trial wall time;"
          " target: device, step < 5 % at 8 GPUs where node-wide exceeds it")
    ray.shutdown()


if __name__ == "__main__":
    main()
