"""Latency of the training form ÷ the deploy form of the re-parameterizable named points (CPU, eager, 1 thread).

Both forms are timed in eval mode (the training form at lambda = 1 for VanillaNet) with the same procedure as
`measure_latency`; measurements of the two forms alternate, `--repeats` times, and the ratio uses the medians.

    python bench/deploy_speedup.py [--names repvgg_a0 vanillanet_5 parnet_s] [--resolution 224] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics

import space
from evaluators.latency import LatencyConfig, time_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", nargs="+", default=["repvgg_a0", "vanillanet_5", "parnet_s"])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    args = ap.parse_args()
    cfg = LatencyConfig(resolution=args.resolution, threads=args.threads, max_seconds=args.max_seconds)
    print(f"cpu, eager, batch 1, {args.resolution}x{args.resolution}, float32, {args.threads} thread(s); "
          f"load average before: {os.getloadavg()[0]:.2f}")
    for name in args.names:
        if name not in space.MODELS:
            print(f"{name:14s} not registered (no such named point in this checkout); skipped")
            continue
        train = space.create_model(name).eval()
        space.set_lambda(train, 1.0)
        deploy = space.create_model(name, deploy=True)
        t_ms, d_ms, loads = [], [], []
        for _ in range(args.repeats):
            t, d = time_model(train, cfg), time_model(deploy, cfg)
            t_ms.append(t.median_ms)
            d_ms.append(d.median_ms)
            loads += [t.load, d.load]
        t_med, d_med = statistics.median(t_ms), statistics.median(d_ms)
        print(f"{name:14s} train {t_med:9.2f} ms ({space.count_params(train) / 1e6:6.2f}M params)  "
              f"deploy {d_med:9.2f} ms ({space.count_params(deploy) / 1e6:6.2f}M params)  "
              f"RESULT train/deploy = {t_med / d_med:.2f}x  (other-process load {statistics.mean(loads):.2f} cores)",
              flush=True)


if __name__ == "__main__":
    main()
