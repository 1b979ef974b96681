"""The study file: what to search (space, objectives, constraints, seeds), how to measure it, and where to run it.

A study is a YAML file; every key has a default except `space`. Errors are one line naming the file and the key::

    name: latency                  # default: the file's stem; the Optuna study name
    space: small                   # a shipped space, a space file (relative to this file), or an inline mapping
    objectives: [accuracy, latency_ms]   # or {accuracy: maximize, params: minimize}; see METRICS
    constraints:                   # infeasible trials are recorded as such and never reach the Pareto front
      latency_ms: {max: 1.0}
      params: {max: 200000}
    named: [resnet18]              # seeds: named points, architecture files, or inline architectures (run first)
    sampler: {type: tpe, seed: 0}  # tpe (multi-objective, multivariate TPE) | nsga2 | random | qmc
    evaluator:
      data: {name: digits, resolution: 16}        # evaluators.DataConfig fields
      train: {epochs: 4, batch_size: 64}          # evaluators.TrainConfig fields (device/threads follow resources)
      width_mult: 0.5                             # channel multiplier of the trained / zero-cost proxy model
      latency: {batch_size: 1, backend: eager}    # evaluators.LatencyConfig fields (resolution: the data's)
      zero_cost: {batch_size: 64}
    budget: {trials: 40, minutes: 10}             # either or both; a resumed study counts what is done
    early_stopping: {grace_period: 1, reduction_factor: 2}   # ASHA on accuracy; `off` to disable
    resources: {cpu: 1, gpu: 0}                   # per trial; fractional GPUs pack trials on one GPU
    concurrency: auto                             # trials at once (auto: what the cluster's resources allow)
    storage: sqlite:///latency.db                 # default: a SQLite file next to the study; relative to it
    ray: {address: null}                          # null: a local Ray; an address joins an existing cluster

Named points outside the space are evaluated too (their architecture is stored on the trial, which has no sampled
parameters); samplers that derive their search space from finished trials (nsga2, qmc) would then fall back to
random sampling, so with those samplers every named point must be in the space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from space import Arch, resolve_arch
from space.errors import NasError, SpecError, did_you_mean
from space.search_space import Space


@dataclass(frozen=True)
class Metric:
    """A measurable quantity of a trial: its name, natural direction, unit and what produces it."""

    name: str
    direction: str  # maximize | minimize
    doc: str
    stage: str  # cost | latency | zero_cost | train


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "maximize", "validation top-1 in [0, 1] after proxy training", "train"),
    Metric("latency_ms", "minimize", "median latency of the deploy form on the trial's node (ms per batch)",
           "latency"),
    Metric("params", "minimize", "parameters of the deploy form", "cost"),
    Metric("macs", "minimize", "multiply-accumulates of the deploy form at the data resolution", "cost"),
    Metric("activations", "minimize", "conv/linear output elements at the data resolution", "cost"),
    Metric("synflow", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
    Metric("naswot", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
    Metric("snip", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
)}
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "random", "qmc")


@dataclass(frozen=True)
class Objective:
    """One optimized metric and its direction."""

    metric: str
    direction: str

    @property
    def label(self) -> str:
        """How plots and tables name it."""
        return self.metric


@dataclass(frozen=True)
class Constraint:
    """Bounds on a metric; the violation is relative to the bound, so metrics of any scale weigh alike."""

    metric: str
    max: float | None = None
    min: float | None = None

    def violation(self, value: float) -> float:
        """<= 0 when satisfied, else how far out, relative to the bound."""
        out = []
        if self.max is not None:
            out.append((value - self.max) / max(abs(self.max), 1e-12))
        if self.min is not None:
            out.append((self.min - value) / max(abs(self.min), 1e-12))
        return max(out)

    def describe(self, value: float | None = None) -> str:
        """'latency_ms <= 1.0' (with the offending value when given)."""
        parts = []
        if self.min is not None:
            parts.append(f"{self.metric} >= {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.metric} <= {self.max:g}")
        text = " and ".join(parts)
        return text if value is None else f"{self.metric} = {value:.4g} violates {text}"


@dataclass(frozen=True)
class SamplerSpec:
    """Which Optuna sampler decides what to try; seeded."""

    type: str = "tpe"
    seed: int = 0
    startup: int = 10  # tpe: random trials before the model is used
    multivariate: bool = True  # tpe: model parameters jointly, per group of co-occurring ones (conditional spaces)
    population: int = 8  # nsga2: population size


@dataclass(frozen=True)
class Budget:
    """When to stop: a number of trials and/or minutes of search (a resumed study counts what is done)."""

    trials: int | None = None
    minutes: float | None = None


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA on validation accuracy, in epochs."""

    grace_period: int = 1
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class Resources:
    """What one trial reserves: CPUs (also its torch threads) and a (fractional) GPU."""

    cpu: float = 1.0
    gpu: float = 0.0

    @property
    def threads(self) -> int:
        """Torch threads of a trial: one per reserved CPU (at least one)."""
        return max(1, int(self.cpu))


