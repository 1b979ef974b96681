"""Proxy fidelity per embedded dataset: does the search's proxy rank architectures like a longer, wider training?

For each dataset, the same k architectures (points of the small space drawn with a fixed seed under a MAC budget,
the cheap region a latency-capped study trains, plus any named points given) are trained at the proxy (half width,
the headline study's 4 epochs) and at a high fidelity (full width, 6 epochs), 2 seeds each, one thread. It
prints per dataset: Kendall tau (90 % bootstrap interval) and Spearman rho between the seed-mean accuracies, the
seed-to-seed noise at both fidelities, the top-3 overlap, CPU-minutes (process time), rank fidelity per CPU-minute
(tau / CPU-minutes of one proxy run, averaged over the runs), and how ASHA's early rungs rank: Kendall tau between
the proxy's accuracy after epoch e and after its last epoch (and the high fidelity), from the same runs.

Every run is cached in a JSON file per dataset, so an interrupted bench resumes, datasets can be trained in separate
processes, and a final invocation prints them all from one set of runs.

    python bench/proxy_fidelity.py [--datasets digits@16 mnist5k@16 ...] [--k 10] [--epochs 4 6] [--limit-train N]
                                   [--named resnet18 ...] [--seeds 0] [--report-only] [--quick]

The defaults are the recorded comparison (about 25 CPU-minutes; every dataset capped at 1,500 training images, so
they differ in content, not size). Larger settings, e.g. `cluttered_mnist5k@24` or `mnist5k@28 --limit-train 4000`,
cost 3-8x as much per run.

The zoo's named points are not in the default set: they downsample 32x, so at 16 px they either sit near chance
(mobilenet_v2_050, ghostnet_050: ranking them last is free and inflates tau) or cost several sampled points at full
width (resnet18, repvgg_a0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch

from evaluators import Data, DataConfig, TrainConfig, load_data, measure_cost, train_model
from nas.record.rank import Fidelity, bootstrap, compare, kendall
from space import create_model, get_arch
from space.arch import Arch
from space.errors import SpecError
from space.search_space import Space

DATASETS = ("digits@16", "mnist5k@16", "cluttered_digits@16")
MAX_MACS = 4e6  # full width at 16 px: below the space's median (about 9 M), the cheap region a latency cap keeps
SEEDS = (0, 1)


@dataclass(frozen=True)
class Budget:
    """One training budget: channel multiplier and epochs."""

    name: str
    width_mult: float
    epochs: int


def architectures(k: int, named: list[str], seed: int = 0) -> list[tuple[str, Arch]]:
    """k architectures: the named points, then points of the small space drawn at random under the MAC budget."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space.load("small")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = [(n, get_arch(n)) for n in named[:k]]
    while len(out) < k:
        trial = study.ask()
        try:
            arch = space.sample(trial)
        except SpecError:
            continue
        if measure_cost(arch, input_size=16, num_classes=10, in_chans=1, deploy=False).macs <= MAX_MACS:
            out.append((f"sampled{trial.number}", arch))
    return out


def parse_dataset(text: str, limit_train: int | None) -> DataConfig:
    """'name@resolution' (or 'name', at 16 px) as a DataConfig."""
    name, _, res = text.partition("@")
    return DataConfig(name=name, resolution=int(res or 16), limit_train=limit_train)


def train_all(label: str, data: Data, archs: list[tuple[str, Arch]], budgets: list[Budget], seeds: list[int],
              cache: Path, batch_size: int) -> None:
    """Train every (seed, architecture, budget) not yet in the seed's cache file, saving each run as it ends."""
    for seed in seeds:
        path = cache / f"{label}-s{seed}.json"
        runs: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
        todo = [(a, f) for a in archs for f in budgets]
        for n, ((name, arch), fid) in enumerate(todo, 1):
            key = f"{name}|{fid.name}|w{fid.width_mult}|e{fid.epochs}|b{batch_size}|s{seed}"
            if key in runs:
                continue
            torch.manual_seed(seed)
            model = create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans,
                                 width_mult=fid.width_mult)
            cpu, wall = time.process_time(), time.perf_counter()
            cfg = TrainConfig(epochs=fid.epochs, batch_size=batch_size, lr=0.1, seed=seed)
            result = train_model(model, data, cfg)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            runs[key] = {"arch": name, "fidelity": fid.name, "width_mult": fid.width_mult, "epochs": fid.epochs,
                         "batch_size": batch_size, "seed": seed, "accuracy": result.accuracy,
                         "history": result.history, "cpu_s": cpu, "wall_s": wall}
            path.write_text(json.dumps(runs, indent=1))
            print(f"  {label} seed {seed} [{n}/{len(todo)}] {key}: {result.accuracy:.4f} in {cpu:.0f} CPU-s",
                  flush=True)


