"""Proxy fidelity: does a cheap proxy rank architectures like the training that will really be done?

Pure statistics over accuracies, one row per architecture and one column per seed: rank correlation between proxy
and high fidelity (Kendall tau, Spearman rho) with bootstrap intervals that resample architectures, the seed-to-seed
noise at each fidelity, the overlap of the top architectures, a one-line verdict, and the choice of which trials of
a finished study to re-train.

The verdict rule: the proxy ranks the architectures *reliably* iff Kendall tau (of the seed-mean accuracies) is at
least 0.6 and the lower end of its 90 % bootstrap interval is above 0.3 — strong agreement that is unlikely to be
luck of the few architectures drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

__all__ = [
    "RELIABLE_TAU", "RELIABLE_LOW", "Interval", "SeedNoise", "Fidelity", "kendall", "spearman", "bootstrap",
    "seed_noise", "top_overlap", "is_reliable", "verdict", "compare", "band_pairs", "kendall_pairs", "band_tau",
    "BAND_RATIO",
]

RELIABLE_TAU = 0.6  # Kendall tau at least this ...
RELIABLE_LOW = 0.3  # ... and the lower end of its interval above this
BAND_RATIO = 1.5  # pairs of networks whose target latencies are within this factor: the ones a user chooses between


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap percentile interval at `level` (NaN where it is undefined)."""

    value: float
    low: float
    high: float
    level: float = 0.9

    def __str__(self) -> str:
        return f"{_fmt(self.value)} [{_fmt(self.low)}, {_fmt(self.high)}]"


@dataclass(frozen=True)
class SeedNoise:
    """Seed-to-seed noise of one fidelity: mean |difference| and mean std over seeds, and seed 0 vs 1 Kendall tau."""

    mean_abs_diff: float
    std: float
    tau: float
    seeds: int


@dataclass(frozen=True)
class Fidelity:
    """Everything measured about one proxy against one high fidelity on the same k architectures."""

    k: int
    tau: Interval
    rho: Interval
    proxy_noise: SeedNoise
    target_noise: SeedNoise
    top: int
    top_overlap: float
    band: Interval | None = None  # Kendall tau over the pairs of similar latency (None: no latencies given)
    band_pairs: int = 0

    @property
    def reliable(self) -> bool:
        """Whether the verdict rule holds for the weaker of the two figures (all pairs, and the latency band)."""
        return is_reliable(self.tau) and (self.band is None or is_reliable(self.band))

    def verdict(self) -> str:
        """The one-line verdict; with latencies it takes the weaker of all-pairs tau and band tau."""
        if self.band is None:
            return verdict(self.tau, self.k)
        how = "reliably" if self.reliable else "not reliably"
        return (f"the proxy ranks these architectures {how}: tau {self.tau} over all pairs, {self.band} over the "
                f"{self.band_pairs} pairs within {BAND_RATIO:g}x latency, k={self.k}")


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.2f}"


