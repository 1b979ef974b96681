"""Sub-commands of the `nas` CLI, and the argument types they share (range-checked numbers)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]; anything else is a one-line usage error."""
    what = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if value < lo or hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float | None = None, *, open_lo: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with `open_lo`)."""
    low = f"> {lo:g}" if open_lo else f">= {lo:g}"
    what = f"a number {low}" + (f" and <= {hi:g}" if hi is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if not math.isfinite(value) or (value <= lo if open_lo else value < lo) or hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


positive_int = int_in(1)
positive_float = float_in(0, open_lo=True)
port = int_in(1, 65535)


def resolve_model(spec: str) -> tuple[Any, int]:
    """The architecture and own input size of a named point, a zoo entry (name or folder), or an architecture file."""
    from pathlib import Path

    from space import MODELS, resolve_arch
    from space.errors import NasError
    from space.zoo import find_entry

    if spec in MODELS:
        return resolve_arch(spec), MODELS.get(spec).default_input
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "arch.yaml").is_file():
        raise NasError(f"{spec}: a folder where an architecture file belongs; give an architecture .yaml, a zoo "
                       "entry's folder or a named point (see 'nas zoo list')")
    if path.is_dir() or find_entry(spec) is not None:
        from nas.zoo import load_entry

        entry = load_entry(path if path.is_dir() else spec)
        return entry.arch, int(entry.config.get("input_size", [3, 224, 224])[-1])
    return resolve_arch(str(path)), 224