@dataclass(frozen=True)
class EvaluatorSpec:
    """How a trial measures an architecture (plain dicts of the evaluators' config fields)."""

    data: dict
    train: dict
    latency: dict
    width_mult: float = 1.0
    zero_cost_batch: int = 64
    latency_cache: str = "default"
    quiet: bool = True  # pause training on the node while latency is measured

    @property
    def epochs(self) -> int:
        """Training epochs of a trial."""
        return int(self.train.get("epochs", 5))


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    name: str
    source: str
    description: str
    space: Space
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    named: tuple[Arch, ...]
    sampler: SamplerSpec
    evaluator: EvaluatorSpec
    budget: Budget
    early_stopping: EarlyStopping | None
    resources: Resources
    concurrency: int | None
    storage: str
    address: str | None
    raw: dict = dataclasses.field(compare=False, repr=False)

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives."""
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """Objective names in order (the axis labels of the dashboard)."""
        return [o.label for o in self.objectives]

    def metrics(self) -> set[str]:
        """Every metric a trial must measure: objectives and constrained metrics."""
        return {o.metric for o in self.objectives} | {c.metric for c in self.constraints}

    @property
    def trains(self) -> bool:
        """Whether trials train (accuracy is an objective or constrained)."""
        return "accuracy" in self.metrics()

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """Read and validate a study file."""
        p = Path(path)
        if not p.is_file():
            raise SpecError("no such study file", source=str(path), hint="give the path of a study .yaml")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpecError(f"malformed YAML{where}: {getattr(e, 'problem', e)}", source=str(p)) from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> Study:
        """Validate a parsed study; errors name `source` and the key."""
        try:
            return _parse(data, Path(source))
        except SpecError as e:
            raise e.at(source=source) from None
        except NasError as e:
            raise SpecError(str(e), source=source) from None


# -- parsing ----------------------------------------------------------------------------------------------------------
KEYS = ("name", "description", "space", "objectives", "constraints", "named", "sampler", "evaluator", "budget",
        "early_stopping", "resources", "concurrency", "storage", "ray")


def _parse(data: Any, path: Path) -> Study:
    if not isinstance(data, Mapping):
        raise SpecError(f"a study must be a mapping, got {type(data).__name__}")
    _only(data, KEYS, "")
    if "space" not in data:
        raise SpecError("missing", key="space", hint="name a shipped space (e.g. small), a space file, or inline it")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise SpecError("must be a non-empty string", key="name")
    objectives = _objectives(data.get("objectives", ["accuracy", "latency_ms"]))
    constraints = _constraints(data.get("constraints") or {})
    sampler = _sampler(data.get("sampler") or {})
    evaluator = _evaluator(data.get("evaluator") or {}, path.parent)
    named = _named(data.get("named") or [], path.parent)
    space = _space(data["space"], path.parent)
    if sampler.type in ("nsga2", "qmc"):
        for arch in named:
            ok, why = space.contains_arch(arch)
            if not ok:
                raise SpecError(f"named point '{arch.name or arch.hash}' is not in the space ({why}); the "
                                f"{sampler.type} sampler derives its search space from finished trials, so a point "
                                "without parameters would turn it into random search", key="named",
                                hint="use sampler tpe or random, or seed only points of the space")
    early = _early_stopping(data.get("early_stopping", {}), objectives, evaluator)
    ray = data.get("ray") or {}
    if not isinstance(ray, Mapping):
        raise SpecError("expected a mapping like {address: auto}", key="ray")
    _only(ray, ("address",), "ray")
    address = ray.get("address")
    if address is not None and not isinstance(address, str):
        raise SpecError("expected a string (host:port, auto, or a ray:// URL)", key="ray.address")
    concurrency = data.get("concurrency", "auto")
    if concurrency == "auto" or concurrency is None:
        concurrency = None
    elif isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise SpecError(f"expected auto or a positive integer, got {concurrency!r}", key="concurrency")
    return Study(name=name, source=str(path), description=str(data.get("description", "")), space=space,
                 objectives=objectives, constraints=constraints, named=named, sampler=sampler, evaluator=evaluator,
                 budget=_budget(data.get("budget")), early_stopping=early,
                 resources=_resources(data.get("resources") or {}), concurrency=concurrency,
                 storage=_storage(data.get("storage"), path, name), address=address, raw=dict(data))


def _only(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for k in data:
        if k not in allowed:
            raise SpecError("unknown key", key=f"{prefix}.{k}" if prefix else str(k),
                            hint=did_you_mean(str(k), allowed))


def _metric(name: Any, key: str) -> Metric:
    if not isinstance(name, str) or name not in METRICS:
        raise SpecError(f"unknown metric {name!r}", key=key, hint=did_you_mean(str(name), METRICS))
    return METRICS[name]


def _objectives(raw: Any) -> tuple[Objective, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list) and raw:
        items = [(m, None) for m in raw]
    else:
        raise SpecError("expected a non-empty list of metrics or a mapping metric: direction", key="objectives")
    out = []
    for i, (name, direction) in enumerate(items):
        metric = _metric(name, f"objectives[{i}]")
        direction = direction or metric.direction
        if direction not in DIRECTIONS:
            raise SpecError(f"unknown direction {direction!r}", key=f"objectives.{name}",
                            hint=did_you_mean(str(direction), DIRECTIONS))
        if any(o.metric == metric.name for o in out):
            raise SpecError(f"'{metric.name}' is listed twice", key="objectives")
        out.append(Objective(metric.name, direction))
    return tuple(out)


def _constraints(raw: Any) -> tuple[Constraint, ...]:
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {latency_ms: {max: 1.0}}", key="constraints")
    out = []
    for name, bounds in raw.items():
        _metric(name, f"constraints.{name}")
        key = f"constraints.{name}"
        if not isinstance(bounds, Mapping) or not bounds:
            raise SpecError("expected {max: X} and/or {min: X}", key=key)
        _only(bounds, ("max", "min"), key)
        for b, v in bounds.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"expected a number, got {v!r}", key=f"{key}.{b}")
        out.append(Constraint(name, max=_num(bounds.get("max")), min=_num(bounds.get("min"))))
    return tuple(out)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _sampler(raw: Any) -> SamplerSpec:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {type: tpe, seed: 0}", key="sampler")
    _only(raw, tuple(f.name for f in dataclasses.fields(SamplerSpec)), "sampler")
    spec = _fill(SamplerSpec, raw, "sampler")
    if spec.type not in SAMPLERS:
        raise SpecError(f"unknown sampler '{spec.type}'", key="sampler.type", hint=did_you_mean(spec.type, SAMPLERS))
    if spec.population < 2:
        raise SpecError("must be >= 2", key="sampler.population")
    if spec.startup < 0:
        raise SpecError("must be >= 0", key="sampler.startup")
    return spec


def _fill(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    """An instance of dataclass `cls` from `raw`, every value type-checked against the field's default."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        v = raw[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        values[f.name] = _typed(v, default, f"{prefix}.{f.name}" if prefix else f.name, optional=default is None)
    return cls(**values)


