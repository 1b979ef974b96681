"""Where each seeded named point stands against the Pareto front, as data: on it, dominated (by which trial, beyond
seed noise or only nominally), did not train, infeasible, stopped early, running or failed. `nas.views.standing`
renders it.

Once the final stage has run, the comparison is of final accuracies (the target trained to convergence, with the
final stage's seed noise) among the networks it measured, and each row says so (`fidelity`: final); before, it is of
the proxy's. A network that did not train, at either fidelity, is never the loser of a comparison.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nas.record.final import MIXED, noise_of
from nas.record.final import table as final_table
from nas.record.latency import stored as stored_intervals
from nas.record.repeats import compare, seed_noise, stored
from nas.record.training import DID_NOT_TRAIN
from nas.record.trials import front, proxy_mark, trial_row
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
UNTRAINED = "untrained"  # its runs sat at chance (at `fidelity`): a fact about the recipe, not the architecture
NOT_MEASURED = "not_measured"  # the final stage ran, but not (to convergence) on this network or on any front one


def named_standing(ostudy: optuna.Study, study: Study) -> list[dict[str, Any]]:
    """One row per seeded named point: its table row (`trial_row`) plus `standing`, `fidelity` (proxy | final) and,
    where it applies, `by` (the dominating trial's number), `noise_measured` (whether seed noise backs the verdict)
    and `reason`."""
    names = study.metric_names
    best = front(ostudy)
    on_front = {t.number for t in best}
    repeats, noise, intervals = stored(ostudy), seed_noise(ostudy), stored_intervals(ostudy)
    rows = {r.trial: r for r in final_table(study, ostudy)}
    final_noise = noise_of(list(rows.values()))
    measured = {n for n, r in rows.items() if r.measured}
    final_front = [b for b in best if b.number in measured]

    def final_spread(t: Any) -> Any:
        return rows[t.number].final if t.number in measured else None

    out = []
    for t in ostudy.get_trials(deepcopy=False):
        a = t.user_attrs
        if not a.get("named") or "duplicate_of" in a or a.get("interrupted") or t.state == TrialState.WAITING:
            continue
        row = trial_row(t, names, repeats, intervals)
        row["fidelity"] = "final" if rows else "proxy"
        fin = rows.get(t.number)
        if t.state == TrialState.COMPLETE and t.number in on_front:
            row["standing"] = ON_FRONT
        elif not a.get("feasible", True):
            row.update(standing=INFEASIBLE, reason=str(a.get("infeasible") or "violates a constraint"))
        elif t.state == TrialState.COMPLETE and fin is not None and fin.status in (DID_NOT_TRAIN, MIXED):
            row.update(standing=UNTRAINED, reason=f"final stage: {fin.status}")
        elif t.state == TrialState.COMPLETE and fin is None and proxy_mark(t) is not None:
            row.update(standing=UNTRAINED, fidelity="proxy", reason=f"proxy: {proxy_mark(t).why}")
        elif t.state == TrialState.COMPLETE and rows and (t.number not in measured or not final_front):
            why = (f"final stage: {fin.status}" if fin is not None and t.number not in measured
                   else "no front network has a converged final result" if fin is not None
                   else "not in the final stage")
            row.update(standing=NOT_MEASURED, reason=why)
        elif t.state == TrialState.COMPLETE:
            if rows:
                verdicts = [(b, compare(t, b, study, ostudy, (final_noise, 0) if final_noise else None, repeats,
                                        accuracy=final_spread, intervals=intervals)) for b in final_front]
            else:
                verdicts = [(b, compare(t, b, study, ostudy, noise, repeats, intervals=intervals)) for b in best]
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
