"""Named architectures: the fixed points of the space, registered by name as functions returning `Arch` values."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from space.arch import Arch
from space.errors import UnknownNameError
from space.params import Registry

# Exported networks (zoo entries) are directories NAME/ holding arch.yaml; these are searched, in order, after the
# built-in named points: ./zoo, then every directory in $NAS_ZOO_PATH (os.pathsep-separated).
ZOO_PATH_ENV = "NAS_ZOO_PATH"


@dataclass(frozen=True)
class NamedPoint:
    """A registered named architecture: how to make it and what is published about it."""

    name: str
    family: str
    make: Callable[[], Arch]
    top1: float | None = None
    paper: str = ""
    default_input: int = 224
    meta: dict = field(default_factory=dict, compare=False)

    def arch(self) -> Arch:
        """The architecture value, labelled with its name."""
        a = self.make()
        return Arch(stem=a.stem, stages=a.stages, head=a.head, name=self.name).validate()


MODELS: Registry[NamedPoint] = Registry("model")


def register_model(name: str, family: str, *, top1: float | None = None, paper: str = "",
                   default_input: int = 224) -> Callable[[Callable[[], Arch]], Callable[[], Arch]]:
    """Decorator registering a zero-argument function returning an `Arch` as named point `name`."""

    def deco(fn: Callable[[], Arch]) -> Callable[[], Arch]:
        MODELS.add(name, NamedPoint(name, family, fn, top1, paper, default_input))
        return fn

    return deco


def _recorded_figures() -> dict[str, dict]:
    from space.named_figures import FIGURES

    return FIGURES


def recorded_figures(name: str) -> dict | None:
    """Recorded params and MACs (at `input`) of named point `name`; None when absent or recorded for another arch.

    Facts, written once by scripts/named_figures.py and checked by a test: listing the zoo builds no network.
    """
    rec = _recorded_figures().get(name)
    if rec is None or name not in MODELS or rec.get("hash") != MODELS.get(name).arch().hash:
        return None
    return rec


def zoo_dirs() -> list[Path]:
    """Directories searched for exported entries: ./zoo, then $NAS_ZOO_PATH."""
    extra = [Path(p) for p in os.environ.get(ZOO_PATH_ENV, "").split(os.pathsep) if p]
    return [Path.cwd() / "zoo", *extra]


def find_entry(name: str) -> Path | None:
    """Directory of exported entry `name` (the first one on the search path), or None."""
    for d in zoo_dirs():
        if (d / name / "arch.yaml").is_file():
            return d / name
    return None


def entry_names() -> list[str]:
    """Names of the exported entries on the search path."""
    names = {p.parent.name for d in zoo_dirs() if d.is_dir() for p in d.glob("*/arch.yaml")}
    return sorted(names)


def get_arch(name: str) -> Arch:
    """The architecture of a built-in named point or of an exported zoo entry."""
    if name in MODELS:
        return MODELS.get(name).arch()
    entry = find_entry(name)
    if entry is None:
        raise UnknownNameError("model", name, [*MODELS.names(), *entry_names()])
    arch = Arch.load(entry / "arch.yaml")
    return Arch(stem=arch.stem, stages=arch.stages, head=arch.head, name=name)


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered named points, optionally of one family."""
    return [n for n, p in MODELS.items() if family is None or p.family == family]
