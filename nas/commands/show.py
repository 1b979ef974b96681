"""`nas show NAME|ENTRY|arch.yaml`: the architecture as a layer table (output shapes, params, MACs).

A zoo entry is built from its own config (classes, input channels, input size; its width is in its architecture),
so the table's totals are the ones on its model card. `--adapt` shows the small-input form a study trains.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from nas.commands import positive_int


@dataclass(frozen=True)
class Network:
    """What `nas show` and `nas latency` build: an architecture with its own input size, classes and channels."""

    name: str
    arch: Any  # space.Arch
    input: int
    num_classes: int
    in_chans: int
    entry: bool  # a zoo entry (built from its config.json)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas show`."""
    p = sub.add_parser("show", help="layer table of a named architecture or an architecture file")
    p.add_argument("model", help="a named point (see 'nas zoo list'), a zoo entry (name or folder) or an "
                   "architecture .yaml")
    p.add_argument("--deploy", action="store_true", help="show the deploy (re-parameterized) form")
    p.add_argument("--input", type=positive_int, default=None, help="input resolution (default: the model's own, "
                   "or 224)")
    p.add_argument("--adapt", action="store_true", help="show the small-input form a study trains at this input "
                   "(stem pooling and strides removed until the last map is >= 2 px)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier outputs (default: the "
                   "model's own: a zoo entry's classes, else 1000)")
    p.add_argument("--depth", type=positive_int, default=3, help="module nesting depth of the table (default 3: "
                   "blocks)")
    p.add_argument("--yaml", action="store_true", help="print the architecture YAML instead of the table")
    p.set_defaults(func=run)


def resolve_network(spec: str) -> Network:
    """A named point, a zoo entry (name or folder: its own classes, channels and input) or an architecture file."""
    from pathlib import Path

    from space import MODELS, resolve_arch
    from space.errors import NasError
    from space.zoo import find_entry

    if spec in MODELS:
        return Network(spec, resolve_arch(spec), MODELS.get(spec).default_input, 1000, 3, entry=False)
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "arch.yaml").is_file():
        raise NasError(f"{spec}: a folder where an architecture file belongs; give an architecture .yaml, a zoo "
                       "entry's folder or a named point (see 'nas zoo list')")
    if path.is_dir() or find_entry(spec) is not None:
        from nas.zoo import load_entry

        entry = load_entry(path if path.is_dir() else spec)
        c = entry.config
        size = c.get("input_size", [c.get("in_chans", 3), 224, 224])
        return Network(entry.name, entry.arch, int(size[-1]), int(c.get("num_classes", 1000)),
                       int(c.get("in_chans", size[0])), entry=True)
    arch = resolve_arch(str(path))
    return Network(arch.name or path.stem, arch, 224, 1000, 3, entry=False)


def adapted(net: Network, size: int, adapt: bool, verb: str = "see") -> tuple[Any, str, str | None]:
    """(architecture to build, its label, a note for the user): the adapted form with `adapt`, else the original
    and, when a study would train another form at this input, a note saying so and how to see it."""
    from space.adapt import adapt_input

    name = net.name
    a = adapt_input(net.arch, size)
    if not a.changes:
        return net.arch, name, None
    if adapt:
        return a.arch, f"{name} ({a.label}: {', '.join(a.changes)})", None
    if net.entry:
        return net.arch, name, None  # an entry is exactly what was exported
    return net.arch, name, (f"note: at {size} px a study trains {name} ({a.label}: {', '.join(a.changes)}); "
                            f"add --adapt to {verb} that form")


def too_small(model: Any, name: str, size: int, in_chans: int, net: Network, adapt: bool) -> str | None:
    """One line naming the layer that runs out of pixels and the smallest input that fits, or None."""
    from space import create_model
    from space.adapt import adapt_input, out_of_pixels

    where = out_of_pixels(model, size, in_chans)
    if where is None:
        return None
    lo, hi = size, size * 2
    while hi < 4096 and out_of_pixels(model, hi, in_chans) is not None:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the smallest input that fits, between the last one too small and the first that fits
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if out_of_pixels(model, mid, in_chans) is not None else (lo, mid)
    text = f"{name} at {size} px: {where}, smaller than its window; give --input {hi} or more"
    if not adapt:
        small = adapt_input(net.arch, size)
        fits = small.changes and out_of_pixels(create_model(small.arch, num_classes=net.num_classes,
                                                            in_chans=in_chans), size, in_chans) is None
        if fits:
            text += ", or --adapt for the small-input form"
    return text


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    import pandas as pd

    from evaluators.cost import module_breakdown
    from nas.format import human, table
    from space import create_model
    from space.errors import NasError

    net = resolve_network(args.model)
    if args.yaml:
        print(net.arch.to_yaml(), end="")
        return 0
    size = args.input or net.input
    classes = args.num_classes or net.num_classes
    arch, label, note = adapted(net, size, args.adapt)
    model = create_model(arch, deploy=args.deploy, num_classes=classes, in_chans=net.in_chans)
    try:
        rows = module_breakdown(model, size, net.in_chans)
    except RuntimeError:
        why = too_small(model, label, size, net.in_chans, net, args.adapt)
        if why is None:
            raise
        raise NasError(why) from None
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
    chans = f", {net.in_chans} input channels" if net.in_chans != 3 else ""
    print(f"{label} ({form} form) at {size}x{size}, {classes} classes{chans}, hash {arch.hash}")
    print(table(df))
    print(f"total: {total['params']:,} params, {human(total['macs'])} MACs")
    if note:
        print(note)
    return 0


def _interesting(row: dict, depth: int) -> bool:
    """Skip parameter-free leaves deeper than the top levels (activations, pools) to keep the table readable."""
    return row["name"].count(".") < 2 or row["params"] > 0 or row["macs"] > 0
