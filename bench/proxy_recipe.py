"""Proxy recipe: which short-training recipe ranks networks like converged training of their targets?

The headline's named networks (adapted to the input like the study adapts every network) and k seeded random
architectures of the small space (under the study's latency cap, stand-in: MACs) are trained

* at the proxy (proxy width, a few epochs) with each recipe of ONE small grid shared by every network, and
* at the final stage's setting: the target network (target width and resolution, all training images) with a recipe
  meant to converge (AdamW, warm-up, cosine decay, enough epochs that the last quarter is flat),

for each seed. Per recipe it prints every network's proxy accuracy (seed mean ± spread, × chance, whether it is
within noise of chance), Kendall tau of proxy vs final over all networks and over the pairs of similar target latency
(within 1.5×), with 90 % bootstrap intervals that resample networks, and the CPU cost of one proxy trial. For the
final runs it prints accuracy ± spread, the rise over the last quarter of epochs against the seed noise (converged
or not), and the CPU-minutes per network that size the final stage.

Every run is cached in a JSON file per (data, stage, seed) under bench/.cache/, so an interrupted bench resumes,
stages and seeds can run in separate processes, and `--report-only` prints from the cache.

    python bench/proxy_recipe.py [--stage proxy final] [--recipes sgd_linear adamw_2e-3 ...] [--seeds 0 1]
                                 [--k 6] [--proxy-epochs 4] [--final-epochs 15] [--report-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from evaluators import (
    Data,
    DataConfig,
    LatencyConfig,
    TrainConfig,
    load_data,
    measure_cost,
    measure_latency,
    train_model,
)
from nas.record.rank import Interval, bootstrap, kendall
from space import create_model, get_arch
from space.adapt import adapt_input
from space.arch import Arch
from space.errors import SpecError
from space.search_space import Space

NAMED = ("mobilenet_v2_050", "resnet18", "repvgg_a0", "ghostnet_050")
CACHE = Path(__file__).resolve().parent / ".cache" / "proxy_recipe"
BAND = 1.5  # pairs whose target latencies are within this ratio are "similar"
MAX_LATENCY_MS = 25.0  # the headline study's constraint on the target


def _linear(batch: int) -> float:
    """The linear scaling rule (Goyal et al.): SGD lr 0.1 per 256 images of the batch."""
    return 0.1 * batch / 256


# The grid: TrainConfig fields (epochs and batch size come from the command line). `lr` may be a function of the batch.
RECIPES: dict[str, dict[str, Any]] = {
    "sgd_0.1": {"optimizer": "sgd", "lr": 0.1, "warmup_epochs": 0.5, "weight_decay": 5e-4},  # the inherited one
    "sgd_linear": {"optimizer": "sgd", "lr": _linear, "warmup_epochs": 1.0, "weight_decay": 5e-4},
    "sgd_linear_x4": {"optimizer": "sgd", "lr": lambda b: 4 * _linear(b), "warmup_epochs": 1.0, "weight_decay": 5e-4},
    "adamw_1e-3": {"optimizer": "adamw", "lr": 1e-3, "warmup_epochs": 1.0, "weight_decay": 0.05},
    "adamw_2e-3": {"optimizer": "adamw", "lr": 2e-3, "warmup_epochs": 1.0, "weight_decay": 0.05},
    "adamw_5e-3": {"optimizer": "adamw", "lr": 5e-3, "warmup_epochs": 1.0, "weight_decay": 0.05},
}
FINAL = "adamw_2e-3"  # the final stage's recipe (with its own, longer epochs)


@dataclass(frozen=True)
class Net:
    """One network of the comparison: its (adapted) architecture and target cost."""

    name: str
    arch: Arch
    macs: float  # target, at the target width and resolution
    params: float
    latency_ms: float


def networks(k: int, resolution: int, target_width: float, seed: int = 0) -> list[tuple[str, Arch]]:
    """The named points, then k seeded random points of the small space under the MAC span of the named targets.

    Every architecture goes through space.adapt like a study's trials do (small-input stems).
    """
    def adapted(arch: Arch) -> Arch:
        return adapt_input(arch, resolution, 2).arch.validate()

    def macs(arch: Arch) -> float:
        return measure_cost(arch.scaled(target_width), input_size=resolution, num_classes=10, in_chans=1).macs

    out = [(n, adapted(get_arch(n))) for n in NAMED]
    top = max(macs(a) for _, a in out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space.load("small")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(out) < len(NAMED) + k:
        trial = study.ask()
        try:
            arch = adapted(space.sample(trial))
        except SpecError:
            continue
        if macs(arch) <= top:
            out.append((f"random{trial.number}", arch))
    return out


def describe(nets: list[tuple[str, Arch]], resolution: int, target_width: float, path: Path) -> list[Net]:
    """Target MACs, params and latency (batch 1, 1 thread, eager) of each network, measured once and cached."""
    known = json.loads(path.read_text()) if path.is_file() else {}
    out = []
    for name, arch in nets:
        key = f"{name}|{arch.hash}|w{target_width}|r{resolution}"
        if key not in known:
            target = arch.scaled(target_width)
            cost = measure_cost(target, input_size=resolution, num_classes=10, in_chans=1)
            lat = measure_latency(target, LatencyConfig(resolution=resolution, batch_size=1, threads=1,
                                                        backend="eager", max_seconds=2.0), num_classes=10, in_chans=1)
            known[key] = {"macs": cost.macs, "params": cost.params, "latency_ms": lat.median_ms,
                          "rel_iqr": lat.rel_iqr, "loaded": lat.loaded}
            path.write_text(json.dumps(known, indent=1))
        k = known[key]
        out.append(Net(name, arch, k["macs"], k["params"], k["latency_ms"]))
    return out


@dataclass(frozen=True)
class Setting:
    """One training setting: stage (proxy or final), recipe, width, epochs, batch, training images."""

    stage: str
    recipe: str
    width: float
    epochs: int
    batch: int
    images: int | None

    def key(self, net: str, seed: int) -> str:
        """The cache key of one run."""
        return f"{self.stage}|{net}|{self.recipe}|w{self.width}|e{self.epochs}|b{self.batch}|n{self.images}|s{seed}"

    def config(self, seed: int) -> TrainConfig:
        """The TrainConfig of one run."""
        fields = dict(RECIPES[self.recipe])
        if callable(fields["lr"]):
            fields["lr"] = fields["lr"](self.batch)
        return TrainConfig(epochs=self.epochs, batch_size=self.batch, seed=seed, threads=1, **fields)


def subset(data: Data, n: int | None) -> Data:
    """The first n training images (the split is already shuffled and seeded), like the study's train_images."""
    if n is None or n >= len(data.y_train):
        return data
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])