def _columns(acc: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Accuracies as a k×r float array (a flat sequence is one seed)."""
    a = np.asarray(acc, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"expected k accuracies or k×r accuracies (architectures × seeds), got shape {a.shape}")
    return a


def kendall(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall tau-b between `x` and `y` (ties allowed); NaN when either is constant or there are < 2 points."""
    return float(_kendall_rows(np.asarray(x, dtype=float)[None], np.asarray(y, dtype=float)[None])[0])


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rho between `x` and `y` (average ranks for ties); NaN when either is constant or < 2 points."""
    return float(_spearman_rows(np.asarray(x, dtype=float)[None], np.asarray(y, dtype=float)[None])[0])


def _kendall_rows(x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Kendall tau-b of each row pair of two m×k arrays, vectorized (the bootstrap computes thousands)."""
    i, j = np.triu_indices(x.shape[1], 1)
    out = np.empty(len(x))
    for s in range(0, len(x), chunk):
        sx = np.sign(x[s:s + chunk, i] - x[s:s + chunk, j])
        sy = np.sign(y[s:s + chunk, i] - y[s:s + chunk, j])
        den = np.sqrt(np.abs(sx).sum(1) * np.abs(sy).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = np.where(den > 0, (sx * sy).sum(1) / den, np.nan)
    return out


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair of two m×k arrays: the Pearson correlation of their average ranks."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


_ROWS = {kendall: _kendall_rows, spearman: _spearman_rows}


def bootstrap(stat: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float] | np.ndarray,
              y: Sequence[float] | np.ndarray, *, level: float = 0.9, n: int = 2000, seed: int = 0) -> Interval:
    """`stat(x, y)` with a seeded percentile interval from `n` resamples of the pairs (architectures) with replacement.

    Resamples on which the statistic is undefined (e.g. every drawn architecture tied) are left out.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two sequences of the same length, got shapes {x.shape} and {y.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    value = stat(x, y)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n, len(x)))
    rows = _ROWS.get(stat)
    draws = rows(x[idx], y[idx]) if rows else np.array([stat(x[i], y[i]) for i in idx])
    draws = draws[~np.isnan(draws)]
    if math.isnan(value) or len(draws) == 0:
        return Interval(value, math.nan, math.nan, level)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(low), float(high), level)


def seed_noise(acc: Sequence[Sequence[float]] | np.ndarray) -> SeedNoise:
    """Noise of k×r accuracies (architectures × seeds): mean |difference| of seed pairs, mean std, seed 0/1 tau."""
    a = _columns(acc)
    r = a.shape[1]
    if r < 2:
        return SeedNoise(math.nan, math.nan, math.nan, r)
    diffs = np.mean([np.abs(a[:, i] - a[:, j]) for i, j in combinations(range(r), 2)])
    return SeedNoise(float(diffs), float(np.mean(np.std(a, axis=1, ddof=1))), kendall(a[:, 0], a[:, 1]), r)


def top_overlap(proxy: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray, top: int) -> float:
    """Fraction of the `top` best architectures by `target` that are also among the `top` best by `proxy`."""
    p, t = np.asarray(proxy, dtype=float), np.asarray(target, dtype=float)
    if not 1 <= top <= len(p):
        raise ValueError(f"top must be in [1, {len(p)}], got {top}")
    # a stable sort on the negated value: ties keep architecture order, the same rule for both
    best_p = set(np.argsort(-p, kind="stable")[:top].tolist())
    best_t = set(np.argsort(-t, kind="stable")[:top].tolist())
    return len(best_p & best_t) / top


def is_reliable(tau: Interval) -> bool:
    """The verdict rule: tau >= 0.6 and the lower end of its interval > 0.3 (False when either is undefined)."""
    return not math.isnan(tau.value) and not math.isnan(tau.low) and tau.value >= RELIABLE_TAU \
        and tau.low > RELIABLE_LOW


def verdict(tau: Interval, k: int) -> str:
    """'the proxy ranks these architectures reliably: tau 0.71 [0.45, 0.88], k=12' (or 'not reliably')."""
    how = "reliably" if is_reliable(tau) else "not reliably"
    return f"the proxy ranks these architectures {how}: tau {tau}, k={k}"


def band_pairs(latency: Sequence[float] | np.ndarray, ratio: float = BAND_RATIO) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose latencies are within `ratio` of each other."""
    lat = np.asarray(latency, dtype=float)
    return [(i, j) for i in range(len(lat)) for j in range(i + 1, len(lat))
            if max(lat[i], lat[j]) <= ratio * min(lat[i], lat[j])]


def kendall_pairs(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                  pairs: Sequence[tuple[int, int]]) -> float:
    """Kendall tau-b over the given index pairs only; NaN without an untied pair."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(pairs):
        return math.nan
    i, j = np.asarray(pairs).T
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    den = math.sqrt(float(np.abs(sx).sum() * np.abs(sy).sum()))
    return float((sx * sy).sum() / den) if den > 0 else math.nan


def band_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, latency: Sequence[float] | np.ndarray,
             *, ratio: float = BAND_RATIO, level: float = 0.9, n: int = 2000, seed: int = 0) -> Interval:
    """Kendall tau over the pairs of similar latency, with a seeded bootstrap interval over architectures (a pair of
    two draws of the same architecture is no pair)."""
    x, y, lat = (np.asarray(v, dtype=float) for v in (x, y, latency))
    near = np.maximum(lat[:, None], lat[None, :]) <= ratio * np.minimum(lat[:, None], lat[None, :])
    value = kendall_pairs(x, y, band_pairs(lat, ratio))
    i, j = np.triu_indices(len(x), 1)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n, len(x)))
    a, b = idx[:, i], idx[:, j]
    mask = (a != b) & near[a, b]
    sx, sy = np.sign(x[a] - x[b]) * mask, np.sign(y[a] - y[b]) * mask
    den = np.sqrt(np.abs(sx).sum(1) * np.abs(sy).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.where(den > 0, (sx * sy).sum(1) / den, np.nan)
    draws = draws[~np.isnan(draws)]
    if math.isnan(value) or len(draws) == 0:
        return Interval(value, math.nan, math.nan, level)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(low), float(high), level)


def compare(proxy: Sequence[Sequence[float]] | np.ndarray, target: Sequence[Sequence[float]] | np.ndarray, *,
            top: int = 3, level: float = 0.9, n: int = 2000, seed: int = 0,
            latency: Sequence[float] | np.ndarray | None = None, ratio: float = BAND_RATIO) -> Fidelity:
    """Proxy vs high fidelity on the same k architectures (rows), r seeds each (columns); ranks use seed means.

    With `latency` (one per architecture) the comparison also covers the pairs within `ratio` of each other's
    latency, and the verdict takes the weaker figure.
    """
    p, t = _columns(proxy), _columns(target)
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"proxy has {p.shape[0]} architectures, target {t.shape[0]}: they must be the same ones")
    if p.shape[0] < 2:
        raise ValueError(f"need at least 2 architectures to rank, got {p.shape[0]}")
    pm, tm = p.mean(axis=1), t.mean(axis=1)
    top = min(top, len(pm))
    return Fidelity(k=len(pm), tau=bootstrap(kendall, pm, tm, level=level, n=n, seed=seed),
                    rho=bootstrap(spearman, pm, tm, level=level, n=n, seed=seed), proxy_noise=seed_noise(p),
                    target_noise=seed_noise(t), top=top, top_overlap=top_overlap(pm, tm, top),
                    band=None if latency is None else band_tau(pm, tm, latency, ratio=ratio, level=level, n=n,
                                                                 seed=seed),
                    band_pairs=0 if latency is None else len(band_pairs(latency, ratio)))
