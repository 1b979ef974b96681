"""`nas repeat STUDY`: train chosen trials' proxies again with other seeds, so their accuracy has a spread."""

from __future__ import annotations

import argparse

from nas.commands import int_in, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas repeat`."""
    p = sub.add_parser("repeat", help="train trials of a study again with other seeds (stored; resumable) and show "
                       "accuracy as mean ± spread, and which comparisons are beyond seed noise")
    p.add_argument("study", help="a study .yaml that has been searched")
    p.add_argument("--seeds", type=positive_int, default=None, metavar="K", help="repeats per architecture "
                   "(default: the study's repeats.seeds, else 2); repeats already stored are not trained again")
    p.add_argument("--trial", type=int_in(0), action="append", default=[], metavar="N", help="repeat this trial "
                   "(can be given several times)")
    p.add_argument("--front", action="store_true", help="repeat the Pareto front")
    p.add_argument("--named", action="store_true", help="repeat the named points")
    p.add_argument("--all", action="store_true", help="repeat every complete trained trial")
    p.add_argument("--address", default=None, help="the Ray cluster to run on (default: the study's, else local)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the missing repeats, then print the front and the named points with their spread."""
    from nas.record.store import load_results
    from nas.run.repeats import choose, run_repeats
    from nas.study import Study
    from nas.views.console import print_results
    from space.errors import NasError

    study = Study.load(args.study)
    if "accuracy" not in study.metrics():
        raise NasError(f"{study.source}: the study does not train (no accuracy objective): nothing to repeat")
    ostudy = load_results(study)
    which = [w for w in ("front", "named", "all") if getattr(args, w)]
    if not which and not args.trial:
        which = list(study.repeats.of if study.repeats else ("front", "named"))
    seeds = args.seeds or (study.repeats.seeds if study.repeats else 2)
    trials = choose(study, ostudy, which, args.trial)
    ran = run_repeats(study, ostudy, trials, seeds, address=args.address)
    print(f"{ran} repeat(s) trained; {len(trials)} architecture(s) now have {seeds + 1} seeds each")
    print_results(study, ostudy)
    return 0
