"""`nas zoo list`: the named points with family, params and MACs."""

from __future__ import annotations

import argparse

import pandas as pd

from nas.format import human, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas zoo`."""
    p = sub.add_parser("zoo", help="named architectures")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    lp = zsub.add_parser("list", help="list named architectures with params and MACs")
    lp.add_argument("--family", help="only this family")
    lp.add_argument("--input", type=int, default=None, help="resolution for MACs (default: each model's own)")
    lp.add_argument("--no-macs", action="store_true", help="skip counting MACs (faster)")
    lp.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    """Print the zoo table."""
    from evaluators.cost import count_macs
    from space import MODELS, count_params, create_model

    rows = []
    for name, point in MODELS.items():
        if args.family and point.family != args.family:
            continue
        model = create_model(name)
        size = args.input or point.default_input
        row = {"name": name, "family": point.family, "params": human(count_params(model))}
        if not args.no_macs:
            row["MACs"] = human(count_macs(model, size))
            row["input"] = size
        row["top1"] = "" if point.top1 is None else f"{point.top1:.2f}"
        rows.append(row)
    print(table(pd.DataFrame(rows)))
    return 0
