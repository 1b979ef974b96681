"""Sub-commands of the `nas` CLI, and the argument types they share (range-checked numbers)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
