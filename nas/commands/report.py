"""`nas report STUDY`: the trials table, the Pareto-front plot and a Markdown summary, written next to the study."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas report`."""
    p = sub.add_parser("report", help="write a study's trials table (CSV), Pareto plot (PNG) and summary (Markdown)")
    p.add_argument("study", help="a study .yaml (its storage is read, never written; works while it is searched)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write (default: <study dir>/<name>_report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the three files and say what is in them."""
    from nas.study import Study
    from nas.views.report import write_report

    study = Study.load(args.study)
    r = write_report(study, args.out)
    counts = r.table["state"].value_counts()
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{study.name}: {len(r.table)} trial(s)" + (f" ({states})" if states else "")
          + (" — the search is still running" if r.running else ""))
    if r.front:
        print("  Pareto front: " + ", ".join(f"#{n}" for n in r.front))
    else:
        print("  no completed feasible trial yet: the front is empty")
    print(f"  wrote {r.csv}, {r.png}, {r.summary}")
    return 0
