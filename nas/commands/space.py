"""`nas space check FILE`: validate a space file, list the named points it contains, and its size."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas space`."""
    p = sub.add_parser("space", help="search space files")
    ssub = p.add_subparsers(dest="space_command", required=True)
    cp = ssub.add_parser("check", help="validate a space file and list the named points it contains")
    cp.add_argument("file", help="a space .yaml (or the name of a shipped space)")
    cp.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Validate; every declared named point must round-trip; report the others the space happens to contain."""
    from space import MODELS, get_arch
    from space.errors import NasError
    from space.search_space import Space

    sp = Space.load(args.file)
    declared, failures = [], []
    for name in sp.contains:
        arch = get_arch(name)
        ok, why = sp.contains_arch(arch)
        (declared if ok else failures).append(name if ok else f"{name}: {why}")
    if failures:
        raise NasError(f"{sp.source}: contains: declared named point(s) not in the space: " + "; ".join(failures))
    also = [n for n in MODELS.names() if n not in sp.contains and sp.contains_arch(get_arch(n))[0]]
    size = sp.log10_size()
    print(f"{sp.source}: valid space '{sp.name}'" + (f" — {sp.description}" if sp.description else ""))
    print(f"  dimensions: up to {sp.dimensions()} sampled parameters; size: "
          + ("continuous (infinite)" if size == float("inf") else f"about 10^{size:.1f} points"))
    print(f"  named points ({len(declared)} declared, all round-trip): " + (", ".join(declared) or "none"))
    if also:
        print("  also contains: " + ", ".join(also))
    return 0
