"""The `nas` command line. Each sub-command lives in `nas/commands/<name>.py` with `add_parser` and `run`.

Building the parser imports only the command modules, which import their heavy dependencies (torch, Ray, Optuna,
pandas) inside `run`: `nas --help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

# One line per command module; each registers its own sub-commands.
COMMANDS = ("zoo", "show", "space", "latency", "search", "repeat", "final", "fidelity", "dashboard", "report",
            "export")

# What to do about an operating-system error on a path the user gave, by errno.
_PATH_ADVICE = {
    errno.ENAMETOOLONG: "name too long for the file system; use a shorter name or path",
    errno.EACCES: "permission denied; check its permissions or choose another path",
    errno.EPERM: "operation not permitted; check its permissions or choose another path",
    errno.EISDIR: "a folder where a file belongs; give the path of a file",
    errno.ENOTDIR: "a part of the path is a file where a folder belongs; check the path",
    errno.EEXIST: "a file where a folder belongs; give the path of a folder",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EROFS: "read-only file system; choose a writable location",
    errno.ENOSPC: "no space left on the device; free some space or choose another location",
    errno.ELOOP: "too many levels of symbolic links; check the path",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with one line (no usage dump) like every other user error, pointing to the
    help of the (sub-)command that was given."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"nas: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse, but arguments that no parser took are refused by the sub-command they followed."""
        ns, extra = super().parse_known_args(args, namespace)
        if extra and self.prog == "nas":
            self._innermost(ns).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns, extra

    def _innermost(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The deepest sub-command parser `ns` went through ('nas zoo list')."""
        parser: argparse.ArgumentParser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = getattr(ns, subs[0].dest, None) if subs and subs[0].dest else None
            if chosen is None or chosen not in subs[0].choices:
                return parser
            parser = subs[0].choices[chosen]


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="nas", description="Neural architecture search over modern CNN design spaces.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"nas.commands.{name}").add_parser(sub)
    return parser


def path_error(e: OSError) -> str:
    """One line for an operating-system error on a path: the path (shortened when huge) and what to do."""
    name = str(e.filename)
    if len(name) > 120:
        name = f"{name[:60]}...{name[-40:]} ({len(name):,} characters)"
    advice = _PATH_ADVICE.get(e.errno or 0, f"{e.strerror or e}; check the path")
    return f"{name}: {advice}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; user errors print one line and return 2."""
    args = make_parser().parse_args(argv)
    from space.errors import NasError  # after parsing: importing `space` loads torch

    try:
        return int(args.func(args) or 0)
    except NasError as e:
        sys.stderr.write(f"nas: error: {e}\n")
        return e.exit_code
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a real failure, shown in full
            raise
        sys.stderr.write(f"nas: error: {path_error(e)}\n")
        return 2
    except RuntimeError as e:
        text = " ".join(str(e).split())
        if not any(m in text for m in _TOO_SMALL):  # not torch's complaint about a too small input: a real failure
            raise
        size = getattr(args, "input", None)
        sys.stderr.write(f"nas: error: the input{f' of {size} px' if size else ''} is too small for this network "
                         f"({text[:200]}); give a larger --input\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("nas: interrupted\n")
        return 130


# What torch says when a feature map shrinks below a kernel (an input smaller than the network's downsampling).
_TOO_SMALL = ("Output size is too small", "Kernel size can't be greater than actual input size",
              "smaller than kernel size", "input image (H: ")


if __name__ == "__main__":
    sys.exit(main())
