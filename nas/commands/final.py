"""`nas final STUDY`: train the study's chosen networks (target, to convergence, n seeds) and print the paper table."""

from __future__ import annotations

import argparse

from nas.commands import int_in


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas final`."""
    p = sub.add_parser("final", help="the final stage: train the target network of the front's top points, the "
                       "named points and random baselines to convergence with n seeds (stored; resumable), then "
                       "print the paper table")
    p.add_argument("study", help="a study .yaml with a final: block that has been searched")
    p.add_argument("--seeds", type=int_in(1, 20), default=None, metavar="N", help="seeds per network (default: the "
                   "study's final.seeds); runs already stored are not trained again")
    p.add_argument("--address", default=None, help="the Ray cluster to run on (default: the study's, else local)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the missing final runs, then print the paper table."""
    from nas.record.store import load_results
    from nas.run.final import run_final
    from nas.study import Study
    from nas.views.console import print_final
    from space.errors import NasError

    study = Study.load(args.study)
    if "accuracy" not in study.metrics():
        raise NasError(f"{study.source}: the study does not train (no accuracy objective): nothing to train further")
    ostudy = load_results(study)
    ran = run_final(study, ostudy, seeds=args.seeds, address=args.address)
    print(f"{ran} final run(s) trained")
    print_final(study, ostudy)
    return 0
