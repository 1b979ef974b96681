"""The architecture value: an immutable, hashable, YAML/JSON round-trippable description of one network.

An `Arch` is stem → stages → head. Each stage is a run of `depth` blocks of one family (`block`), producing `width`
channels, downsampling by `stride` once; everything else a family needs lives in its own `Params` record. The
builder (`space.builder.build`) is a pure function of this value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from space.errors import NasError, SpecError, did_you_mean
from space.params import BLOCKS, HEADS, STEMS, Params, Registry, make_divisible


def _family_params(registry: Registry, name: str, data: Mapping[str, Any], key: str,
                   common: tuple[str, ...] = ()) -> Params:
    fam = registry.get(name) if name in registry else None
    if fam is None:
        raise SpecError(f"unknown {registry.kind} '{name}'", key=key, hint=did_you_mean(name, registry.names()))
    try:
        return fam.params.from_dict(data, family=f"{registry.kind} '{name}'", common=common)
    except SpecError as e:
        raise e.at(key_prefix=key.rsplit(".", 1)[0]) from None


@dataclass(frozen=True)
class Stem:
    """The input stem: `type` names a stem family; `width` is its output channels."""

    type: str
    width: int
    params: Params

    def to_dict(self, *, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Plain dict, family params flattened in."""
        return {"type": self.type, "width": self.width, **self.params.to_dict(full=full, hashed=hashed)}


