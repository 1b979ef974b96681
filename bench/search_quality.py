"""Search quality: hypervolume reached by the default sampler vs random search at equal budget, over seeds.

A cheap two-objective study on the small space: a zero-cost proxy (NASWOT, maximized) and the measured latency of
the deploy form (minimized), no training. Every run goes through the full engine (Ray Tune + Optuna + SQLite).
Latency is cached by architecture across runs, so both samplers see the same value for the same network. The
hypervolume of each run's front is computed after normalizing both objectives to [0, 1] over the points of all
runs (reference point: the worst value of each), so 1.0 would be a single point best in both.

    python bench/search_quality.py [--trials 60] [--seeds 0 1 2] [--proxy naswot]

The searcher's samplers are built by `nas.run.sampling.make_sampler` (with the seed `nas search` uses); see
bench/sampler_quality.py for the same comparison on a problem whose true front is known (NAS-Bench-201).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import ray
import yaml
from optuna.trial import TrialState
from sampler_quality import hypervolume  # bench/: the same area, on this study's normalized objectives

from nas.run.search import run_search
from nas.study import Study


def run(workdir: Path, sampler: str, seed: int, trials: int, proxy: str) -> list[tuple[float, float]]:
    """One search; the (proxy, latency) values of its complete trials."""
    name = f"{sampler}-{seed}"
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "space": "small", "objectives": {proxy: "maximize", "latency_ms": "minimize"},
        "evaluator": {"data": {"name": "digits", "resolution": 16}, "zero_cost": {"batch_size": 64},
                      "latency": {"max_seconds": 0.3, "min_runs": 5, "max_attempts": 1}},
        "sampler": {"type": sampler, "seed": seed}, "budget": {"trials": trials}}, sort_keys=False))
    study = Study.load(path)
    run_search(study, log=lambda line: None)
    ostudy = optuna.load_study(study_name=name, storage=study.storage)
    i, j = study.metric_names.index(proxy), study.metric_names.index("latency_ms")  # the storage holds labels
    return [(t.values[i], t.values[j]) for t in ostudy.get_trials(states=(TrialState.COMPLETE,))]


def main() -> None:
    """Run every (sampler, seed) and print the hypervolumes."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--proxy", default="naswot", choices=("naswot", "synflow", "snip"))
    ap.add_argument("--default", default="tpe", help="the sampler type to compare with random (the study default)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="nas-quality-"))
    os.environ["NAS_CACHE_DIR"] = str(workdir / "cache")  # shared by the runs: one latency per architecture
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        for seed in args.seeds:
            for sampler in (args.default, "random"):
                start = time.perf_counter()
                results[sampler, seed] = run(workdir, sampler, seed, args.trials, args.proxy)
                print(f"  {sampler:>6} seed {seed}: {len(results[sampler, seed])} complete trials in "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
    finally:
        ray.shutdown()

    pooled = [p for pts in results.values() for p in pts]
    hi, lo = max(p[0] for p in pooled), min(p[0] for p in pooled)
    fast, slow = min(p[1] for p in pooled), max(p[1] for p in pooled)

    def normalized(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [((hi - a) / (hi - lo), (b - fast) / (slow - fast)) for a, b in points]

    hv = {key: hypervolume(normalized(pts)) for key, pts in results.items()}
    print(f"\nhypervolume ({args.proxy} up, latency down; {args.trials} trials per run, normalized over all runs)")
    print(f"{'seed':>6} {args.default:>8} {'random':>8}")
    for seed in args.seeds:
        print(f"{seed:>6} {hv[args.default, seed]:8.4f} {hv['random', seed]:8.4f}")
    mean_default = statistics.mean(hv[args.default, s] for s in args.seeds)
    mean_random = statistics.mean(hv["random", s] for s in args.seeds)
    verdict = "wins" if mean_default > mean_random else "does NOT win"
    print(f"{'mean':>6} {mean_default:8.4f} {mean_random:8.4f}   -> {args.default} {verdict} "
          f"({mean_default / mean_random:.3f}x random)")


if __name__ == "__main__":
    main()
