"""Named architectures: the fixed points of the space, registered by name as functions returning `Arch` values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from space.arch import Arch
from space.params import Registry


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


def get_arch(name: str) -> Arch:
    """The architecture of named point `name`."""
    return MODELS.get(name).arch()


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered named points, optionally of one family."""
    return [n for n, p in MODELS.items() if family is None or p.family == family]
