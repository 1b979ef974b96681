"""Proxy-fidelity statistics on synthetic accuracies: rank correlations, bootstrap intervals, seed noise, top-k
overlap, the verdict rule, and which trials of a finished study are picked for re-training."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from nas.record.fidelity import accuracy_of, pick_trials
from nas.record.rank import (
    Interval,
    bootstrap,
    compare,
    is_reliable,
    kendall,
    seed_noise,
    spearman,
    top_overlap,
    verdict,
)


def brute_tau(x: list[float], y: list[float]) -> float:
    """Kendall tau-a by counting pairs (no ties in the inputs used here)."""
    s = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in combinations(range(len(x)), 2))
    return s / (len(x) * (len(x) - 1) / 2)


def test_rank_correlations() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random(9).tolist(), rng.random(9).tolist()
    assert kendall(x, y) == pytest.approx(brute_tau(x, y))
    assert kendall(x, x) == 1.0 and kendall(x, [-v for v in x]) == -1.0
    assert spearman(x, [v ** 3 for v in x]) == pytest.approx(1.0)  # ranks only
    assert math.isnan(kendall([0.5] * 4, x[:4])) and math.isnan(spearman(x[:1], y[:1]))
    # with ties, tau-b and average-rank rho, as scipy computes them
    tx, ty = rng.integers(0, 4, 20).tolist(), rng.integers(0, 3, 20).tolist()
    assert kendall(tx, ty) == pytest.approx(stats.kendalltau(tx, ty).statistic)
    assert spearman(tx, ty) == pytest.approx(stats.spearmanr(tx, ty).statistic)


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    rng = np.random.default_rng(1)
    x = rng.random(15)
    y = x + rng.normal(0, 0.3, 15)
    a = bootstrap(kendall, x, y, seed=3, n=500)
    assert a == bootstrap(kendall, x, y, seed=3, n=500)
    assert a != bootstrap(kendall, x, y, seed=4, n=500)
    assert a.low <= a.value <= a.high and a.level == 0.9
    # the vectorized resampling agrees with calling the statistic on each resample
    assert bootstrap(lambda u, v: kendall(u, v), x, y, seed=3, n=500) == a
    wider = bootstrap(kendall, x, y, seed=3, n=500, level=0.99)
    assert wider.low <= a.low and wider.high >= a.high
    perfect = bootstrap(kendall, x, 2 * x, n=200)  # every resample of a monotone relation is monotone
    assert (perfect.value, perfect.low, perfect.high) == (1.0, 1.0, 1.0)
    flat = bootstrap(kendall, x, np.ones(15), n=50)
    assert math.isnan(flat.value) and math.isnan(flat.low)


def test_seed_noise() -> None:
    acc = [[0.90, 0.92], [0.80, 0.80], [0.70, 0.64]]
    n = seed_noise(acc)
    assert n.mean_abs_diff == pytest.approx((0.02 + 0.0 + 0.06) / 3)
    assert n.std == pytest.approx(np.mean([np.std(r, ddof=1) for r in acc]))
    assert n.tau == pytest.approx(1.0) and n.seeds == 2
    three = seed_noise([[0.9, 0.8, 0.7], [0.5, 0.5, 0.5]])
    assert three.mean_abs_diff == pytest.approx((0.1 + 0.2 + 0.1 + 0) / 2 / 3)
    one = seed_noise([0.9, 0.8])
    assert one.seeds == 1 and math.isnan(one.mean_abs_diff)


def test_top_overlap() -> None:
    target = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert top_overlap(target, target, 2) == 1.0
    assert top_overlap([0.1, 0.2, 0.3, 0.4, 0.5], target, 2) == 0.0
    assert top_overlap([0.9, 0.1, 0.8, 0.7, 0.6], target, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        top_overlap(target, target, 6)


def test_verdict_rule() -> None:
    assert is_reliable(Interval(0.71, 0.45, 0.88))
    assert not is_reliable(Interval(0.59, 0.45, 0.88))  # not strong enough
    assert not is_reliable(Interval(0.75, 0.30, 0.95))  # too uncertain
    assert not is_reliable(Interval(math.nan, math.nan, math.nan))
    assert verdict(Interval(0.712, 0.449, 0.881), 12) == \
        "the proxy ranks these architectures reliably: tau 0.71 [0.45, 0.88], k=12"
    assert verdict(Interval(0.31, -0.1, 0.6), 10) == \
        "the proxy ranks these architectures not reliably: tau 0.31 [-0.10, 0.60], k=10"


def synthetic(k: int, seeds: int, noise: float, seed: int) -> np.ndarray:
    """k architectures with true accuracies spread over [0.80, 0.98], observed with seed noise."""
    rng = np.random.default_rng(seed)
    true = np.linspace(0.80, 0.98, k)
    return true[:, None] + rng.normal(0, noise, (k, seeds))


def test_a_faithful_proxy_is_reliable() -> None:
    target = synthetic(12, 2, 0.004, seed=0)
    proxy = synthetic(12, 2, 0.03, seed=1) - 0.1  # lower and much noisier, same order of the true accuracies
    f = compare(proxy, target, top=3)
    assert f.k == 12 and f.reliable and 0.6 <= f.tau.value < 1.0 and f.tau.low > 0.3
    assert f.rho.value > f.tau.value  # rho is larger than tau for a near-monotone relation
    assert f.proxy_noise.mean_abs_diff > f.target_noise.mean_abs_diff
    assert f.top_overlap >= 2 / 3
    assert f.verdict().startswith("the proxy ranks these architectures reliably: tau ")


def test_a_shuffled_proxy_is_not_reliable() -> None:
    target = synthetic(12, 2, 0.004, seed=0)
    faithful = synthetic(12, 2, 0.008, seed=1)
    shuffled = faithful[np.random.default_rng(2).permutation(12)]  # each row now belongs to another architecture
    f = compare(shuffled, target)
    assert not f.reliable and f.tau.value < 0.6 and f.tau.low < 0.3
    assert "not reliably" in f.verdict()
    # the noise of each fidelity does not depend on which architecture a row is paired with
    assert f.proxy_noise.mean_abs_diff == pytest.approx(compare(faithful, target).proxy_noise.mean_abs_diff)


def test_compare_checks_shapes() -> None:
    with pytest.raises(ValueError, match="same ones"):
        compare([[0.9, 0.9], [0.8, 0.8]], [[0.9, 0.9]])
    with pytest.raises(ValueError, match="at least 2"):
        compare([[0.9]], [[0.8]])


# -- picking trials of a finished study -------------------------------------------------------------------------------
def finished_study(accuracies: list[float | None], named: dict[int, str] | None = None,
                   untrained: tuple[int, ...] = (), failed: tuple[int, ...] = ()) -> list[FrozenTrial]:
    """An in-memory study whose trial i has proxy accuracy accuracies[i] (None: no accuracy attribute)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, acc in enumerate(accuracies):
        attrs: dict = {} if acc is None else {"accuracy": acc}
        if i in (named or {}):
            attrs["named"] = named[i]
        if i in untrained:
            attrs["trained"] = False
        state = TrialState.FAIL if i in failed else TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(state=state, values=None if i in failed else [acc or 0.0, 1.0],
                                                  user_attrs=attrs))
    return study.get_trials()


