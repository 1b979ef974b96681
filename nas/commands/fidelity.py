"""`nas fidelity STUDY`: does the study's proxy rank architectures like the training that will really be done?"""

from __future__ import annotations

import argparse

from nas.commands import int_in, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas fidelity`."""
    p = sub.add_parser("fidelity", help="how well the proxy ranks networks like real training: against the final "
                       "stage's converged results when the study has one (over all pairs and over pairs of similar "
                       "latency), else k trials re-trained at a higher fidelity (stored; resumable)")
    p.add_argument("study", help="a study .yaml that has been searched")
    p.add_argument("--k", type=int_in(2, 200), default=10, help="architectures to compare (default 10: the front, "
                   "named points, the rest spread over the proxy-accuracy range)")
    p.add_argument("--seeds", type=int_in(1, 20), default=2, help="seeds per architecture at each fidelity "
                   "(default 2)")
    p.add_argument("--epochs", type=positive_int, default=None, help="high-fidelity epochs (default 3x the proxy's)")
    p.add_argument("--width-mult", type=float, default=None, help="high-fidelity width (default: the target's)")
    p.add_argument("--resolution", type=int_in(4, 1024), default=None, help="high-fidelity input size (default: "
                   "the target's)")
    p.add_argument("--trial", type=int_in(0), action="append", default=[], metavar="N", help="compare these trials "
                   "instead of picking k (repeatable)")
    p.add_argument("--address", default=None, help="the Ray cluster to run on (default: the study's, else local)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure, store and print the proxy's rank fidelity."""
    from nas.record.fidelity import high_fidelity
    from nas.record.store import load_results
    from nas.run.fidelity import measure, measure_final
    from nas.study import Study
    from nas.views.fidelity import lines
    from space.errors import NasError

    if args.width_mult is not None and not 0 < args.width_mult <= 4:
        raise NasError(f"--width-mult {args.width_mult}: must be in (0, 4]")
    study = Study.load(args.study)
    if "accuracy" not in study.metrics():
        raise NasError(f"{study.source}: the study does not train (no accuracy objective): there is no proxy to check")
    ostudy = load_results(study)
    custom = args.epochs or args.width_mult or args.resolution or args.trial
    if study.final is not None and not custom:  # the decision is made on the final stage: judge the proxy there
        summary = measure_final(study, ostudy, address=args.address)
    else:
        hf = high_fidelity(study, epochs=args.epochs, width_mult=args.width_mult, resolution=args.resolution)
        summary = measure(study, ostudy, k=args.k, seeds=args.seeds, hf=hf, numbers=args.trial or None,
                          address=args.address)
    print()
    print("\n".join(lines(summary)))
    print(f"stored in {study.storage}; 'nas report {args.study}' shows it")
    return 0