def _typed(v: Any, default: Any, key: str, *, optional: bool = False) -> Any:
    """`v` checked against the type of `default` (ints accepted for floats; anything when the default is None)."""
    if v is None:
        if optional:
            return None
        raise SpecError("must not be empty", key=key)
    if default is None:
        return tuple(v) if isinstance(v, list) else v
    if isinstance(default, bool) or isinstance(v, bool):
        if not (isinstance(default, bool) and isinstance(v, bool)):
            raise SpecError(f"expected {type(default).__name__}, got {v!r}", key=key)
        return v
    if isinstance(default, float) and isinstance(v, (int, float)):
        return float(v)
    if not isinstance(v, type(default)):
        raise SpecError(f"expected {type(default).__name__}, got {type(v).__name__} {v!r}", key=key)
    return v


def _evaluator(raw: Any, base: Path) -> EvaluatorSpec:
    from evaluators import DataConfig, LatencyConfig, TrainConfig

    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping", key="evaluator")
    _only(raw, ("data", "train", "latency", "width_mult", "zero_cost"), "evaluator")
    sections = {}
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("latency", LatencyConfig)):
        body = raw.get(section) or {}
        if not isinstance(body, Mapping):
            raise SpecError("expected a mapping", key=f"evaluator.{section}")
        extra = ("cache", "quiet") if section == "latency" else ()
        _only(body, tuple(f.name for f in dataclasses.fields(cls)) + extra, f"evaluator.{section}")
        checked = _fill(cls, {k: v for k, v in body.items() if k not in extra}, f"evaluator.{section}")
        sections[section] = {k: getattr(checked, k) for k in body if k not in extra}
    data = sections["data"]
    if data.get("root") and not Path(data["root"]).expanduser().is_absolute():
        data["root"] = str((base / data["root"]).resolve())  # relative to the study file, not to a worker's cwd
    data.setdefault("name", DataConfig.name)
    data.setdefault("resolution", DataConfig.resolution)
    sections["latency"].setdefault("resolution", data["resolution"])
    if "epochs" in sections["train"] and sections["train"]["epochs"] < 1:
        raise SpecError("must be >= 1", key="evaluator.train.epochs")
    lat = raw.get("latency") or {}
    cache = lat.get("cache", "default")
    if cache is None:
        cache = "none"
    if not isinstance(cache, str):
        raise SpecError("expected default, none, or a path", key="evaluator.latency.cache")
    if cache not in ("default", "none") and not Path(cache).expanduser().is_absolute():
        cache = str((base / cache).resolve())
    quiet = lat.get("quiet", True)
    if not isinstance(quiet, bool):
        raise SpecError("expected true or false", key="evaluator.latency.quiet")
    width = raw.get("width_mult", 1.0)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise SpecError(f"expected a number in (0, 4], got {width!r}", key="evaluator.width_mult")
    zc = raw.get("zero_cost") or {}
    if not isinstance(zc, Mapping):
        raise SpecError("expected a mapping like {batch_size: 64}", key="evaluator.zero_cost")
    _only(zc, ("batch_size",), "evaluator.zero_cost")
    batch = zc.get("batch_size", 64)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise SpecError("expected an integer >= 2", key="evaluator.zero_cost.batch_size")
    return EvaluatorSpec(data=data, train=sections["train"], latency=sections["latency"], width_mult=float(width),
                         zero_cost_batch=batch, latency_cache=cache, quiet=quiet)


