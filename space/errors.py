"""The project's error types: every user mistake becomes one of these, with a one-line message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NasError(Exception):
    """Base of every error `nas` raises for bad input; the CLI prints it as one line and exits 2."""

    exit_code = 2


class SpecError(NasError):
    """A malformed or invalid specification (architecture, space, study): names the source and the key."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None, hint: str | None = None):
        self.message, self.key, self.source, self.hint = message, key, source, hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = ": ".join(p for p in (self.source, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}; {self.hint}" if self.hint else text

    def at(self, source: str | None = None, key_prefix: str | None = None) -> SpecError:
        """Return a copy located in `source` and/or nested under `key_prefix`."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return SpecError(self.message, key=key, source=source or self.source, hint=self.hint)


class NotInSpaceError(SpecError):
    """An architecture that a space cannot express: names the dimension, the value and the choices."""


class UnknownNameError(NasError, KeyError):
    """An unknown registered name (model, block, activation, ...), with a did-you-mean suggestion."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        msg = f"unknown {kind} '{name}'"
        hint = did_you_mean(name, known)
        super().__init__(f"{msg}; {hint}" if hint else msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DeployError(NasError):
    """A model that cannot be re-parameterized exactly in its current state."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean X?' for the closest choice, or a list of the choices when none is close."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if len(choices) <= 12:
        return "expected one of: " + ", ".join(choices)
    return ""