def train_all(data: Data, nets: list[Net], settings: list[Setting], seeds: list[int], cache: Path) -> None:
    """Train every (seed, setting, network) not yet in the seed's cache file, saving each run as it ends."""
    done = load_runs(cache)
    for seed in seeds:
        todo = [(s, n) for s in settings for n in nets]
        for i, (s, net) in enumerate(todo, 1):
            key = s.key(net.name, seed)
            if key in done:
                continue
            # one file per stage and seed: a proxy and a final process of the same seed never write the same file
            path = cache / f"runs-{s.stage}-s{seed}.json"
            runs: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
            torch.manual_seed(seed)
            model = create_model(net.arch, num_classes=data.num_classes, in_chans=data.in_chans, width_mult=s.width)
            cfg = s.config(seed)
            cpu = time.process_time()
            result = train_model(model, subset(data, s.images), cfg)
            cpu = time.process_time() - cpu
            runs[key] = {"net": net.name, "stage": s.stage, "recipe": s.recipe, "seed": seed, "lr": cfg.lr,
                         "accuracy": result.accuracy, "history": result.history, "losses": result.losses,
                         "cpu_s": cpu}
            path.write_text(json.dumps(runs, indent=1))
            print(f"  [{i}/{len(todo)}] {key}: {result.accuracy:.3f} (loss {result.losses[-1]:.3f}) in {cpu:.0f} "
                  f"CPU-s", flush=True)


def load_runs(cache: Path) -> dict[str, dict]:
    """Every cached run, all seeds."""
    return {k: v for p in sorted(cache.glob("runs-*.json")) for k, v in json.loads(p.read_text()).items()}


def band_tau(x: np.ndarray, y: np.ndarray, latency: np.ndarray, ratio: float = BAND) -> float:
    """Kendall tau-b of x vs y over the pairs whose latencies are within `ratio` of each other (NaN if none)."""
    i, j = np.triu_indices(len(x), 1)
    lo, hi = np.minimum(latency[i], latency[j]), np.maximum(latency[i], latency[j])
    keep = hi <= ratio * lo
    sx, sy = np.sign(x[i] - x[j])[keep], np.sign(y[i] - y[j])[keep]
    den = math.sqrt(np.abs(sx).sum() * np.abs(sy).sum())
    return float((sx * sy).sum() / den) if den > 0 else math.nan


