"""Latency stability of `evaluators.measure_latency` (CPU, 1 thread, eager, batch 1, no cache).

(a) coefficient of variation of the median over 10 repeated measurements of 3 architectures (target <= 3%);
(b) Spearman rank agreement of 12 architectures sampled from a space, measured twice in two separate passes
    (target >= 0.95).
Repeats are interleaved across architectures so slow drifts of the machine show up as variation, not as bias.
Each measurement records the CPU load of other processes; the machine should be idle for the targets to apply.

    python bench/latency_stability.py [--space small] [--resolution 32] [--repeats 10] [--max-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics

import optuna
import pandas as pd

from evaluators.latency import LatencyConfig, LatencyResult, measure_latency
from space import Arch, SpecError
from space.search_space import Space


def sample(space: Space, n: int, seed: int) -> list[Arch]:
    """`n` distinct architectures drawn at random from `space`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out: dict[str, Arch] = {}
    while len(out) < n:
        trial = study.ask()
        try:
            arch = space.sample(trial)
        except SpecError:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        study.tell(trial, 0.0)
        out.setdefault(arch.hash, arch)
    return list(out.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="small", help="space to sample the 12 architectures from (default small)")
    ap.add_argument("--resolution", type=int, default=32, help="input size of the sampled architectures")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--max-seconds", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = LatencyConfig(max_seconds=args.max_seconds)
    small = LatencyConfig(resolution=args.resolution, max_seconds=args.max_seconds)
    archs = sample(Space.load(args.space), args.count, args.seed)
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    def run(arch: Arch | str, cfg: LatencyConfig, classes: int) -> LatencyResult:
        return measure_latency(arch, cfg, num_classes=classes, cache=None)

    # (a) three architectures, repeated
    points = [("resnet18 @224", "resnet18", base, 1000), ("mobilenet_v2 @224", "mobilenet_v2", base, 1000),
              (f"{args.space}[0] @{args.resolution}", archs[0], small, 10)]
    reps: dict[str, list[LatencyResult]] = {label: [] for label, *_ in points}
    for _ in range(args.repeats):
        for label, arch, cfg, classes in points:
            reps[label].append(run(arch, cfg, classes))
    print(f"(a) {args.repeats} repeated measurements (median ms of each):")
    cvs = []
    for label, rs in reps.items():
        med = [r.median_ms for r in rs]
        cv = statistics.stdev(med) / statistics.mean(med)
        cvs.append(cv)
        quiet = [r.median_ms for r in rs if not r.loaded]
        quiet_cv = statistics.stdev(quiet) / statistics.mean(quiet) if len(quiet) > 2 else float("nan")
        print(f"  {label:22s} mean {statistics.mean(med):8.3f} ms  CV {100 * cv:5.2f}%  (CV over the "
              f"{len(quiet)} unloaded: {100 * quiet_cv:5.2f}%)  within-run IQR/median "
              f"{100 * statistics.median(r.rel_iqr for r in rs):4.1f}%  "
              f"runs {statistics.median(r.runs for r in rs):.0f}"
              f"  other-process load {statistics.mean(r.load for r in rs):.2f} cores "
              f"({sum(r.loaded for r in rs)} flagged)")
        print("    " + " ".join(f"{m:.3f}" for m in med))

    # (b) twelve architectures, two passes
    first = [run(a, small, 10) for a in archs]
    second = [run(a, small, 10) for a in archs]
    a, b = pd.Series([r.median_ms for r in first]), pd.Series([r.median_ms for r in second])
    rho = a.corr(b, method="spearman")
    print(f"(b) {len(archs)} architectures from space '{args.space}' at {args.resolution}x{args.resolution}, "
          "measured twice (ms):")
    for arch, r1, r2 in zip(archs, first, second):
        print(f"  {arch.hash}  {r1.median_ms:8.3f}  {r2.median_ms:8.3f}  load {r1.load:.2f} / {r2.load:.2f}")
    flagged = sum(r.loaded for r in first + second)
    worst = max(cvs)
    print(f"RESULT CV (worst of 3) = {100 * worst:.2f}% (target <= 3%: {'met' if worst <= 0.03 else 'NOT met'}); "
          f"Spearman = {rho:.3f} (target >= 0.95: {'met' if rho >= 0.95 else 'NOT met'}); "
          f"{flagged}/{2 * len(archs)} rank measurements flagged as loaded; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
