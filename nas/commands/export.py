"""`nas export STUDY --trial N --name NAME` (or `--pareto`, `--best-under-latency 5ms`): trials as zoo entries."""

from __future__ import annotations

import argparse

from nas.commands import float_in, int_in, positive_int

EPOCHS_FACTOR = 5  # default length of `--train`: this many times the study's proxy-training epochs


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas export`."""
    p = sub.add_parser("export", help="write trials of a study as zoo entries (architecture, weights, TorchScript, "
                       "ONNX, model card, config) loadable with nas.zoo.create_model")
    p.add_argument("study", help="a study .yaml that has been searched")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int_in(0), metavar="N", help="this trial (see 'nas report')")
    which.add_argument("--pareto", action="store_true", help="every trial on the Pareto front")
    which.add_argument("--best-under-latency", metavar="T", help="the most accurate complete feasible trial with "
                       "latency <= T (e.g. 5ms, 800us, 0.01s)")
    p.add_argument("--name", help="entry name (default <study>_t<N>; with --pareto, the prefix of <NAME>_t<N>)")
    p.add_argument("--zoo", default="zoo", metavar="DIR", help="where entries are written (default ./zoo, the first "
                   "directory zoo.create_model searches)")
    p.add_argument("--train", action="store_true", help="train the network with the study's data and recipe "
                   "(resumes from the last finished epoch when interrupted)")
    p.add_argument("--epochs", type=positive_int, default=None, help=f"epochs of --train (default {EPOCHS_FACTOR}x the "
                   "study's training epochs); implies --train")
    p.add_argument("--proxy", action="store_true", help="export the proxy network (the cheaper copy the search "
                   "trained, at the proxy width and resolution) instead of the target whose latency is on the front")
    p.add_argument("--width-mult", type=float_in(0, 4, open_lo=True), default=None, help="width of the exported "
                   "network (default: the target's width, or the proxy's with --proxy)")
    p.add_argument("--force", action="store_true", help="replace existing entries")
    p.add_argument("--restart", action="store_true", help="discard an interrupted --train run instead of resuming")
    p.add_argument("--no-latency", action="store_true", help="do not measure the exported network's latency")
    p.add_argument("--device", default="cpu", help="training device: cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads of training (default: torch's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Choose the trials, then write one entry each."""
    from pathlib import Path

    from nas.export import (
        ExportOptions,
        best_under_latency,
        entry_name,
        export,
        get_trial,
        pareto_trials,
        parse_latency,
    )
    from nas.record.store import load_results
    from nas.study import Study
    from space.errors import NasError

    if args.epochs is not None and args.epochs < 1:
        raise NasError(f"--epochs {args.epochs}: must be >= 1")
    if args.width_mult is not None and not 0 < args.width_mult <= 4:
        raise NasError(f"--width-mult {args.width_mult}: must be in (0, 4]")
    limit = parse_latency(args.best_under_latency) if args.best_under_latency is not None else None
    study = Study.load(args.study)
    ostudy = load_results(study)
    if args.pareto:
        trials = pareto_trials(study, ostudy)
    elif limit is not None:
        trials = [best_under_latency(study, ostudy, limit)]
    else:
        trials = [get_trial(study, ostudy, args.trial)]
    picks = [(t, entry_name(study, t, args.name, several=args.pareto)) for t in trials]
    train = args.train or args.epochs is not None
    epochs = (args.epochs or EPOCHS_FACTOR * study.evaluator.epochs) if train else None
    opts = ExportOptions(root=Path(args.zoo), epochs=epochs, network="proxy" if args.proxy else "target",
                         width_mult=args.width_mult, force=args.force,
                         restart=args.restart, latency=not args.no_latency, device=args.device, threads=args.threads)
    what = (f"training {epochs} epochs each" if epochs else "with the final stage's weights where it trained them"
            if study.final is not None and not args.proxy else "untrained (add --train for weights)")
    net = study.evaluator.proxy if args.proxy else study.evaluator.target
    print(f"exporting {len(picks)} trial(s) of '{study.name}' to {opts.root}/ as the {net.short()} network, {what}:")
    paths = export(study, ostudy, picks, opts)
    names = [p.name for p in paths]
    pre, root = (", pretrained=True" if epochs else ""), opts.root.resolve()
    print(f"load from any directory with: from nas import zoo; zoo.create_model({str(paths[0].resolve())!r}{pre})")
    print(f"  or by name, {names[0]!r}, after: export NAS_ZOO_PATH={root}"
          + ("  (not needed in this directory)" if root == (Path.cwd() / "zoo").resolve() else "")
          + (f"; also exported: {', '.join(names[1:])}" if names[1:] else ""))
    return 0
