"""Seed repeats in the record: an architecture's accuracy over its seeds, the study's seed noise, and dominance
beyond that noise.

A trial trains its proxy once, with the seed of repeat 0 (`nas.record.trials.trial_seed`); `nas.run.repeats` trains
chosen trials again with repeats 1..k and stores each result as a study user attribute `repeat:<arch hash>:<k>`.
The *seed noise* of a study is the pooled standard deviation of accuracy over the architectures with two or more
seeds; `compare` uses it to say whether one trial is better than another beyond noise, or only within it.

Once an architecture has several seeds, `store_mean` makes its trials' Optuna value (what optuna-dashboard plots and
ranks) and `accuracy` user attribute the seed mean, the figure every table reports; the search's own seed stays in
`accuracy_seed0` (`seed0_accuracy` reads it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.record.latency import Interval, interval_of
from nas.record.latency import stored as stored_intervals
from nas.study import Study

PREFIX = "repeat:"


@dataclass(frozen=True)
class Spread:
    """The accuracies of one architecture over its seeds (repeat 0 first)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """How many seeds."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean accuracy over the seeds."""
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (None with one seed)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    def text(self, digits: int = 4) -> str:
        """'0.9611 ± 0.0042 (3 seeds)' or '0.9611 (1 seed)'."""
        if self.std is None:
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({self.n} seeds)"


def runs_under(ostudy: optuna.Study, head: str) -> dict[str, dict[int, dict]]:
    """Records stored as study attributes `<head><arch hash>:<index>`: arch hash → index → record."""
    out: dict[str, dict[int, dict]] = {}
    for key, value in ostudy.user_attrs.items():
        if key.startswith(head):
            h, _, k = key[len(head):].rpartition(":")
            out.setdefault(h, {})[int(k)] = value
    return out


def stored(ostudy: optuna.Study) -> dict[str, dict[int, dict]]:
    """Every stored repeat: arch hash → repeat index → its record (accuracy, seed, epochs, seconds, trial, node)."""
    return runs_under(ostudy, PREFIX)


def seed0_accuracy(t: FrozenTrial) -> float | None:
    """The accuracy the search trained (repeat 0), also after `store_mean` made `accuracy` the seed mean."""
    acc = t.user_attrs.get("accuracy_seed0", t.user_attrs.get("accuracy"))
    return float(acc) if isinstance(acc, (int, float)) and not isinstance(acc, bool) else None


def spread_of(t: FrozenTrial, repeats: dict[str, dict[int, dict]]) -> Spread | None:
    """The accuracy spread of trial `t` (its own accuracy and its architecture's repeats); None if untrained."""
    acc = seed0_accuracy(t)
    if t.state != TrialState.COMPLETE or not t.user_attrs.get("trained", True) or not isinstance(acc, (int, float)):
        return None
    more = repeats.get(t.user_attrs.get("hash", ""), {})
    return Spread((float(acc), *(float(more[k]["accuracy"]) for k in sorted(more) if k > 0)))


def store_mean(ostudy: optuna.Study, study: Study, arch_hash: str) -> list[int]:
    """Make the seed mean the accuracy of the trials of `arch_hash` that have two or more seeds; return their numbers.

    A complete trial's Optuna value of accuracy becomes the mean; its `accuracy` user attribute too, with the search's
    seed kept as `accuracy_seed0`, and `accuracy_std` and `seeds` beside them (a duplicate trial, which has no value,
    gets the attributes). Optuna offers no way to change a finished trial, so the rows are updated in its RDB tables,
    and the trials this process holds with them.
    """
    import json

    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models

    if "accuracy" not in study.metric_names:
        return []
    index = study.metric_names.index("accuracy")
    repeats = stored(ostudy)
    storage = ostudy._storage
    rdb = getattr(storage, "_backend", storage)
    if not isinstance(rdb, RDBStorage):
        return []
    values, attrs_table = models.TrialValueModel.__table__, models.TrialUserAttributeModel.__table__
    trials = ostudy.get_trials(deepcopy=False)
    originals = {t.number: t for t in trials}
    done = []
    for t in trials:
        if t.user_attrs.get("hash") != arch_hash:
            continue
        own = originals.get(t.user_attrs.get("duplicate_of", t.number), t)
        s = spread_of(own, repeats)
        if s is None or s.n < 2:
            continue
        attrs = {"accuracy_seed0": seed0_accuracy(own), "accuracy": s.mean, "accuracy_std": s.std, "seeds": s.n}
        with rdb.engine.begin() as db:
            if t.state == TrialState.COMPLETE and t.values:
                db.execute(values.update().where(values.c.trial_id == t._trial_id, values.c.objective == index)
                           .values(value=s.mean, value_type=models.TrialValueModel.TrialValueType.FINITE))
            db.execute(attrs_table.delete().where(attrs_table.c.trial_id == t._trial_id,
                                                  attrs_table.c.key.in_(list(attrs))))
            db.execute(attrs_table.insert(), [{"trial_id": t._trial_id, "key": k, "value_json": json.dumps(v)}
                                              for k, v in attrs.items()])
        if t.state == TrialState.COMPLETE and t.values:  # the study's cached copy of the finished trial
            t.values = [s.mean if i == index else v for i, v in enumerate(t.values)]
        t.user_attrs.update(attrs)
        done.append(t.number)
    return done


