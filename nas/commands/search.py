"""`nas search STUDY`: run (or resume) a study's search and print the Pareto front."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from nas.commands import positive_float, positive_int

if TYPE_CHECKING:  # pandas is imported by the run, not when the CLI builds its parser
    import pandas as pd


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas search`."""
    p = sub.add_parser("search", help="run or resume the search of a study file (Optuna + Ray Tune)")
    p.add_argument("study", help="a study .yaml (see studies/)")
    p.add_argument("--address", default=None, help="join the Ray cluster at this address (default: the study's "
                   "ray.address, else a new local Ray)")
    p.add_argument("--trials", type=positive_int, default=None, help="total trial budget (overrides budget.trials)")
    p.add_argument("--minutes", type=positive_float, default=None, help="total time budget (overrides budget.minutes)")
    p.add_argument("--fresh", action="store_true", help="delete the study's earlier trials and start over")
    p.add_argument("--status-every", type=positive_float, default=30.0, metavar="S", help="seconds between status "
                   "lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search, then print the Pareto front and where the named points stand; 130 when interrupted."""
    from nas.search import run_search
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
    if study.repeats is not None and not outcome.interrupted and "accuracy" in study.metrics():
        from nas.repeats import choose, run_repeats

        run_repeats(study, ostudy, choose(study, ostudy, study.repeats.of), study.repeats.seeds,
                    address=args.address)
    print_results(study, ostudy)
    print(f"\nstorage: {study.storage}\nexplore: nas dashboard {args.study}")
    if outcome.interrupted:
        print(f"interrupted: run the same command again to resume ({len(ostudy.trials)} trials so far)")
        return 130
    return 0


def print_results(study: Any, ostudy: Any) -> None:
    """The Pareto front (accuracy as mean ± seed spread), the seed noise, and where each named point stands."""
    from nas.format import table
    from nas.repeats import seed_noise, stored
    from nas.search import front, named_standing, trial_row

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
        print(table(_frame(standing, names)))


def _frame(rows: list[dict], names: list[str]) -> pd.DataFrame:
    """Rows as a table with readable numbers."""
    import pandas as pd

    from nas.format import human
    df = pd.DataFrame(rows)
    formats = {"params": human, "macs": human, "activations": human, "accuracy": "{:.4f}".format,
               "latency_ms": "{:.3f}".format, **{n: "{:.4g}".format for n in names if n not in ("accuracy",
                                                                                             "latency_ms")}}
    for col, fmt in formats.items():
        if col in df.columns:  # blank where a metric was not measured (an untrained, infeasible trial's accuracy)
            df[col] = [fmt(v) if isinstance(v, (int, float)) and pd.notna(v) else "" for v in df[col]]
    return df