def _named(raw: Any, base: Path) -> tuple[Arch, ...]:
    if not isinstance(raw, list):
        raise SpecError("expected a list of named points, architecture files or inline architectures", key="named")
    out: list[Arch] = []
    for i, item in enumerate(raw):
        key = f"named[{i}]"
        if isinstance(item, Mapping):
            try:
                arch = Arch.from_dict(item)
            except SpecError as e:
                raise e.at(key_prefix=key) from None
            if not arch.name:
                raise SpecError("an inline architecture needs a name", key=f"{key}.name")
        elif isinstance(item, str):
            ref = item
            if item.endswith((".yaml", ".yml", ".json")) and not Path(item).is_absolute():
                ref = str(base / item)
            try:
                arch = resolve_arch(ref)
            except SpecError as e:
                raise SpecError(str(e), key=key) from None
            except NasError as e:
                raise SpecError(str(e), key=key) from None
            if not arch.name:
                arch = dataclasses.replace(arch, name=Path(item).stem)
        else:
            raise SpecError(f"expected a name, a file or a mapping, got {item!r}", key=key)
        if any(a.name == arch.name for a in out):
            raise SpecError(f"'{arch.name}' is listed twice", key=key)
        out.append(arch)
    return tuple(out)


def _space(raw: Any, base: Path) -> Space:
    if isinstance(raw, Mapping):
        try:
            return Space(raw, source="inline space")
        except SpecError as e:
            raise e.at(key_prefix="space") from None
    if not isinstance(raw, str):
        raise SpecError(f"expected a space name, a file, or a mapping, got {raw!r}", key="space")
    local = base / raw
    return Space.load(local if local.is_file() else raw)


