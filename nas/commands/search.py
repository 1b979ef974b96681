"""`nas search STUDY`: run (or resume) a study's search and print the Pareto front."""

from __future__ import annotations

import argparse

from nas.commands import positive_float, positive_int


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
    from nas.run.search import run_search
    from nas.study import Study
    from nas.views.console import print_results
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
        from nas.run.repeats import choose, run_repeats

        run_repeats(study, ostudy, choose(study, ostudy, study.repeats.of), study.repeats.seeds,
                    address=args.address)
    if "latency_ms" in study.metrics() and not outcome.interrupted:
        from nas.run.latency import remeasure_latency

        remeasure_latency(study, ostudy)
    if study.final is not None and not outcome.interrupted and "accuracy" in study.metrics():
        from nas.run.final import run_final

        run_final(study, ostudy, address=args.address)
    print_results(study, ostudy)
    print(f"\nstorage: {study.storage}\nexplore: nas dashboard {args.study}")
    if outcome.interrupted:
        print(f"interrupted: run the same command again to resume ({len(ostudy.trials)} trials so far)")
        return 130
    return 0
