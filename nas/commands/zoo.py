"""`nas zoo list`: the named points with family, params and MACs."""

from __future__ import annotations

import argparse

from nas.commands import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas zoo`."""
    p = sub.add_parser("zoo", help="named architectures")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    lp = zsub.add_parser("list", help="list named architectures with params and MACs")
    lp.add_argument("--family", help="only this family")
    lp.add_argument("--input", type=positive_int, default=None, help="resolution for MACs (default: each model's "
                    "own; another resolution measures every network, a few seconds)")
    lp.add_argument("--no-macs", action="store_true", help="omit the MACs column")
    lp.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    """Print the zoo table: recorded figures (space/named_figures.yaml), measured only when not recorded."""
    from nas.format import human, text_table
    from space import MODELS
    from space.errors import UnknownNameError
    from space.zoo import recorded_figures

    families = sorted({p.family for _, p in MODELS.items()})
    if args.family and args.family not in families:
        raise UnknownNameError("family", args.family, families)
    rows = []
    for name, point in MODELS.items():
        if args.family and point.family != args.family:
            continue
        size = args.input or point.default_input
        rec = recorded_figures(name)
        if rec is None or rec["input"] != size and not args.no_macs:
            from evaluators.cost import measure_cost

            cost = measure_cost(name, input_size=size, deploy=False)
            rec = {"params": cost.params, "macs": cost.macs}
        row = {"name": name, "family": point.family, "params": human(rec["params"])}
        if not args.no_macs:
            row["MACs"] = human(rec["macs"])
            row["input"] = size
        row["top1"] = "" if point.top1 is None else f"{point.top1:.2f}"
        rows.append(row)
    cols = list(rows[0]) if rows else ["name", "family", "params", "MACs", "input", "top1"]
    print(text_table(cols, [[str(r[c]) for c in cols] for r in rows]))
    return 0
