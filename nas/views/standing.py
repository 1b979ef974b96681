"""The standing of a named point (`nas.record.standing`) as words: 'dominated by #14 beyond seed noise'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.record import standing as s


def standing_text(row: dict[str, Any], name_of: Callable[[int], str] | None = None) -> str:
    """One phrase for a row of `named_standing`; `name_of(n)` describes trial n (default '#n')."""
    who = name_of or (lambda n: f"#{n}")
    kind = row.get("standing")
    if kind == s.ON_FRONT:
        return "on the Pareto front"
    at = " (final accuracy)" if row.get("fidelity") == "final" else ""
    if kind == s.DOMINATED:
        return f"dominated by {who(row['by'])}" + (" beyond seed noise" if row.get("noise_measured")
                                                   else " (seed noise not measured)") + at
    if kind == s.WITHIN_NOISE:
        return f"within noise of {who(row['by'])} (dominated nominally){at}"
    if kind == s.UNTRAINED:
        return f"did not train ({row.get('reason', '')}): the recipe's failure, not a measurement of the network"
    if kind == s.NOT_MEASURED:
        return f"not compared: {row.get('reason', '')}"
    if kind == s.DOMINATED_NOMINALLY:
        return "dominated"
    if kind == s.INFEASIBLE:
        return f"infeasible: {row.get('reason', '')}"
    if kind == s.STOPPED:
        return f"stopped early after {row.get('epochs', '?')} epoch(s)"
    if kind == s.RUNNING:
        return "running"
    return f"failed: {row.get('reason', '')}"