@dataclass(frozen=True)
class Stage:
    """`depth` blocks of family `block`, output `width` channels, the first block downsampling by `stride`."""

    block: str
    depth: int
    width: int
    stride: int
    params: Params

    def to_dict(self, *, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Plain dict, family params flattened in."""
        return {"block": self.block, "depth": self.depth, "width": self.width, "stride": self.stride,
                **self.params.to_dict(full=full, hashed=hashed)}


@dataclass(frozen=True)
class Head:
    """The classifier head: `type` names a head family."""

    type: str
    params: Params

    def to_dict(self, *, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Plain dict, family params flattened in."""
        return {"type": self.type, **self.params.to_dict(full=full, hashed=hashed)}


@dataclass(frozen=True)
class Arch:
    """One point of the design space. Equality and hash ignore `name` (a label, not part of the network)."""

    stem: Stem
    stages: tuple[Stage, ...]
    head: Head
    name: str | None = field(default=None, compare=False)

    # -- identity -------------------------------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        """Stable content hash (16 hex chars) of the full canonical form: the identity in caches and storages."""
        blob = json.dumps(self.to_dict(full=True, name=False, hashed=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- serialization --------------------------------------------------------------------------------------------
    def to_dict(self, *, full: bool = False, name: bool = True, hashed: bool = False) -> dict[str, Any]:
        """Plain nested dict; `full` includes parameters left at their defaults; `hashed`: the content-hash form."""
        out: dict[str, Any] = {"name": self.name} if (name and self.name) else {}
        out["stem"] = self.stem.to_dict(full=full, hashed=hashed)
        out["stages"] = [s.to_dict(full=full, hashed=hashed) for s in self.stages]
        out["head"] = self.head.to_dict(full=full, hashed=hashed)
        return out

    def to_yaml(self, *, full: bool = False) -> str:
        """YAML text: one line per stage, readable by a person."""
        d = self.to_dict(full=full)
        lines = []
        if "name" in d:
            lines.append(f"name: {d['name']}")
        lines.append("stem: " + _flow(d["stem"]))
        lines.append("stages:")
        lines += ["  - " + _flow(s) for s in d["stages"]]
        lines.append("head: " + _flow(d["head"]))
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """Compact canonical JSON (full form)."""
        return json.dumps(self.to_dict(full=True), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Arch:
        """Parse and validate a dict (from YAML/JSON); errors name `source` and the key."""
        try:
            return cls._from_dict(data)
        except SpecError as e:
            raise e.at(source=source) from None

    @classmethod
    def _from_dict(cls, data: Any) -> Arch:
        if not isinstance(data, Mapping):
            raise SpecError(f"an architecture must be a mapping, got {type(data).__name__}")
        _only(data, ("name", "stem", "stages", "head"), "")
        for req in ("stem", "stages", "head"):
            if req not in data:
                raise SpecError("missing", key=req, hint="an architecture needs stem, stages and head")
        stem = _component(data["stem"], "stem", ("type", "width"), STEMS)
        stem_obj = Stem(type=stem["type"], width=_int(stem, "width", "stem"), params=stem["params"])
        if not isinstance(data["stages"], list) or not data["stages"]:
            raise SpecError("must be a non-empty list of stages", key="stages")
        stages, w_in = [], stem_obj.width
        for i, raw in enumerate(data["stages"]):
            key = f"stages[{i}]"
            st = _component(raw, key, ("block", "depth", "width", "stride"), BLOCKS, type_key="block")
            derived = st["params"].derived()  # keys the family computes may be left out
            depth = _int(st, "depth", key, default=derived.get("depth"))
            stride = _int(st, "stride", key, default=derived.get("stride", 1))
            width = _int(st, "width", key, default=_derived_width(st["params"], w_in, depth, stride, key))
            stages.append(Stage(block=st["block"], depth=depth, width=width, stride=stride, params=st["params"]))
            w_in = width
        head = _component(data["head"], "head", ("type",), HEADS)
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise SpecError("must be a string", key="name")
        arch = cls(stem=stem_obj, stages=tuple(stages), head=Head(type=head["type"], params=head["params"]),
                   name=name)
        arch.validate()
        return arch

    @classmethod
    def from_yaml(cls, text: str, *, source: str | None = None) -> Arch:
        """Parse YAML text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpecError(f"malformed YAML{where}: {getattr(e, 'problem', e)}", source=source) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        """Read an architecture YAML/JSON file."""
        path = Path(path)
        if not path.is_file():
            raise SpecError("no such file", source=str(path), hint="give a named architecture or an existing .yaml")
        return cls.from_yaml(path.read_text(), source=str(path))

    def save(self, path: str | Path) -> None:
        """Write YAML."""
        Path(path).write_text(self.to_yaml())

    # -- validation and transforms --------------------------------------------------------------------------------
    def validate(self) -> Arch:
        """Check every cross-field constraint the builder relies on; raise SpecError naming the key."""
        if self.stem.width < 1:
            raise SpecError("must be >= 1", key="stem.width")
        for name, comp in (("stem", self.stem), ("head", self.head)):
            try:
                comp.params.validate_fields()
            except SpecError as e:
                raise e.at(key_prefix=name) from None
        try:
            self.stem.params.check(w_in=3, w_out=self.stem.width, stride=1)
        except SpecError as e:
            raise e.at(key_prefix="stem") from None
        w_in = self.stem.width
        for i, st in enumerate(self.stages):
            key = f"stages[{i}]"
            if st.depth < 1:
                raise SpecError(f"must be >= 1, got {st.depth}", key=f"{key}.depth")
            if st.width < 1:
                raise SpecError(f"must be >= 1, got {st.width}", key=f"{key}.width")
            if st.stride < 1:
                raise SpecError(f"must be >= 1, got {st.stride}", key=f"{key}.stride")
            try:
                st.params.validate_fields()
                st.params.check(w_in=w_in, w_out=st.width, stride=st.stride)
                derived = dict(st.params.derived())
                if "width" in st.params.derived_keys:
                    derived["width"] = st.params.out_width(w_in=w_in, depth=st.depth, stride=st.stride)
                for k, v in derived.items():
                    if getattr(st, k) != v:
                        raise SpecError(f"is {getattr(st, k)}, but these {st.block} parameters make it {v}", key=k,
                                        hint=f"set {k}: {v}")
            except SpecError as e:
                raise e.at(key_prefix=key) from None
            w_in = st.width
        try:
            self.head.params.check(w_in=w_in, w_out=w_in, stride=1)
            self.head.params.check_stages(tuple(st.width for st in self.stages))
        except SpecError as e:
            raise e.at(key_prefix="head") from None
        return self

    @property
    def total_stride(self) -> int:
        """Total downsampling of the network (stem reduction times stage strides)."""
        out = self.stem.params.reduction()
        for st in self.stages:
            out *= st.stride
        return out

    @property
    def width(self) -> int:
        """Output channels of the last stage (input of the head)."""
        return self.stages[-1].width

    def scaled(self, mult: float, divisor: int = 8) -> Arch:
        """The same architecture with every channel count multiplied by `mult` (for cheap proxies)."""
        if mult == 1.0:
            return self

        def w(v: int) -> int:
            return make_divisible(v * mult, divisor)

        stem_width = self.stem.width if getattr(self.stem.params, "keeps_width", False) else w(self.stem.width)
        stem = dataclasses.replace(self.stem, width=stem_width, params=self.stem.params.scaled(mult, divisor))
        stem = dataclasses.replace(stem, params=stem.params.fit(w_in=3, w_out=stem.width))
        stages, w_in = [], stem.width
        for st in self.stages:
            new = dataclasses.replace(st, width=w(st.width), params=st.params.scaled(mult, divisor))
            new = dataclasses.replace(new, params=new.params.fit(w_in=w_in, w_out=new.width))
            if "width" in new.params.derived_keys:  # concatenating families: the width follows from the parts
                new = dataclasses.replace(new, width=new.params.out_width(w_in=w_in, depth=new.depth,
                                                                          stride=new.stride))
            stages.append(new)
            w_in = new.width
        head = dataclasses.replace(self.head, params=self.head.params.scaled(mult, divisor))
        out = Arch(stem=stem, stages=tuple(stages), head=head, name=self.name)
        try:
            return out.validate()
        except SpecError as e:
            raise NasError(f"width multiplier {mult} gives an invalid network: {e}") from None


def _derived_width(params: Params, w_in: int, depth: int | None, stride: int, key: str) -> int | None:
    """The stage width a family derives (None when the width is a free choice); depth must be known first."""
    if "width" not in params.derived_keys or depth is None:
        return None
    try:
        return params.out_width(w_in=w_in, depth=depth, stride=stride)
    except SpecError as e:
        raise e.at(key_prefix=key) from None


def _flow(d: Mapping[str, Any]) -> str:
    """One-line YAML flow mapping."""
    return yaml.safe_dump(dict(d), default_flow_style=True, sort_keys=False, width=10_000).strip()


def _only(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for k in data:
        if k not in allowed:
            key = f"{prefix}.{k}" if prefix else str(k)
            raise SpecError("unknown key", key=key, hint=did_you_mean(str(k), allowed))


def _int(d: Mapping[str, Any], k: str, prefix: str, default: int | None = None) -> int:
    v = d.get(k, default)
    if v is None:
        raise SpecError("missing", key=f"{prefix}.{k}")
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"expected int, got {type(v).__name__} {v!r}", key=f"{prefix}.{k}")
    return v


def _component(raw: Any, key: str, common: tuple[str, ...], registry: Registry, type_key: str = "type") -> dict:
    """Split a stem/stage/head mapping into its common keys and its family's validated params."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"expected a mapping, got {type(raw).__name__}", key=key)
    if type_key not in raw:
        raise SpecError(f"missing '{type_key}'", key=key, hint="one of: " + ", ".join(registry.names()))
    family = raw[type_key]
    if not isinstance(family, str):
        raise SpecError(f"expected a name, got {family!r}", key=f"{key}.{type_key}")
    rest = {k: v for k, v in raw.items() if k not in common}
    out = {k: raw[k] for k in common if k in raw}
    out["params"] = _family_params(registry, family, rest, f"{key}.{type_key}", common)
    return out
