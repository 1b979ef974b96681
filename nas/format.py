"""Human-readable numbers and tables for the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a table is printed, not when the CLI builds its parser
    import pandas as pd

_NUMERIC = re.compile(r"^-?[\d,]*\.?\d+(e[-+]?\d+)?[KMGT%]?[a-z]*$")


def human(n: float, unit: str = "") -> str:
    """12.3M, 4.09G ... (powers of 1000)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:g}{unit}"


def table(df: pd.DataFrame) -> str:
    """A plain-text table of a DataFrame (see `text_table`); missing values are blank."""
    import pandas as pd

    return text_table([str(c) for c in df.columns],
                      [["" if pd.isna(v) else str(v) for v in r] for r in df.itertuples(index=False)])


def text_table(cols: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: text columns left-aligned (indentation kept), number columns right-aligned."""
    numeric = [bool(rows) and all(_NUMERIC.match(r[i].strip()) or not r[i].strip() for r in rows)
               for i in range(len(cols))]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """Lines of a GitHub-flavoured Markdown table."""
    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return lines
