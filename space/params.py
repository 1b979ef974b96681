"""Typed, validated parameter records for stems, blocks and heads, and the family registries.

A *family* (one block type, one stem type, one head type) is a `Params` dataclass describing its choices plus a
builder turning those choices into a module. Adding a family is one file that defines both and registers them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from space.errors import SpecError, UnknownNameError, did_you_mean

T = TypeVar("T")


def param(
    default: Any,
    *,
    doc: str = "",
    choices: tuple | Callable[[], typing.Iterable] | None = None,
    min: float | None = None,  # noqa: A002 - mirrors the YAML vocabulary
    max: float | None = None,  # noqa: A002
    when: tuple[str, tuple] | None = None,
    channels: bool = False,
    length_of: str | None = None,
    added: bool = False,
) -> Any:
    """Declare a family parameter: its default, allowed values, and the condition under which it applies.

    `when=("act", ("series",))` makes the parameter conditional: it only applies (and a space only samples it)
    when field `act` takes one of those values (`NONZERO` in place of the values: when it is not zero).
    `channels=True` marks a channel count that width multipliers scale. `length_of="streams"` makes a tuple field's
    length equal to the integer field `streams`.
    `added=True` marks a field added to a family after architectures of it were stored: while it holds its
    default it is left out of the content hash, so the hashes (cache and storage keys) of those stay the same.
    """
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "when": when, "channels": channels,
            "length_of": length_of, "added": added}
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


class NonZero:
    """A `when` condition met by every value but zero: `when=("se", NONZERO)` applies a field only with an SE."""

    def __contains__(self, value: object) -> bool:
        return bool(value)

    def __repr__(self) -> str:
        return "non-zero"


NONZERO = NonZero()


def describe_condition(allowed: object) -> str:
    """How an error message states a `when` condition: 'is non-zero' or 'is one of [...]'."""
    return "is non-zero" if isinstance(allowed, NonZero) else f"is one of {list(allowed)}"  # type: ignore[call-overload]


@dataclass(frozen=True)
class Params:
    """Base class of a family's parameters: frozen, typed, validated on construction from user data."""

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        """Cross-field checks that need the stage's channel counts; raise SpecError(key=...) on failure."""

    def check_stages(self, widths: tuple[int, ...]) -> None:
        """Cross-field checks of a head against the stage widths (auxiliary classifiers read stage outputs)."""

    def reduction(self) -> int:
        """Spatial downsampling factor of a stem with these parameters (1 for blocks and heads)."""
        return 1

    # Common stage keys ("depth", "stride", "width") that a block family computes (see `derived` and `out_width`); a
    # search space fills these in instead of sampling them, so its points stay valid.
    derived_keys: typing.ClassVar[tuple[str, ...]] = ()

    def derived(self) -> dict[str, Any]:
        """Values of the common stage keys "depth" and "stride" named in `derived_keys`, from these parameters."""
        return {}

    def out_width(self, *, w_in: int, depth: int, stride: int) -> int:
        """Stage width these parameters give a stage of `depth` blocks on `w_in` channels ("width" derived)."""
        raise TypeError(f"{type(self).__name__} does not derive the stage width: only families that list 'width' in "
                        "derived_keys define out_width")

    def fit(self, *, w_in: int, w_out: int) -> Params:
        """Return a copy adjusted to new channel counts after width scaling (e.g. clamp group widths)."""
        return self

    # -- introspection --------------------------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        """The dataclass fields of this family's parameters."""
        return dataclasses.fields(cls)

    @classmethod
    def types(cls) -> dict[str, Any]:
        """Resolved type hints of the fields."""
        return typing.get_type_hints(cls)

    def applies(self, name: str) -> bool:
        """Whether field `name` applies given the other fields (its `when` condition holds)."""
        cond = self.field(name).metadata.get("when")
        return cond is None or getattr(self, cond[0]) in cond[1]

    @classmethod
    def field(cls, name: str) -> dataclasses.Field:
        """The dataclass field called `name`."""
        return {f.name: f for f in cls.fields()}[name]

    def to_dict(self, *, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Plain dict of the fields; only the non-default ones unless `full`; `hashed`: the content-hash form."""
        out = {}
        for f in self.fields():
            v = getattr(self, f.name)
            if hashed and f.metadata.get("added") and v == f.default:
                continue
            if full or v != f.default:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, family: str, common: tuple[str, ...] = ()) -> Params:
        """Build from user data: unknown keys, wrong types, out-of-range values and inapplicable fields fail."""
        names = [f.name for f in cls.fields()]
        for key in data:
            if key not in names:
                raise SpecError(f"unknown key for {family}", key=str(key),
                                hint=did_you_mean(str(key), [*names, *common]))
        types = cls.types()
        values = {}
        for f in cls.fields():
            if f.name in data:
                values[f.name] = _coerce(data[f.name], types[f.name], f.name)
        obj = cls(**values)
        obj.validate_fields()
        return obj

    def validate_fields(self) -> None:
        """Check ranges, choices, tuple lengths and conditions of every field."""
        for f in self.fields():
            v = getattr(self, f.name)
            meta = f.metadata
            items = v if isinstance(v, tuple) else (v,)
            for item in items:
                choices = meta.get("choices")
                if callable(choices):
                    choices = tuple(choices())
                if choices is not None and item not in choices:
                    raise SpecError(f"{item!r} is not allowed", key=f.name, hint=did_you_mean(item, choices))
                if meta.get("min") is not None and item < meta["min"]:
                    raise SpecError(f"{item} is below the minimum {meta['min']}", key=f.name)
                if meta.get("max") is not None and item > meta["max"]:
                    raise SpecError(f"{item} is above the maximum {meta['max']}", key=f.name)
            if meta.get("length_of") and len(v) != getattr(self, meta["length_of"]):
                raise SpecError(f"needs {getattr(self, meta['length_of'])} entries (one per {meta['length_of']}), "
                                f"got {len(v)}", key=f.name)
            if not self.applies(f.name) and v != f.default:
                other, allowed = meta["when"]
                raise SpecError(f"only applies when {other} {describe_condition(allowed)}", key=f.name)

    def scaled(self, mult: float, divisor: int) -> Params:
        """Copy with every channel-count field that applies multiplied by `mult` (rounded to `divisor`)."""
        changes = {}
        for f in self.fields():
            if f.metadata.get("channels") and self.applies(f.name):
                v = getattr(self, f.name)
                if isinstance(v, tuple):
                    changes[f.name] = tuple(make_divisible(x * mult, divisor) if x else x for x in v)
                elif v:
                    changes[f.name] = make_divisible(v * mult, divisor)
        return dataclasses.replace(self, **changes) if changes else self


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce a YAML/JSON value to a field type (int, float, str, bool, tuple[...]); raise SpecError otherwise."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"expected a list, got {type(value).__name__} {value!r}", key=key)
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise SpecError(f"expected {tp.__name__}, got {type(value).__name__} {value!r}", key=key)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of `divisor`, never below `round_limit` of it (MobileNet: 0.9; SE: 0)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class Family:
    """A registered stem, block or head family: its parameter record and its module builder."""

    name: str
    kind: str
    params: type[Params]
    build: Callable[..., Any]
    doc: str = ""


class Registry(Generic[T]):
    """A name → entry map with did-you-mean lookups and a decorator for registration."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name` (names are unique)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """Look `name` up, raising UnknownNameError with a suggestion when it is not registered."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs sorted by name."""
        return sorted(self._entries.items())


STEMS: Registry[Family] = Registry("stem type")
BLOCKS: Registry[Family] = Registry("block type")
HEADS: Registry[Family] = Registry("head type")


def register_family(kind: str, name: str, params: type[Params], doc: str = "") -> Callable:
    """Decorator registering a builder function as the `name` family of `kind` ('stem', 'block' or 'head')."""
    registry = {"stem": STEMS, "block": BLOCKS, "head": HEADS}[kind]

    def deco(build: Callable) -> Callable:
        registry.add(name, Family(name, kind, params, build, doc or (build.__doc__ or "").strip().split("\n")[0]))
        return build

    return deco