def seed_noise(ostudy: optuna.Study, trials: Iterable[FrozenTrial] | None = None) -> tuple[float, int] | None:
    """(pooled seed-to-seed standard deviation of accuracy, architectures it is measured on), or None."""
    repeats = stored(ostudy)
    pairs, seen = [], set()
    for t in trials if trials is not None else ostudy.get_trials(deepcopy=False):
        s = spread_of(t, repeats)
        h = t.user_attrs.get("hash")
        if s is not None and s.n > 1 and h not in seen:
            seen.add(h)
            pairs.append((s.n - 1, s.std ** 2))
    if not pairs:
        return None
    dof = sum(d for d, _ in pairs)
    return math.sqrt(sum(d * v for d, v in pairs) / dof), len(pairs)


def compare(a: FrozenTrial, b: FrozenTrial, study: Study, ostudy: optuna.Study,
            noise: tuple[float, int] | None = None, repeats: dict | None = None,
            accuracy: Callable[[FrozenTrial], Spread | None] | None = None,
            intervals: dict[str, Interval] | None = None) -> str:
    """How `b` stands against `a`: 'dominates', 'within noise' (dominates nominally only) or 'does not dominate'.

    `b` dominates `a` beyond noise when it is no worse in every objective and better in at least one by more than
    that objective's noise margin: for accuracy twice the standard error of the difference of the two means (the
    pooled seed noise), for latency the sum of the two measurements' IQRs — or, when both were re-measured at the end
    of the search (`nas.record.latency`), their re-measured medians, and a faster one only when the two intervals do
    not overlap — and for counts (params, MACs) nothing. With
    no seed noise measured, accuracy differences count as real and the verdict says so ('dominates (noise not
    measured)'). `accuracy` gives a trial's accuracy over its seeds at another fidelity (the final stage's), with
    `noise` measured at that fidelity; by default it is the proxy's (`spread_of`).
    """
    repeats = stored(ostudy) if repeats is None else repeats
    noise = seed_noise(ostudy) if noise is None and accuracy is None else noise
    intervals = stored_intervals(ostudy) if intervals is None else intervals
    spread = accuracy or (lambda t: spread_of(t, repeats))
    ia, ib = interval_of(a, intervals), interval_of(b, intervals)
    both = ia is not None and ib is not None
    better_beyond = better = False
    for metric, direction in zip(study.metric_names, study.directions):
        va, vb = _value(a, metric, spread), _value(b, metric, spread)
        if metric == "latency_ms" and both:
            va, vb = ia.median_ms, ib.median_ms
        if va is None or vb is None:
            return "does not dominate"
        gain = (vb - va) if direction == "maximize" else (va - vb)
        if gain < 0:
            return "does not dominate"
        better = better or gain > 0
        if metric == "latency_ms" and both:
            better_beyond = better_beyond or (gain > 0 and not ia.overlaps(ib))
        else:
            better_beyond = better_beyond or gain > _margin(metric, a, b, noise, spread)
    if not better:
        return "does not dominate"
    if better_beyond:
        return "dominates" if noise is not None or "accuracy" not in study.metric_names else \
            "dominates (noise not measured)"
    return "within noise"


def _value(t: FrozenTrial, metric: str, spread: Callable[[FrozenTrial], Spread | None]) -> float | None:
    if metric == "accuracy":
        s = spread(t)
        return None if s is None else s.mean
    v = t.user_attrs.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _margin(metric: str, a: FrozenTrial, b: FrozenTrial, noise: tuple[float, int] | None,
            spread: Callable[[FrozenTrial], Spread | None]) -> float:
    if metric == "accuracy":
        if noise is None:
            return 0.0
        na, nb = (spread(t).n for t in (a, b))
        return 2.0 * noise[0] * math.sqrt(1.0 / na + 1.0 / nb)
    if metric == "latency_ms":
        return float(a.user_attrs.get("latency_iqr_ms") or 0.0) + float(b.user_attrs.get("latency_iqr_ms") or 0.0)
    return 0.0
