"""`nas search STUDY`: run (or resume) a study's search and print the Pareto front."""

from __future__ import annotations

import argparse

import pandas as pd

from nas.format import human, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas search`."""
    p = sub.add_parser("search", help="run or resume the search of a study file (Optuna + Ray Tune)")
    p.add_argument("study", help="a study .yaml (see studies/)")
    p.add_argument("--address", default=None, help="join the Ray cluster at this address (default: the study's "
                   "ray.address, else a new local Ray)")
    p.add_argument("--trials", type=int, default=None, help="total trial budget (overrides budget.trials)")
    p.add_argument("--minutes", type=float, default=None, help="total time budget (overrides budget.minutes)")
    p.add_argument("--fresh", action="store_true", help="delete the study's earlier trials and start over")
    p.add_argument("--status-every", type=float, default=30.0, metavar="S", help="seconds between status lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search, then print the Pareto front and where the named points stand; 130 when interrupted."""
    from nas.search import front, named_standing, run_search, trial_row
    from nas.study import Study
    from space.errors import NasError

    study = Study.load(args.study)
    if args.trials is not None and args.trials < 1:
        raise NasError("--trials must be >= 1")
    outcome = run_search(study, address=args.address, trials=args.trials, minutes=args.minutes, fresh=args.fresh,
                         status_every=args.status_every)
    if outcome.aborted:
        raise NasError(f"{study.source}: search stopped: {outcome.aborted}")
    ostudy = outcome.ostudy
    names = ostudy.metric_names or []
    best = sorted(front(ostudy), key=lambda t: t.values[0], reverse=ostudy.directions[0].name == "MAXIMIZE")
    print(f"\nPareto front of '{study.name}' ({len(best)} of {len(ostudy.trials)} trials"
          + (f"; constraints: {', '.join(c.describe() for c in study.constraints)}" if study.constraints else "")
          + "):")
    print(table(_frame([trial_row(t, names) for t in best], names)) if best else "  (no complete feasible trial yet)")
    standing = named_standing(ostudy)
    if standing:
        print("\nNamed points:")
        print(table(_frame(standing, names)))
    print(f"\nstorage: {study.storage}\nexplore: nas dashboard {args.study}")
    if outcome.interrupted:
        print(f"interrupted: run the same command again to resume ({len(ostudy.trials)} trials so far)")
        return 130
    return 0


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