def test_accuracy_only_of_complete_trained_trials() -> None:
    trials = finished_study([0.9, 0.8, 0.7, None], untrained=(1,), failed=(2,))
    assert [accuracy_of(t) for t in trials] == [0.9, None, None, None]


def test_pick_trials_front_named_then_spread() -> None:
    accs = [0.10, 0.50, 0.55, 0.60, 0.62, 0.90, 0.91, 0.95, 0.97, 0.99, 0.30, 0.80]
    trials = finished_study(accs, named={3: "resnet18"}, untrained=(8,), failed=(6,))
    picked = pick_trials(trials, 6, front=[9, 7])
    numbers = [t.number for t in picked]
    assert numbers == sorted(numbers) and len(numbers) == 6
    assert {9, 7, 3} <= set(numbers)  # the front and the named point
    assert not {6, 8} & set(numbers)  # failed and untrained trials have no accuracy
    assert 0 in numbers  # the spread reaches the lowest accuracy ...
    picked_accs = sorted(accs[n] for n in numbers)
    assert max(np.diff(picked_accs)) < 0.5  # ... and covers the range without leaving a big hole
    everything = pick_trials(trials, 50, front=[9])
    assert len(everything) == 10  # all trials with an accuracy, once each


def test_pick_trials_spreads_a_front_larger_than_k() -> None:
    accs = [0.5 + 0.04 * i for i in range(10)]
    trials = finished_study(accs)
    picked = pick_trials(trials, 3, front=range(10))
    assert [t.number for t in picked] == [0, 4, 9]  # lowest, middle, highest of the front
    with pytest.raises(ValueError):
        pick_trials(trials, 1)


def test_band_tau_sees_what_all_pairs_hide() -> None:
    """Three latency groups far apart in accuracy: the proxy orders the groups right and every group wrong."""
    from nas.record.rank import band_pairs, band_tau, compare

    latency = [1.0, 1.1, 1.2, 3.0, 3.1, 3.3, 9.0, 9.5, 10.0]
    final = [0.50, 0.52, 0.54, 0.70, 0.72, 0.74, 0.90, 0.92, 0.94]
    proxy = [0.54, 0.52, 0.50, 0.74, 0.72, 0.70, 0.94, 0.92, 0.90]
    assert kendall(proxy, final) == pytest.approx(0.5)  # 27 of 36 pairs concordant (every cross-group pair)
    assert len(band_pairs(latency)) == 9  # only the pairs inside a group are within 1.5x
    band = band_tau(proxy, final, latency)
    assert band.value == pytest.approx(-1.0) and band.high == pytest.approx(-1.0)
    result = compare(proxy, final, latency=latency)
    assert result.tau.value > 0.4 and not result.reliable  # the verdict takes the weaker figure
    assert "within 1.5x latency" in result.verdict()
    agree = compare(final, final, latency=latency)
    assert agree.band.value == pytest.approx(1.0) and agree.reliable