def load_runs(label: str, cache: Path) -> list[dict]:
    """Every cached run of a dataset (all seeds)."""
    return [r for p in sorted(cache.glob(f"{label}-s*.json")) for r in json.loads(p.read_text()).values()]


@dataclass
class Summary:
    """What the bench reports for one dataset."""

    label: str
    fidelity: Fidelity
    proxy_cpu_min: float  # one proxy run, mean over architectures and seeds
    total_cpu_min: float  # every run of this dataset
    spread: float  # max - min of the proxy's seed-mean accuracy
    rungs: list[tuple[int, float, str]]  # (epoch, tau vs proxy final, tau vs high fidelity with CI), seed means
    single: list[tuple[float, float]]  # per seed, as one search trial sees it: (tau vs high, epoch-1 vs final tau)

    @property
    def tau_per_cpu_min(self) -> float:
        """Rank fidelity bought per CPU-minute of one proxy trial."""
        return self.fidelity.tau.value / self.proxy_cpu_min


def summarize(label: str, runs: list[dict], archs: list[str], fidelities: list[Budget],
              batch_size: int, macs: list[float] | None = None) -> Summary | None:
    """The statistics of one dataset's runs (None while any is missing)."""
    proxy, high = fidelities
    wanted = {(f.name, f.width_mult, f.epochs, batch_size) for f in fidelities}
    table = {(r["arch"], r["fidelity"], r["seed"]): r for r in runs
             if (r["fidelity"], r["width_mult"], r["epochs"], r["batch_size"]) in wanted}
    runs = list(table.values())
    if any((a, f.name, s) not in table for a in archs for f in fidelities for s in SEEDS):
        return None
    acc = {f.name: np.array([[table[a, f.name, s]["accuracy"] for s in SEEDS] for a in archs]) for f in fidelities}
    fid = compare(acc[proxy.name], acc[high.name], latency=macs)  # the band: pairs within 1.5x of each other's MACs
    seeds_hist = np.array([[table[a, proxy.name, s]["history"] for s in SEEDS] for a in archs])  # k × seeds × epochs
    hist = seeds_hist.mean(axis=1)
    high_mean = acc[high.name].mean(axis=1)
    single = [(kendall(acc[proxy.name][:, i], high_mean), kendall(seeds_hist[:, i, 0], seeds_hist[:, i, -1]))
              for i in range(len(SEEDS))]
    rungs = [(e + 1, kendall(hist[:, e], hist[:, -1]), str(bootstrap(kendall, hist[:, e], high_mean)))
             for e in range(hist.shape[1])]
    proxy_cpu = [r["cpu_s"] for r in runs if r["fidelity"] == proxy.name and r["arch"] in archs]
    total = sum(r["cpu_s"] for r in runs if r["arch"] in archs)
    mean_proxy = acc[proxy.name].mean(axis=1)
    return Summary(label, fid, statistics.mean(proxy_cpu) / 60, total / 60, float(np.ptp(mean_proxy)), rungs,
                   single)


