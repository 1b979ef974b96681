"""What `nas search`, `nas repeat` and `nas final` print: the Pareto front, the seed noise, the named points'
standing and, once the final stage has run, the paper table."""

from __future__ import annotations

import optuna
import pandas as pd

from nas.format import human, table, text_table
from nas.record.final import table as final_table
from nas.record.latency import stored as stored_intervals
from nas.record.repeats import seed_noise, stored
from nas.record.standing import named_standing
from nas.record.trials import front, proxy_mark, trial_row
from nas.study import Study
from nas.views.final import HEADER, caption, cells
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
    if best:
        intervals = stored_intervals(ostudy)
        print(table(_frame([trial_row(t, names, repeats, intervals) for t in best], names)))
    elif any(proxy_mark(t) for t in ostudy.get_trials(deepcopy=False)):
        print("  (no trial that trained: every complete trial's proxy sat at chance, which says the proxy recipe "
              "does not train these networks; see evaluator.train)")
    else:
        print("  (no complete feasible trial yet)")
    noise = seed_noise(ostudy)
    if "accuracy" in names:
        print("  seed noise: " + (f"accuracy std {noise[0]:.4f} over {noise[1]} architecture(s) with repeats"
                                  if noise else "not measured (set `repeats:` in the study, or run 'nas repeat')"))
    standing = named_standing(ostudy, study)
    if standing:
        print("\nNamed points:")
        shown = [{k: v for k, v in r.items() if k not in ("reason", "by", "noise_measured", "fidelity")}
                 | {"standing": standing_text(r)} for r in standing]
        print(table(_frame(shown, names)))
    print_final(study, ostudy)


def print_final(study: Study, ostudy: optuna.Study) -> None:
    """The paper table of the final stage with its caption (nothing when the study has no final results)."""
    rows = final_table(study, ostudy)
    if not rows:
        if study.final is not None:
            print(f"\nFinal stage: no result yet (run 'nas final {study.source}')")
        return
    print("\nFinal stage (the paper table):")
    print(text_table(HEADER, [cells(r) for r in rows]))
    for line in caption(study, rows):
        print("  " + line.lstrip("- ").replace("**", ""))


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