def band_interval(x: np.ndarray, y: np.ndarray, latency: np.ndarray) -> tuple[Interval, int]:
    """band_tau with a 90 % bootstrap interval (resampling networks), and how many pairs it is over."""
    def stat(ix: np.ndarray, _: np.ndarray) -> float:
        idx = ix.astype(int)
        return band_tau(x[idx], y[idx], latency[idx])

    i, j = np.triu_indices(len(x), 1)
    pairs = int((np.maximum(latency[i], latency[j]) <= BAND * np.minimum(latency[i], latency[j])).sum())
    index = np.arange(len(x), dtype=float)
    return bootstrap(stat, index, index), pairs


def chance_bound(chance: float, n_val: int) -> float:
    """Accuracy below which a network is within noise of chance: chance + 3 binomial standard errors."""
    return chance + 3 * math.sqrt(chance * (1 - chance) / n_val)


def last_quarter_rise(history: list[float]) -> float:
    """How much validation accuracy rises over the last quarter of epochs (least-squares trend × its span)."""
    q = max(2, math.ceil(len(history) / 4))
    h = np.asarray(history[-q:])
    slope = np.polyfit(np.arange(len(h)), h, 1)[0]
    return float(slope * (len(h) - 1))


def _converged(rise: float, noise: float) -> str:
    return "?" if math.isnan(noise) else "yes" if rise <= noise else "NO"


def report(data: Data, nets: list[Net], proxies: list[Setting], final: Setting, seeds: list[int],
           final_seeds: list[int], runs: dict[str, dict]) -> None:
    """Print the final runs, then per proxy recipe the accuracies and the rank fidelity against the final runs."""
    chance = 1 / data.num_classes
    bound = chance_bound(chance, len(data.y_val))
    lat = np.array([n.latency_ms for n in nets])

    def acc(s: Setting) -> np.ndarray | None:
        rows = [[runs.get(s.key(n.name, seed)) for seed in (final_seeds if s.stage == "final" else seeds)]
                for n in nets]
        if any(r is None for row in rows for r in row):
            return None
        return np.array([[r["accuracy"] for r in row] for row in rows])

    print(f"\ndata {data.name}: {len(data.y_train)} train / {len(data.y_val)} val images, chance {chance:.2f}, "
          f"'at chance' below {bound:.3f} (chance + 3 binomial s.e.); seeds {seeds}; band: target latency within "
          f"{BAND}x (batch 1, 1 thread, eager); final seeds {final_seeds}")
    print(f"{'network':<18} {'MACs(M)':>8} {'params(M)':>9} {'lat(ms)':>8}")
    for n in nets:
        print(f"{n.name:<18} {n.macs / 1e6:>8.1f} {n.params / 1e6:>9.2f} {n.latency_ms:>8.3f}")
    fa = acc(final)
    if fa is None:
        print(f"\nfinal runs incomplete ({final.recipe}, x{final.width}, {final.epochs} epochs)")
        return
    noise = float(np.mean(np.abs(fa[:, 0] - fa[:, 1]))) if len(final_seeds) > 1 else math.nan
    print(f"\n== final: target x{final.width}, {final.recipe}, {final.epochs} epochs, batch {final.batch}, all "
          f"{len(data.y_train)} images; seed noise (mean |seed 0 - seed 1|) {noise:.4f}")
    print(f"{'network':<18} {'final':>13} {'rise last 1/4':>13} {'converged':>9} {'last loss':>9} {'CPU-min/run':>11}")
    for n, a in zip(nets, fa):
        rs = [runs[final.key(n.name, s)] for s in final_seeds]
        rise = statistics.mean(last_quarter_rise(r["history"]) for r in rs)
        cpu = statistics.mean(r["cpu_s"] for r in rs) / 60
        loss = statistics.mean(r["losses"][-1] for r in rs)
        print(f"{n.name:<18} {a.mean():>6.3f} ± {np.ptp(a) / 2:.3f} {rise:>+13.4f} {_converged(rise, noise):>9} "
              f"{loss:>9.3f} {cpu:>11.2f}")
    fm = fa.mean(axis=1)
    per_net = {n.name: statistics.mean(runs[final.key(n.name, s)]["cpu_s"] for s in final_seeds) / 60
               for n in nets}
    named = statistics.mean(per_net[n] for n in NAMED)
    rest = statistics.mean(v for k, v in per_net.items() if k not in NAMED)
    print(f"  final CPU-minutes per run: named {named:.2f} mean, random {rest:.2f} mean, "
          f"max {max(per_net.values()):.2f}")
    summary = []
    for p in proxies:
        pa = acc(p)
        if pa is None:
            print(f"\n== proxy {p.recipe}: incomplete")
            continue
        pm = pa.mean(axis=1)
        cpu = statistics.mean(runs[p.key(n.name, s)]["cpu_s"] for n in nets for s in seeds) / 60
        lr = runs[p.key(nets[0].name, seeds[0])]["lr"]
        print(f"\n== proxy {p.recipe} (lr {lr:g}): x{p.width}, {p.epochs} epochs, batch {p.batch}, "
              f"{p.images or len(data.y_train)} images; {cpu:.2f} CPU-min per proxy trial")
        print(f"{'network':<18} {'proxy':>13} {'x chance':>8} {'at chance':>9} {'final':>6}")
        for n, a, f in zip(nets, pa, fm):
            print(f"{n.name:<18} {a.mean():>6.3f} ± {np.ptp(a) / 2:.3f} {a.mean() / chance:>8.2f} "
                  f"{'YES' if a.mean() < bound else 'no':>9} {f:>6.3f}")
        tau = bootstrap(kendall, pm, fm)
        band, pairs = band_interval(pm, fm, lat)
        named_min = min(a.mean() / chance for n, a in zip(nets, pa) if n.name in NAMED)
        at_chance = sum(a.mean() < bound for a in pa)
        print(f"  tau all pairs {tau}   tau within {BAND}x latency {band} ({pairs} pairs)   named min x chance "
              f"{named_min:.2f}   at chance {at_chance}/{len(nets)}")
        summary.append((p.recipe, lr, tau, band, pairs, named_min, at_chance, cpu))
    if summary:
        print(f"\n{'recipe':<14} {'lr':>7} {'tau all [90%]':<21} {'tau band [90%]':<21} {'pairs':>5} "
              f"{'named min xch':>13} {'at chance':>9} {'CPU-min/trial':>13}")
        for recipe, lr, tau, band, pairs, named_min, at_chance, cpu in summary:
            print(f"{recipe:<14} {lr:>7.4g} {str(tau):<21} {str(band):<21} {pairs:>5} {named_min:>13.2f} "
                  f"{at_chance:>9} {cpu:>13.2f}")


