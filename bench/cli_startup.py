"""Start-up of the commands that only read a study: wall time and what they import, against another checkout.

Each command runs in a fresh interpreter (`python -c` calling `nas.cli.main`), alternating between this checkout and
`--baseline` (e.g. a worktree of an older commit) so load drifts hit both alike; it prints the median wall time of
each, their ratio, and whether Ray was imported. The study is a copy of tests/nas/data/legacy (a small finished study),
so `nas report` reads a real record.

    python bench/cli_startup.py [--baseline /path/to/old/checkout] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"report": ["report", "legacy.yaml"], "export --help": ["export", "--help"],
            "fidelity --help": ["fidelity", "--help"], "dashboard --help": ["dashboard", "--help"]}
PROBE = ("import sys\nfrom nas.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "print('RAY' if 'ray' in sys.modules else 'no-ray', len(sys.modules), file=sys.stderr)")


def run(checkout: Path, argv: list[str], cwd: Path) -> tuple[float, str, int]:
    """Wall seconds, whether Ray was imported, and how many modules, for one command in a fresh interpreter."""
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True,
                       env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"})
    seconds = time.perf_counter() - start
    ray, modules = r.stderr.strip().splitlines()[-1].split()
    return seconds, ray, int(modules)


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as tmp:
        for f in (ROOT / "tests" / "nas" / "data" / "legacy").iterdir():
            shutil.copy(f, Path(tmp) / f.name)
        print(f"{'command':18s} " + "  ".join(f"{name:>22s}" for name in checkouts) + ("  this/baseline"
                                                                                      if args.baseline else ""))
        for label, argv in COMMANDS.items():
            times: dict[str, list[float]] = {name: [] for name in checkouts}
            seen: dict[str, tuple[str, int]] = {}
            for _ in range(args.runs):
                for name, checkout in checkouts.items():
                    seconds, ray, modules = run(checkout, argv, Path(tmp))
                    times[name].append(seconds)
                    seen[name] = (ray, modules)
            cells = [f"{statistics.median(times[n]):6.2f} s {seen[n][0]:>6s} {seen[n][1]:5d} mod" for n in checkouts]
            ratio = (f"  {statistics.median(times['this']) / statistics.median(times['baseline']):.2f}x"
                     if args.baseline else "")
            print(f"{label:18s} " + "  ".join(f"{c:>22s}" for c in cells) + ratio)


if __name__ == "__main__":
    main()
