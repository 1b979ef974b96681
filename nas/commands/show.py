"""`nas show NAME|arch.yaml`: the architecture as a layer table (output shapes, params, MACs)."""

from __future__ import annotations

import argparse

from nas.commands import positive_int, resolve_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas show`."""
    p = sub.add_parser("show", help="layer table of a named architecture or an architecture file")
    p.add_argument("model", help="a named point (see 'nas zoo list'), a zoo entry (name or folder) or an "
                   "architecture .yaml")
    p.add_argument("--deploy", action="store_true", help="show the deploy (re-parameterized) form")
    p.add_argument("--input", type=positive_int, default=None, help="input resolution (default: the model's own, "
                   "or 224)")
    p.add_argument("--num-classes", type=positive_int, default=1000)
    p.add_argument("--depth", type=positive_int, default=3, help="module nesting depth of the table (default 3: "
                   "blocks)")
    p.add_argument("--yaml", action="store_true", help="print the architecture YAML instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    import pandas as pd

    from evaluators.cost import module_breakdown
    from nas.format import human, table
    from space import create_model

    arch, own_size = resolve_model(args.model)
    if args.yaml:
        print(arch.to_yaml(), end="")
        return 0
    size = args.input or own_size
    model = create_model(arch, deploy=args.deploy, num_classes=args.num_classes)
    rows = module_breakdown(model, size)
    total = rows[0]
    keep = [r for r in rows[1:] if r["name"].count(".") < args.depth and _interesting(r, args.depth)]
    df = pd.DataFrame([{
        "layer": "  " * r["name"].count(".") + r["name"].rsplit(".", 1)[-1] if r["name"].count(".") else r["name"],
        "type": r["type"],
        "output": "x".join(str(d) for d in r["shape"][1:]) if r["shape"] else "",
        "params": f"{r['params']:,}",
        "MACs": human(r["macs"]),
    } for r in keep])
    form = "deploy" if args.deploy else "train"
    print(f"{arch.name or args.model} ({form} form) at {size}x{size}, {args.num_classes} classes, hash {arch.hash}")
    print(table(df))
    print(f"total: {total['params']:,} params, {human(total['macs'])} MACs")
    return 0


def _interesting(row: dict, depth: int) -> bool:
    """Skip parameter-free leaves deeper than the top levels (activations, pools) to keep the table readable."""
    return row["name"].count(".") < 2 or row["params"] > 0 or row["macs"] > 0