def main() -> None:
    """Train (or read from the cache) the proxy and final runs and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="cluttered_digits")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--k", type=int, default=6, help="random architectures besides the named ones")
    ap.add_argument("--recipes", nargs="+", default=["sgd_linear", "adamw_2e-3", "adamw_5e-3"], choices=RECIPES)
    ap.add_argument("--proxy-width", type=float, default=0.5)
    ap.add_argument("--proxy-epochs", type=int, default=4)
    ap.add_argument("--proxy-batch", type=int, default=64)
    ap.add_argument("--proxy-images", type=int, default=None, help="training images of the proxy (default all)")
    ap.add_argument("--target-width", type=float, default=1.0)
    ap.add_argument("--final-epochs", type=int, default=15)
    ap.add_argument("--final-batch", type=int, default=64)
    ap.add_argument("--final-recipe", default=FINAL, choices=RECIPES)
    ap.add_argument("--stage", nargs="+", default=["proxy", "final"], choices=["proxy", "final"])
    ap.add_argument("--only", nargs="*", default=None, help="train only these networks (names)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="train these seeds (separate processes ok)")
    ap.add_argument("--report-seeds", type=int, nargs="+", default=None, help="proxy seeds to report (default --seeds)")
    ap.add_argument("--final-report-seeds", type=int, nargs="+", default=None,
                    help="final seeds to report (default --report-seeds)")
    ap.add_argument("--report-only", action="store_true", help="print from the cache, train nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = CACHE / f"{args.data}@{args.resolution}"
    cache.mkdir(parents=True, exist_ok=True)
    data = load_data(DataConfig(name=args.data, resolution=args.resolution))
    nets = describe(networks(args.k, args.resolution, args.target_width), args.resolution, args.target_width,
                    cache / f"nets-w{args.target_width}.json")
    proxies = [Setting("proxy", r, args.proxy_width, args.proxy_epochs, args.proxy_batch, args.proxy_images)
               for r in args.recipes]
    final = Setting("final", args.final_recipe, args.target_width, args.final_epochs, args.final_batch, None)
    if not args.report_only:
        todo = [n for n in nets if args.only is None or n.name in args.only]
        settings = (proxies if "proxy" in args.stage else []) + ([final] if "final" in args.stage else [])
        train_all(data, todo, settings, args.seeds, cache)
    seeds = args.report_seeds or args.seeds
    report(data, nets, proxies, final, seeds, args.final_report_seeds or seeds, load_runs(cache))


if __name__ == "__main__":
    main()
