"""The trial vocabulary: what a stored trial is — its architecture, state, measured values, seed and standing in a
table row — read from the Optuna record, with nothing but Optuna and the study file behind it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nas.record.latency import Interval, interval_of
from nas.record.repeats import spread_of
from nas.record.training import Mark, trained_mark
from space import Arch

CONSTRAINTS = "constraints"  # Optuna's system attribute of constraint values (<= 0: satisfied)


def arch_attr(arch: Arch) -> str:
    """The `arch` user attribute: one line of YAML flow style (`{name: .., stem: {..}, stages: [..], head: {..}}`)."""
    return yaml.safe_dump(arch.to_dict(), default_flow_style=True, sort_keys=False, width=math.inf).strip()


def stored_arch(t: Any) -> str | None:
    """A trial's architecture text: its `arch` system attribute (in studies made before it: the user attribute)."""
    return t.system_attrs.get("arch") or t.user_attrs.get("arch")


def trial_seed(study_seed: int, arch_hash: str, repeat: int = 0) -> int:
    """The seed of one evaluation of an architecture: its weight init, data order and augmentation.

    A function of the study seed, the architecture and the repeat index only, so the same architecture evaluated
    again in the same study settings trains to the same accuracy (on CPU), and repeat k gives an independent draw.
    """
    digest = hashlib.sha256(f"{study_seed}:{arch_hash}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def state_of(t: FrozenTrial) -> str:
    """complete | infeasible | pruned | failed | interrupted | running | waiting."""
    if t.state == TrialState.COMPLETE:
        return "complete" if t.user_attrs.get("feasible", True) else "infeasible"
    if t.state == TrialState.FAIL:
        return "interrupted" if t.user_attrs.get("interrupted") else "failed"
    if t.state == TrialState.PRUNED and t.user_attrs.get("status") == "infeasible":
        return "infeasible"  # stopped before training by a constraint (stored PRUNED, no invented accuracy)
    if t.state == TrialState.PRUNED and t.user_attrs.get("status") == "duplicate":
        # An architecture evaluated before (stored PRUNED so the dashboard lists it once): what its original was.
        return "complete" if t.user_attrs.get("feasible", True) else "infeasible"
    return {TrialState.PRUNED: "pruned", TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[t.state]


def metric_value(t: FrozenTrial, metric: str, names: list[str]) -> float | None:
    """What was measured for `metric` on trial `t` (None when it was not: e.g. the accuracy of an untrained trial)."""
    v = t.user_attrs.get(metric)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if t.state == TrialState.COMPLETE and t.values and metric in names and t.user_attrs.get("trained", True):
        return float(t.values[names.index(metric)])
    return None


def counts_toward_budget(t: FrozenTrial) -> bool:
    """Whether `t` was an evaluation: finished, not interrupted (re-queued), not a reused duplicate or a refused
    invalid proposal."""
    a = t.user_attrs
    return (t.state.is_finished() and not a.get("interrupted") and "duplicate_of" not in a
            and not a.get("invalid"))


def front(ostudy: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front: complete, feasible, non-dominated trials that trained (duplicates collapsed to their
    original). A trial whose proxy never left chance is no measurement, so it is neither on the front nor shadows
    the trials it would nominally dominate."""
    best = [t for t in ostudy.best_trials if "duplicate_of" not in t.user_attrs]
    if all(proxy_mark(t) is None for t in best):
        return best
    pool = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "duplicate_of" not in t.user_attrs and t.user_attrs.get("feasible", True) and t.values
            and all(v <= 0 for v in t.system_attrs.get(CONSTRAINTS, [])) and proxy_mark(t) is None]
    keep = set(pareto_numbers([(t.number, list(t.values)) for t in pool],
                              [d.name.lower() for d in ostudy.directions]))
    return [t for t in pool if t.number in keep]


def pareto_numbers(points: list[tuple[int, list[float]]], directions: list[str]) -> list[int]:
    """Numbers of the non-dominated points."""
    sign = [1.0 if d == "minimize" else -1.0 for d in directions]
    keyed = [(n, [s * v for s, v in zip(sign, vals)]) for n, vals in points]
    return [n for n, a in keyed
            if not any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for _, b in keyed)]


def proxy_mark(t: FrozenTrial) -> Mark | None:
    """A 'did not train' mark for a complete trial whose proxy never left chance (nas.record.training), else None.

    Trials recorded before the number of classes was stored are taken as trained.
    """
    a = t.user_attrs
    history = t.system_attrs.get("history") or a.get("history")
    if t.state != TrialState.COMPLETE or not a.get("trained", True) or not history or not a.get("classes"):
        return None
    losses = t.system_attrs.get("losses") or a.get("losses")
    return trained_mark([float(v) for v in history], losses, int(a["classes"]), a.get("val_images"),
                        float(a.get("label_smoothing") or 0.0))


def display_name(t: FrozenTrial) -> str:
    """How tables name a trial's network: 'resnet18 (small-input stem)', 'resnet18', or '' for a sampled one."""
    a = t.user_attrs
    name = a.get("named") or ""
    if a.get("adapted"):
        return f"{name or 'sampled'} ({a['adapted']})"
    return name


def trial_row(t: FrozenTrial, names: list[str], repeats: dict | None = None,
              intervals: dict[str, Interval] | None = None) -> dict[str, Any]:
    """A table row of a trial: number, network, objectives (accuracy as mean ± spread over seeds, latency with its
    re-measured interval), cost, epochs."""
    a = t.user_attrs
    row: dict[str, Any] = {"trial": t.number, "network": display_name(t)}
    for name in names:
        row[name] = a.get(name) if a.get("trained", True) or name != "accuracy" else None
    spread = spread_of(t, repeats or {})
    if "accuracy" in names and spread is not None and spread.n > 1:
        row["accuracy"] = spread.mean
        row["± seeds"] = f"±{spread.std:.4f} (n={spread.n})"
    for k in ("params", "macs"):
        if k not in names and k in a:
            row[k] = a[k]
    interval = interval_of(t, intervals or {})
    if "latency_ms" in names and interval is not None:
        row["latency re-measured"] = f"{interval.median_ms:.3f} {interval.short()}"
    if "latency_ms" in names and (a.get("latency_loaded") or a.get("latency_noisy")):
        row["latency note"] = "measured under load" if a.get("latency_loaded") else "noisy"
    if "epochs" in a and a.get("planned_epochs"):
        row["epochs"] = a["epochs"]
    row["hash"] = a.get("hash", "")
    return row
