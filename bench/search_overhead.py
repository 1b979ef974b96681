"""Per-trial overhead of the search engine (Optuna ask/tell on SQLite + Ray Tune scheduling), target <= 0.5 s.

A trivial trial function reports fixed metrics at once, so nearly all of a trial's time is the engine's: sampling,
the RDB writes, Ray Tune placing the trial on a (reused) worker and collecting its reports. Each concurrent slot
spends `concurrency * wall / trials` seconds per trial; the overhead is that minus the trial function's own time.
The first trials also pay for starting the workers once; the steady state excludes them.

    python bench/search_overhead.py [--trials 60] [--concurrency 2] [--epochs 1]
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

from nas.run.search import run_search
from nas.run.trial import Job, Reporter
from nas.study import Study
from space import Arch


def trivial(arch: Arch, job: Job, report: Reporter) -> None:
    """A trial function with no work: fixed metrics, one report per epoch."""
    report.measured({"latency_ms": 1.0, "params": 1000.0})
    for epoch in range(1, job.epochs + 1):
        report.epoch(epoch, 0.5)


def main() -> None:
    """Run the bench and print the overhead per trial."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1, help="reports per trial")
    ap.add_argument("--sampler", default="tpe")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="nas-overhead-"))
    os.environ["NAS_CACHE_DIR"] = str(workdir / "cache")
    path = workdir / "overhead.yaml"
    path.write_text(yaml.safe_dump({
        "space": "small", "objectives": ["accuracy", "latency_ms"], "budget": {"trials": args.trials},
        "evaluator": {"train": {"epochs": args.epochs}}, "early_stopping": "off", "concurrency": args.concurrency,
        "sampler": {"type": args.sampler, "seed": 0}}))
    study = Study.load(path)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        run_search(study, evaluate=trivial, log=lambda line: None)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()

    trials = optuna.load_study(study_name=study.name, storage=study.storage).trials
    ran = [t for t in trials if "seconds" in t.user_attrs and "duplicate_of" not in t.user_attrs]
    inner = statistics.mean(t.user_attrs["seconds"] for t in ran)
    ends = sorted(t.datetime_complete.timestamp() for t in trials if t.state.is_finished())
    warm = ends[len(ends) // 4:]  # the first quarter pays for starting the workers
    steady = (warm[-1] - warm[0]) / max(1, len(warm) - 1)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    dups = sum("duplicate_of" in t.user_attrs for t in trials)
    print(f"{len(trials)} trials ({len(ran)} run, {dups} duplicates told from storage, {failed} failed), "
          f"concurrency {args.concurrency}, {args.epochs} report(s) each, sampler {args.sampler}, "
          f"{os.cpu_count()} CPUs")
    print(f"wall {wall:.1f} s including Ray Tune start-up and worker spawn; trial function {inner * 1e3:.1f} ms")
    per_slot = args.concurrency * wall / len(trials)
    print(f"overall:      {per_slot:.3f} s per trial per slot -> overhead {per_slot - inner:.3f} s per trial")
    per_slot_steady = args.concurrency * steady
    print(f"steady state: {per_slot_steady:.3f} s per trial per slot -> overhead {per_slot_steady - inner:.3f} s "
          "per trial (target <= 0.5 s)")


if __name__ == "__main__":
    main()
