"""Record params and MACs of every named point (training form, 1000 classes, its default input) in space/.

    python scripts/named_figures.py            # rewrite space/named_figures.yaml
    python scripts/named_figures.py --check    # exit 1 when a recorded figure is missing or differs

Run it after adding or changing a named point; `nas zoo list` reads the file instead of building 65 networks, and
tests/space/test_named_figures.py checks it against the builder and evaluators.cost.
"""

from __future__ import annotations

import sys

import yaml

from evaluators.cost import measure_cost
from space import MODELS
from space.zoo import FIGURES_FILE

HEADER = ("# Params and MACs of every named point: training form, 1000 classes, at its default input. Facts, not\n"
          "# settings: written by scripts/named_figures.py, checked by tests/space/test_named_figures.py; `hash` is\n"
          "# the architecture's, so a changed named point is measured again instead of listed with stale figures.\n")


def figures(name: str) -> dict:
    """The row of `name`: hash, input, params, MACs (measured on the meta device, like constraint checks)."""
    point = MODELS.get(name)
    cost = measure_cost(name, input_size=point.default_input, deploy=False)
    return {"hash": point.arch().hash, "input": point.default_input, "params": cost.params, "macs": cost.macs}


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) the figures file."""
    table = {name: figures(name) for name in MODELS.names()}
    if "--check" in argv:
        old = yaml.safe_load(FIGURES_FILE.read_text()) if FIGURES_FILE.is_file() else {}
        stale = sorted(n for n in set(table) | set(old or {}) if (old or {}).get(n) != table.get(n))
        print(f"{FIGURES_FILE}: " + (f"stale: {', '.join(stale)}" if stale else "up to date"))
        return 1 if stale else 0
    FIGURES_FILE.write_text(HEADER + yaml.safe_dump(table, sort_keys=True, width=120, default_flow_style=None))
    print(f"wrote {FIGURES_FILE}: {len(table)} named points")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
