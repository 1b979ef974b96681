"""Where each seeded named point stands against the Pareto front, as data: on it, dominated (by which trial, beyond
seed noise or only nominally), infeasible, stopped early, running or failed. `nas.views.standing` renders it.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nas.record.repeats import compare, seed_noise, stored
from nas.record.trials import front, trial_row
from nas.study import Study

# What `named_standing` puts in a row's `standing`:
ON_FRONT = "front"
DOMINATED = "dominated"  # by trial `by`; `beyond_noise` says whether seed noise was measured and exceeded
WITHIN_NOISE = "within_noise"  # dominated nominally by trial `by`, within seed noise
DOMINATED_NOMINALLY = "dominated_nominally"  # dominated, but by no front trial that can be compared
INFEASIBLE = "infeasible"
STOPPED = "stopped"  # by ASHA, after `epochs`
RUNNING = "running"
FAILED = "failed"


def named_standing(ostudy: optuna.Study, study: Study) -> list[dict[str, Any]]:
    """One row per seeded named point: its table row (`trial_row`) plus `standing` and, where it applies, `by` (the
    dominating trial's number), `noise_measured` (whether seed noise backs the verdict) and `reason`."""
    names = study.metric_names
    best = front(ostudy)
    on_front = {t.number for t in best}
    repeats, noise = stored(ostudy), seed_noise(ostudy)
    out = []
    for t in ostudy.get_trials(deepcopy=False):
        a = t.user_attrs
        if not a.get("named") or "duplicate_of" in a or a.get("interrupted") or t.state == TrialState.WAITING:
            continue
        row = trial_row(t, names, repeats)
        if t.state == TrialState.COMPLETE and t.number in on_front:
            row["standing"] = ON_FRONT
        elif not a.get("feasible", True):
            row.update(standing=INFEASIBLE, reason=str(a.get("infeasible") or "violates a constraint"))
        elif t.state == TrialState.COMPLETE:
            verdicts = [(b, compare(t, b, study, ostudy, noise, repeats)) for b in best]
            real = [(b, v) for b, v in verdicts if v.startswith("dominates")]
            within = [b for b, v in verdicts if v == "within noise"]
            if real:
                b, v = real[0]
                row.update(standing=DOMINATED, by=b.number, noise_measured="noise" not in v)
            elif within:
                row.update(standing=WITHIN_NOISE, by=within[0].number)
            else:
                row["standing"] = DOMINATED_NOMINALLY
        elif t.state == TrialState.PRUNED:
            row.update(standing=STOPPED, epochs=a.get("epochs", "?"))
        elif t.state == TrialState.RUNNING:
            row["standing"] = RUNNING
        else:
            row.update(standing=FAILED, reason=str(a.get("fail_reason", "")))
        out.append(row)
    return out