def _early_stopping(raw: Any, objectives: tuple[Objective, ...], evaluator: EvaluatorSpec) -> EarlyStopping | None:
    if raw in (False, None, "off", "none"):
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {grace_period: 1, reduction_factor: 2}, or off", key="early_stopping")
    _only(raw, ("type", "grace_period", "reduction_factor"), "early_stopping")
    if raw.get("type", "asha") != "asha":
        raise SpecError(f"unknown type {raw['type']!r}", key="early_stopping.type", hint="expected asha")
    spec = _fill(EarlyStopping, {k: v for k, v in raw.items() if k != "type"}, "early_stopping")
    if spec.grace_period < 1:
        raise SpecError("must be >= 1", key="early_stopping.grace_period")
    if spec.reduction_factor <= 1:
        raise SpecError("must be > 1", key="early_stopping.reduction_factor")
    if not any(o.metric == "accuracy" for o in objectives):
        return None  # nothing is trained epoch by epoch, so there is nothing to stop early
    if evaluator.epochs <= spec.grace_period:
        return None  # every trial would reach the last epoch before the first decision
    return spec


def _budget(raw: Any) -> Budget:
    if raw is None:
        raise SpecError("missing", key="budget", hint="give {trials: N} and/or {minutes: M}")
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {trials: 40, minutes: 10}", key="budget")
    _only(raw, ("trials", "minutes"), "budget")
    trials, minutes = raw.get("trials"), raw.get("minutes")
    if trials is None and minutes is None:
        raise SpecError("give trials and/or minutes", key="budget")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise SpecError(f"expected a positive integer, got {trials!r}", key="budget.trials")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0):
        raise SpecError(f"expected a positive number, got {minutes!r}", key="budget.minutes")
    return Budget(trials=trials, minutes=None if minutes is None else float(minutes))


def _resources(raw: Any) -> Resources:
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {cpu: 1, gpu: 0.5}", key="resources")
    _only(raw, ("cpu", "gpu"), "resources")
    spec = _fill(Resources, raw, "resources")
    if spec.cpu <= 0:
        raise SpecError("must be > 0", key="resources.cpu")
    if spec.gpu < 0 or (spec.gpu > 1 and not float(spec.gpu).is_integer()):
        raise SpecError("expected a fraction of one GPU or a whole number of GPUs", key="resources.gpu")
    return spec


def _storage(raw: Any, path: Path, name: str) -> str:
    if raw is None:
        return f"sqlite:///{(path.parent / f'{name}.db').resolve()}"
    if not isinstance(raw, str) or "://" not in raw:
        raise SpecError(f"expected a database URL like sqlite:///{name}.db, got {raw!r}", key="storage")
    prefix = "sqlite:///"
    if raw.startswith(prefix) and not raw.startswith(prefix + "/") and raw != prefix + ":memory:":
        return prefix + str((path.parent / raw[len(prefix):]).resolve())  # relative to the study file
    return raw
