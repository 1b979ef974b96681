"""What `nas search` and `nas repeat` print: the Pareto front, the seed noise and the named points' standing."""

from __future__ import annotations

import optuna
import pandas as pd

from nas.format import human, table
from nas.record.repeats import seed_noise, stored
from nas.record.standing import named_standing
from nas.record.trials import front, trial_row
from nas.study import Study
from nas.views.standing import standing_text


def print_results(study: Study, ostudy: optuna.Study) -> None:
    """The Pareto front (accuracy as mean ± seed spread), the seed noise, and where each named point stands."""
    names = study.metric_names
    repeats = stored(ostudy)
    best = sorted(front(ostudy), key=lambda t: t.values[0], reverse=ostudy.directions[0].name == "MAXIMIZE")
    print(f"\nPareto front of '{study.name}' ({len(best)} of {len(ostudy.trials)} trials"
          + (f"; constraints: {', '.join(c.describe() for c in study.constraints)}" if study.constraints else "")
          + "):")
    print(f"  accuracy: {study.evaluator.describe_proxy()}")
    print(f"  latency, params, MACs: {study.evaluator.describe_target()}")
    print(table(_frame([trial_row(t, names, repeats) for t in best], names)) if best
          else "  (no complete feasible trial yet)")
    noise = seed_noise(ostudy)
    if "accuracy" in names:
        print("  seed noise: " + (f"accuracy std {noise[0]:.4f} over {noise[1]} architecture(s) with repeats"
                                  if noise else "not measured (set `repeats:` in the study, or run 'nas repeat')"))
    standing = named_standing(ostudy, study)
    if standing:
        print("\nNamed points:")
        print(table(_frame([{**r, "standing": standing_text(r)} for r in standing], names)))


def _frame(rows: list[dict], names: list[str]) -> pd.DataFrame:
    """Rows as a table with readable numbers."""
    df = pd.DataFrame(rows)
    formats = {"params": human, "macs": human, "activations": human, "accuracy": "{:.4f}".format,
               "latency_ms": "{:.3f}".format, **{n: "{:.4g}".format for n in names if n not in ("accuracy",
                                                                                             "latency_ms")}}
    for col, fmt in formats.items():
        if col in df.columns:  # blank where a metric was not measured (an untrained, infeasible trial's accuracy)
            df[col] = [fmt(v) if isinstance(v, (int, float)) and pd.notna(v) else "" for v in df[col]]
    return df
