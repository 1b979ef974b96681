"""The declarative search space: a YAML file listing, per dimension, the values a search may choose.

A space maps an Optuna trial to an `Arch` (`space.sample(trial)`, define-by-run) and back: `space.encode(arch)`
gives the trial parameters that produce `arch`, so `space.decode(space.encode(a)) == a` for every architecture the
space contains, and anything else fails with "not in this space: <dimension> = <value> is not among <choices>".

Format (see space/full.yaml for a commented example)::

    name: small
    contains: [resnet18]                     # named points this space contains (checked by `nas space check`)
    stem:
      type: [conv]                           # a list is a categorical choice, a scalar is fixed
      width: {int: [16, 64], step: 8}        # integer range; {float: [lo, hi], log: true} for floats
      conv: {kernel: [3, 7], pool: [none, max]}   # per-family parameters; unlisted ones stay at their default
    stages:
      count: {int: [2, 4]}                   # or `depths: [[3,4,6,3], [1,1,3,1]]`: a choice of stage-depth patterns
      block: [basic, bottleneck]
      depth: {int: [1, 4]}
      width: {int: [16, 256], step: 16}
      stride: {per_stage: [[1], [2]]}        # one domain per stage index; the last repeats
      bottleneck: {bot_mul: [0.25, 1.0], group_width: [0, 8]}
    head:
      type: classifier
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from space.arch import Arch
from space.errors import NotInSpaceError, SpecError, did_you_mean
from space.params import BLOCKS, HEADS, STEMS, Params, Registry

SPACE_DIR = Path(__file__).parent


# -- domains --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    """The values one dimension may take: fixed, a categorical choice, or an int/float range."""

    kind: str  # fixed | choice | int | float
    values: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    @classmethod
    def parse(cls, raw: Any, key: str) -> Domain:
        """Parse a YAML domain: scalar (fixed), list (choice), {int: [lo, hi], step, log}, {float: [...]}."""
        if isinstance(raw, list):
            if not raw:
                raise SpecError("an empty choice list", key=key, hint="list at least one value")
            return cls("choice", tuple(_freeze(v) for v in raw))
        if isinstance(raw, Mapping) and ("int" in raw or "float" in raw):
            kind = "int" if "int" in raw else "float"
            unknown = set(raw) - {kind, "step", "log"}
            if unknown:
                k = sorted(unknown)[0]
                raise SpecError("unknown key in a range", key=f"{key}.{k}", hint=did_you_mean(k, [kind, "step", "log"]))
            bounds = raw[kind]
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
                raise SpecError(f"expected [low, high], got {bounds!r}", key=f"{key}.{kind}")
            lo, hi = bounds
            if lo > hi:
                raise SpecError(f"low {lo} is above high {hi}", key=f"{key}.{kind}")
            if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
                raise SpecError("int bounds must be whole numbers", key=f"{key}.{kind}")
            step = raw.get("step")
            log = bool(raw.get("log", False))
            if log and (lo <= 0 or step not in (None, 1)):
                raise SpecError("a log range needs low > 0 and no step", key=key)
            if kind == "int":
                return cls("int", low=int(lo), high=int(hi), step=int(step or 1), log=log)
            return cls("float", low=float(lo), high=float(hi), step=None if step is None else float(step), log=log)
        if isinstance(raw, Mapping):
            raise SpecError("a mapping here must be a range {int: [lo, hi]} or {float: [lo, hi]}", key=key)
        return cls("fixed", (_freeze(raw),))

    @classmethod
    def fixed(cls, value: Any) -> Domain:
        """A single value."""
        return cls("fixed", (_freeze(value),))

    @property
    def is_fixed(self) -> bool:
        """Whether this dimension has exactly one value (nothing to sample)."""
        return self.kind == "fixed" or (self.kind == "choice" and len(self.values) == 1)

    def contains(self, v: Any) -> bool:
        """Whether `v` is one of this domain's values."""
        v = _freeze(v)
        if self.kind in ("fixed", "choice"):
            return any(_same(v, c) for c in self.values)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if not self.low <= v <= self.high:
            return False
        if self.kind == "int":
            return float(v).is_integer() and (int(v) - self.low) % (self.step or 1) == 0
        if self.step:
            k = (v - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def describe(self) -> str:
        """Human-readable: '[a, b, c]' or 'int in [lo, hi] step s'."""
        if self.kind in ("fixed", "choice"):
            return "[" + ", ".join(_show(v) for v in self.values) + "]"
        step = f" step {self.step}" if self.step not in (None, 1) else ""
        return f"{self.kind} in [{self.low}, {self.high}]{step}" + (" (log)" if self.log else "")

    def cardinality(self) -> float:
        """Number of values (inf for a continuous range)."""
        if self.kind in ("fixed", "choice"):
            return len(self.values)
        if self.kind == "int":
            return (self.high - self.low) // (self.step or 1) + 1
        if self.step:
            return math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return math.inf

    # Optuna parameters are primitives; tuple-valued choices travel as JSON strings.
    def _choices(self) -> list:
        return [_to_param(v) for v in self.values]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value."""
        if self.kind == "fixed" or (self.kind == "choice" and len(self.values) == 1):
            return self.values[0]
        if self.kind == "choice":
            return _from_param(trial.suggest_categorical(name, self._choices()))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def to_param(self, v: Any) -> Any:
        """The Optuna parameter value for value `v`."""
        if self.kind == "choice":
            return _to_param(next(c for c in self.values if _same(_freeze(v), c)))
        return v

    def from_param(self, p: Any) -> Any:
        """Value of an Optuna parameter."""
        return _from_param(p) if self.kind == "choice" else p


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)


def _to_param(v: Any) -> Any:
    return json.dumps(list(v)) if isinstance(v, tuple) else v


def _from_param(p: Any) -> Any:
    if isinstance(p, str) and p.startswith("["):
        return _freeze(json.loads(p))
    return p


def _show(v: Any) -> str:
    return json.dumps(list(v)) if isinstance(v, tuple) else str(v)


# -- component spaces -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilySpace:
    """Domains of one family's parameters (and overrides of the component's common keys)."""

    name: str
    params: type[Params]
    fields: dict[str, Domain]
    common: dict[str, Domain]


@dataclass(frozen=True)
class ComponentSpace:
    """Space of a stem, of every stage, or of the head: the family choice, common keys, per-family parameters."""

    kind: str  # stem | stage | head
    type_key: str
    types: Domain
    common: dict[str, Domain]
    families: dict[str, FamilySpace]
    per_stage: dict[str, tuple[Domain, ...]] = field(default_factory=dict)

    def common_domain(self, family: str, key: str, index: int | None) -> tuple[str, Domain]:
        """(name suffix, domain) of a common key for a family, honouring family overrides and per-stage lists."""
        fam = self.families.get(family)
        if fam is not None and key in fam.common:
            return f"{family}.{key}", fam.common[key]
        if key in self.per_stage and index is not None:
            doms = self.per_stage[key]
            return key, doms[min(index, len(doms) - 1)]
        return key, self.common[key]


def _parse_component(raw: Any, kind: str, registry: Registry, type_key: str, common_keys: tuple[str, ...],
                     defaults: dict[str, Any], key: str, extra_keys: tuple[str, ...] = ()) -> ComponentSpace:
    if not isinstance(raw, Mapping):
        raise SpecError(f"expected a mapping, got {type(raw).__name__}", key=key)
    allowed = (type_key, *common_keys, *extra_keys, *registry.names())
    for k in raw:
        if k not in allowed:
            raise SpecError("unknown key", key=f"{key}.{k}", hint=did_you_mean(str(k), allowed))
    if type_key not in raw:
        raise SpecError(f"missing '{type_key}'", key=key, hint="list the families a search may choose")
    types = Domain.parse(raw[type_key], f"{key}.{type_key}")
    for t in types.values:
        if t not in registry:
            raise SpecError(f"unknown {registry.kind} '{t}'", key=f"{key}.{type_key}",
                            hint=did_you_mean(str(t), registry.names()))
    common, per_stage = {}, {}
    for ck in common_keys:
        val = raw.get(ck, defaults.get(ck))
        if val is None:
            raise SpecError("missing", key=f"{key}.{ck}")
        if isinstance(val, Mapping) and "per_stage" in val:
            if set(val) != {"per_stage"} or not isinstance(val["per_stage"], list) or not val["per_stage"]:
                raise SpecError("per_stage takes a non-empty list of domains, one per stage", key=f"{key}.{ck}")
            per_stage[ck] = tuple(Domain.parse(d, f"{key}.{ck}.per_stage[{i}]") for i, d in enumerate(val["per_stage"]))
            common[ck] = per_stage[ck][-1]
        else:
            common[ck] = Domain.parse(val, f"{key}.{ck}")
    families = {}
    for t in types.values:
        fam = registry.get(t)
        section = raw.get(t, {}) or {}
        if not isinstance(section, Mapping):
            raise SpecError("expected a mapping of parameter domains", key=f"{key}.{t}")
        names = [f.name for f in fam.params.fields()]
        for k in section:
            if k not in names and k not in common_keys:
                raise SpecError(f"unknown parameter of {registry.kind} '{t}'", key=f"{key}.{t}.{k}",
                                hint=did_you_mean(str(k), [*names, *common_keys]))
        doms = {}
        for f in fam.params.fields():
            doms[f.name] = Domain.parse(section[f.name], f"{key}.{t}.{f.name}") if f.name in section \
                else Domain.fixed(f.default)
        overrides = {ck: Domain.parse(section[ck], f"{key}.{t}.{ck}") for ck in common_keys if ck in section}
        families[t] = FamilySpace(t, fam.params, doms, overrides)
    for t in raw:
        if t in registry and t not in types.values:
            raise SpecError(f"parameters given for {registry.kind} '{t}', which is not among the choices",
                            key=f"{key}.{t}", hint=f"add it to {key}.{type_key} or remove the section")
    return ComponentSpace(kind, type_key, types, common, families, per_stage)


# -- the space ------------------------------------------------------------------------------------------------------
Picker = Callable[[str, Domain, Callable[[], Any]], Any]


class Space:
    """A search space loaded from YAML. Picklable; `space(trial)` is Optuna define-by-run and returns the `Arch`."""

    def __init__(self, data: Mapping[str, Any], *, source: str | None = None):
        self.source = source
        try:
            self._parse(data)
        except SpecError as e:
            raise e.at(source=source) from None

    def _parse(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"a space must be a mapping, got {type(data).__name__}")
        allowed = ("name", "description", "contains", "stem", "stages", "head")
        for k in data:
            if k not in allowed:
                raise SpecError("unknown key", key=str(k), hint=did_you_mean(str(k), allowed))
        for req in ("stem", "stages", "head"):
            if req not in data:
                raise SpecError("missing", key=req)
        self.name = str(data.get("name") or (Path(self.source).stem if self.source else "space"))
        self.description = str(data.get("description", ""))
        contains = data.get("contains", []) or []
        if not isinstance(contains, list) or not all(isinstance(c, str) for c in contains):
            raise SpecError("expected a list of named points", key="contains")
        self.contains = tuple(contains)
        self.raw = dict(data)
        self.stem = _parse_component(data["stem"], "stem", STEMS, "type", ("width",), {}, "stem")
        st = data["stages"]
        if not isinstance(st, Mapping):
            raise SpecError("expected a mapping", key="stages")
        if "depths" in st and ("count" in st or "depth" in st):
            raise SpecError("give either depths (patterns) or count + depth, not both", key="stages.depths")
        self.depths = Domain.parse(st["depths"], "stages.depths") if "depths" in st else None
        if self.depths is not None:
            for pat in self.depths.values:
                if not isinstance(pat, tuple) or not pat or not all(isinstance(d, int) and d > 0 for d in pat):
                    raise SpecError(f"each pattern must be a list of positive stage depths, got {_show(pat)}",
                                    key="stages.depths")
        self.count = None if self.depths is not None else Domain.parse(st.get("count", 1), "stages.count")
        self.stages = _parse_component(st, "stage", BLOCKS, "block", ("depth", "width", "stride"),
                                       {"depth": 1, "stride": 1}, "stages", extra_keys=("count", "depths"))
        self.head = _parse_component(data["head"], "head", HEADS, "type", (), {}, "head")

    @classmethod
    def load(cls, path: str | Path) -> Space:
        """Load a space file (a path, or the name of a shipped space such as 'full')."""
        p = Path(path)
        if not p.is_file() and (SPACE_DIR / f"{path}.yaml").is_file():
            p = SPACE_DIR / f"{path}.yaml"
        if not p.is_file():
            shipped = sorted(q.stem for q in SPACE_DIR.glob("*.yaml"))
            raise SpecError("no such space file", source=str(path), hint="shipped spaces: " + ", ".join(shipped))
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpecError(f"malformed YAML{where}: {getattr(e, 'problem', e)}", source=str(p)) from None
        return cls(data, source=str(p))

    def __getstate__(self) -> dict:
        return {"raw": self.raw, "source": self.source}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["raw"], source=state["source"])

    def __repr__(self) -> str:
        return f"Space({self.name!r}, source={self.source!r})"

    # -- the one walk behind sample / encode / decode ---------------------------------------------------------------
    def _walk(self, pick: Picker, arch: dict | None = None) -> dict:
        """Build an architecture dict, asking `pick(param_name, domain, actual)` for every dimension.

        `actual()` returns the value in `arch` (only used when encoding).
        """
        def get(*path: Any) -> Callable[[], Any]:
            def read() -> Any:
                node: Any = arch
                for p in path:
                    node = node[p]
                return _freeze(node)
            return read

        out: dict[str, Any] = {}
        out["stem"] = self._component(self.stem, "stem", pick, get, ("stem",), None)
        if self.depths is not None:
            pattern = pick("stages.depths", self.depths, lambda: tuple(s["depth"] for s in arch["stages"]))
            count = len(pattern)
        else:
            pattern = None
            count = pick("stages.count", self.count, lambda: len(arch["stages"]))
        if arch is not None and len(arch["stages"]) != count:
            raise NotInSpaceError(f"the architecture has {len(arch['stages'])} stages, the pattern {count}",
                                  key="stages")
        stages, w_in = [], out["stem"]["width"]
        for i in range(count):
            stage = self._component(self.stages, f"s{i}", pick, get, ("stages", i), i,
                                    fixed={"depth": pattern[i]} if pattern else None, w_in=w_in)
            stages.append(stage)
            w_in = stage["width"]
        out["stages"] = stages
        out["head"] = self._component(self.head, "head", pick, get, ("head",), None)
        return out

    def _component(self, comp: ComponentSpace, prefix: str, pick: Picker, get: Callable, path: tuple,
                   index: int | None, fixed: dict | None = None, w_in: int = 0) -> dict:
        family = pick(f"{prefix}.{comp.type_key}", comp.types, get(*path, comp.type_key))
        fam = comp.families[family]
        out: dict[str, Any] = {comp.type_key: family}
        for ck in comp.common:
            if ck in fam.params.derived_keys:
                continue
            if fixed and ck in fixed:
                out[ck] = fixed[ck]
                continue
            suffix, dom = comp.common_domain(family, ck, index)
            out[ck] = pick(f"{prefix}.{suffix}", dom, get(*path, ck))
        values: dict[str, Any] = {}
        for f in fam.params.fields():
            cond = f.metadata.get("when")
            if cond is not None and values.get(cond[0], fam.params.field(cond[0]).default) not in cond[1]:
                values[f.name] = _freeze(f.default)
                continue
            dom = fam.fields[f.name]
            name = f"{prefix}.{family}.{f.name}"
            length_of = f.metadata.get("length_of")
            if length_of and not (dom.kind == "choice" and dom.values and isinstance(dom.values[0], tuple)) \
                    and dom.kind != "fixed":
                n = values[length_of]
                values[f.name] = tuple(pick(f"{name}.{j}", dom, get(*path, f.name, j)) for j in range(n))
            else:
                values[f.name] = pick(name, dom, get(*path, f.name))
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})
        if fam.params.derived_keys:
            params = fam.params(**values)
            out.update(params.derived())
            if "width" in fam.params.derived_keys:  # concatenating families: the width follows from the parts
                out["width"] = params.out_width(w_in=w_in, depth=out["depth"], stride=out["stride"])
        return out

    # -- public API -------------------------------------------------------------------------------------------------
    def sample(self, trial: Any) -> Arch:
        """Sample an architecture with an Optuna trial (define-by-run); invalid combinations raise SpecError."""
        data = self._walk(lambda name, dom, actual: dom.suggest(trial, name))
        return Arch.from_dict(data, source=f"space '{self.name}' point")

    __call__ = sample

    def decode(self, params: Mapping[str, Any]) -> Arch:
        """The architecture for a dict of trial parameters (as stored on an Optuna trial)."""
        def pick(name: str, dom: Domain, actual: Callable) -> Any:
            if dom.is_fixed:
                return dom.values[0]
            if name not in params:
                raise SpecError(f"parameter '{name}' is missing", source=f"space '{self.name}'")
            v = dom.from_param(params[name])
            if not dom.contains(v):
                raise NotInSpaceError(f"not in this space: {name} = {_show(v)} is not among {dom.describe()}")
            return v

        return Arch.from_dict(self._walk(pick), source=f"space '{self.name}' point")

    def encode(self, arch: Arch) -> dict[str, Any]:
        """Trial parameters that decode to `arch`; NotInSpaceError naming the dimension when there are none."""
        params: dict[str, Any] = {}

        def pick(name: str, dom: Domain, actual: Callable) -> Any:
            try:
                v = actual()
            except (KeyError, IndexError):
                v = None
            if not dom.contains(v):
                raise NotInSpaceError(f"not in this space '{self.name}': {name} = {_show(v)} is not among "
                                      f"{dom.describe()}")
            if not dom.is_fixed:
                params[name] = dom.to_param(v)
            return v

        self._walk(pick, arch.to_dict(full=True))
        if self.decode(params) != arch:  # a guard on the walk itself; should never trigger
            raise NotInSpaceError(f"not in this space '{self.name}': {arch.name or arch.hash} does not round-trip")
        return params

    def contains_arch(self, arch: Arch) -> tuple[bool, str]:
        """(True, '') when the space contains `arch`, else (False, the reason)."""
        try:
            self.encode(arch)
        except NotInSpaceError as e:
            return False, str(e)
        return True, ""

    def dimensions(self) -> int:
        """Number of sampled (non-fixed) dimensions of a deepest point (an upper bound for conditional spaces)."""
        return len(self._max_params())

    def _max_params(self) -> list[str]:
        names = []
        for comp, prefix, copies in ((self.stem, "stem", 1), (self.stages, "s", self._max_count()),
                                     (self.head, "head", 1)):
            for i in range(copies):
                pre = prefix if prefix != "s" else f"s{i}"
                if not comp.types.is_fixed:
                    names.append(f"{pre}.type")
                best = 0
                for fam in comp.families.values():
                    k = sum(not d.is_fixed for d in fam.fields.values())
                    k += sum(not comp.common_domain(fam.name, ck, i)[1].is_fixed for ck in comp.common
                             if ck not in fam.params.derived_keys)
                    best = max(best, k)
                names += [f"{pre}.{j}" for j in range(best)]
        return names

    def _max_count(self) -> int:
        if self.depths is not None:
            return max(len(p) for p in self.depths.values)
        return int(max(self.count.values) if self.count.kind in ("fixed", "choice") else self.count.high)

    def log10_size(self) -> float:
        """log10 of the number of distinct points (inf when a dimension is continuous); conditions respected."""
        total = 0.0
        counts = (self.depths.values if self.depths is not None else
                  (self.count.values if self.count.kind in ("fixed", "choice")
                   else range(int(self.count.low), int(self.count.high) + 1, int(self.count.step or 1))))
        stem = self._component_size(self.stem, None)
        head = self._component_size(self.head, None)
        per_count = []
        for c in counts:
            n = len(c) if isinstance(c, tuple) else int(c)
            s = 0.0
            for i in range(n):
                s += math.log10(self._component_size(self.stages, i, pattern=self.depths is not None))
            per_count.append(s)
        m = max(per_count)
        total = math.log10(stem) + math.log10(head) + m + math.log10(sum(10 ** (x - m) for x in per_count))
        return total

    def _component_size(self, comp: ComponentSpace, index: int | None, pattern: bool = False) -> float:
        size = 0.0
        for fam in comp.families.values():
            n = 1.0
            for ck in comp.common:
                if (pattern and ck == "depth") or ck in fam.params.derived_keys:
                    continue
                n *= comp.common_domain(fam.name, ck, index)[1].cardinality()
            dependents: dict[str, list] = {}
            for f in fam.params.fields():
                cond = f.metadata.get("when")
                if cond:
                    dependents.setdefault(cond[0], []).append((f.name, cond[1]))
            for f in fam.params.fields():
                if f.metadata.get("when"):
                    continue
                dom = fam.fields[f.name]
                if f.name in dependents and dom.kind in ("fixed", "choice"):
                    n *= sum(math.prod(fam.fields[d].cardinality() for d, allowed in dependents[f.name]
                                       if v in allowed) for v in dom.values)
                else:
                    n *= dom.cardinality()
            size += n
        return size
