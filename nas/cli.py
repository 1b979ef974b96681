"""The `nas` command line. Each sub-command lives in `nas/commands/<name>.py` with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from space.errors import NasError

# One line per command module; each registers its own sub-commands.
COMMANDS = ("zoo", "show", "space", "latency", "search", "dashboard", "report", "export")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with one line (no usage dump) like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"nas: error: {message} (see 'nas --help')\n")
        sys.exit(2)


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="nas", description="Neural architecture search over modern CNN design spaces.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"nas.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; user errors print one line and return 2."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NasError as e:
        sys.stderr.write(f"nas: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("nas: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