def report(s: Summary) -> None:
    """Print one dataset's numbers."""
    f = s.fidelity
    print(f"\n== {s.label}: k={f.k}, seeds={len(SEEDS)}")
    print(f"  Kendall tau {f.tau}   Spearman rho {f.rho}   top-{f.top} overlap {f.top_overlap:.2f}")
    if f.band is not None:
        print(f"  Kendall tau within the cost band (pairs within 1.5x MACs of the full-width network, a stand-in for "
              f"latency; {f.band_pairs} pairs): {f.band}")
    for name, n in (("proxy", f.proxy_noise), ("high ", f.target_noise)):
        print(f"  seed noise {name}: mean |diff| {n.mean_abs_diff:.4f}, std {n.std:.4f}, "
              f"seed 0 vs 1 tau {n.tau:.2f}")
    print(f"  proxy accuracy spread (best - worst seed mean) {s.spread:.4f}")
    print(f"  CPU-minutes: {s.proxy_cpu_min:.2f} per proxy run, {s.total_cpu_min:.1f} for this dataset's runs; "
          f"tau per proxy CPU-minute {s.tau_per_cpu_min:.2f}")
    for epoch, vs_final, vs_high in s.rungs:
        print(f"  proxy epoch {epoch} (seed means): tau vs proxy final {vs_final:.2f}, vs high fidelity {vs_high}")
    for seed, (vs_high, rung) in zip(SEEDS, s.single):
        print(f"  one seed ({seed}), as a search trial sees it: tau vs high fidelity {vs_high:.2f}, "
              f"epoch 1 vs final {rung:.2f}")
    print(f"  {f.verdict()}")


def main() -> None:
    """Train (or read from the cache) every dataset's runs and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), help="name@resolution ...")
    ap.add_argument("--k", type=int, default=10, help="architectures per dataset")
    ap.add_argument("--epochs", type=int, nargs=2, default=[4, 6], metavar=("PROXY", "HIGH"))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit-train", type=int, default=1500, help="at most N training images per dataset")
    ap.add_argument("--named", nargs="*", default=[], help="named points to include (counted in k)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                    help="train only these seeds (run seeds in separate processes; the report needs 0 and 1)")
    ap.add_argument("--report-only", action="store_true", help="print from the cache, train nothing")
    ap.add_argument("--quick", action="store_true", help="smoke run: k=4, 1 and 2 epochs, 256/128 images")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "nas" / "proxy_fidelity", help="where each dataset's runs are kept (resume, combine)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    k, (pe, he) = (4, (1, 2)) if args.quick else (args.k, args.epochs)
    fidelities = [Budget("proxy", 0.5, pe), Budget("high", 1.0, he)]
    archs = architectures(k, args.named)
    print(f"architectures: {', '.join(n for n, _ in archs)}; proxy {fidelities[0]}, high {fidelities[1]}; "
          f"seeds {args.seeds}, batch {args.batch_size}, 1 thread")
    args.cache.mkdir(parents=True, exist_ok=True)
    summaries = []
    for text in args.datasets:
        cfg = parse_dataset(text, args.limit_train)
        if args.quick:
            cfg = DataConfig(name=cfg.name, resolution=cfg.resolution, limit_train=256, limit_val=128)
        data = load_data(cfg)
        label = f"{cfg.name}@{cfg.resolution}-{len(data.y_train)}/{len(data.y_val)}".replace("/", "v")
        if not args.report_only:
            train_all(label, data, archs, fidelities, args.seeds, args.cache, args.batch_size)
        macs = [float(measure_cost(a, input_size=cfg.resolution, num_classes=data.num_classes, in_chans=data.in_chans,
                                   deploy=False).macs) for _, a in archs]
        s = summarize(label, load_runs(label, args.cache), [n for n, _ in archs], fidelities, args.batch_size, macs)
        if s is not None:
            report(s)
            summaries.append(s)
    if len(summaries) > 1:
        print(f"\n{'dataset':<30} {'tau [90% CI]':<21} {'1-seed tau':>10} {'noise proxy':>11} {'noise high':>10} "
              f"{'CPU-min/run':>11} {'tau/CPU-min':>11} {'ep1 vs final':>12}")
        for s in summaries:
            f = s.fidelity
            print(f"{s.label:<30} {str(f.tau):<21} {statistics.mean(t for t, _ in s.single):>10.2f} "
                  f"{f.proxy_noise.mean_abs_diff:>11.4f} {f.target_noise.mean_abs_diff:>10.4f} "
                  f"{s.proxy_cpu_min:>11.2f} {s.tau_per_cpu_min:>11.2f} {s.rungs[0][1]:>12.2f}")

if __name__ == "__main__":
    main()
