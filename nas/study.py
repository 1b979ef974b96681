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
    seed: 0                        # every trial's weight init, data order and augmentation derive from it
    evaluator:
      data: {name: digits}                        # the task: evaluators.DataConfig fields (not the resolution)
      target: {width_mult: 1.0, resolution: 32}   # the network that will be deployed: latency, params, MACs
      latency: {batch_size: 1, backend: eager}    # evaluators.LatencyConfig fields: how the target is timed
      proxy: {width_mult: 0.5, resolution: 16}    # the cheaper copy trained to estimate accuracy (or `target`)
      train: {epochs: 4, batch_size: 64}          # the proxy's recipe: evaluators.TrainConfig fields
      adapt_input: {min_feature: 2}               # small-input stems for every network (space.adapt), or off
      zero_cost: {batch_size: 64}
    repeats: {seeds: 2, of: [front, named]}       # re-train these with other seeds after the search: the spread
    budget: {trials: 40, minutes: 10}             # either or both; a resumed study counts what is done
    early_stopping: {grace_period: 1, reduction_factor: 2}   # ASHA on accuracy; `off` to disable
    resources: {cpu: 1, gpu: 0}                   # per trial; fractional GPUs pack trials on one GPU
    concurrency: auto                             # trials at once (auto: what the cluster's resources allow)
    storage: sqlite:///latency.db                 # default: a SQLite file next to the study; relative to it
    ray: {address: null}                          # null: a local Ray; an address joins an existing cluster

*Target and proxy.* A trial concerns two networks of one architecture. The **target** is what will be deployed:
its latency, params, MACs and activations are measured (at `target.width_mult` and `target.resolution`, with the
`latency` settings), and constraints on them bound it. The **proxy** is a cheaper copy (narrower, smaller inputs,
fewer training images and epochs) that is trained instead; `accuracy` is the proxy's. With `proxy: target` the
target itself is trained and every figure on the front is of one trained network.

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
    Metric("accuracy", "maximize", "validation top-1 in [0, 1] of the trained proxy", "train"),
    Metric("latency_ms", "minimize", "median latency of the target's deploy form on the trial's node (ms per batch)",
           "latency"),
    Metric("params", "minimize", "parameters of the target's deploy form", "cost"),
    Metric("macs", "minimize", "multiply-accumulates of the target's deploy form at the target resolution", "cost"),
    Metric("activations", "minimize", "conv/linear output elements of the target at the target resolution", "cost"),
    Metric("synflow", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
    Metric("naswot", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
    Metric("snip", "maximize", "zero-cost proxy of the untrained proxy model", "zero_cost"),
)}
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("front", "tpe", "nsga2", "random", "qmc")


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
class Repeats:
    """Re-train chosen trials' proxies with other seeds after the search, so accuracy has a measured spread."""

    seeds: int = 2  # extra seeds per architecture (repeat indices 1..seeds; the trial itself is repeat 0)
    of: tuple[str, ...] = ("front", "named")  # front | named | all


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
class Network:
    """One of a trial's two networks: the deployed *target* or the trained *proxy* (width multiplier, input size)."""

    role: str  # target | proxy
    width_mult: float
    resolution: int
    train_images: int | None = None  # proxy: a seeded subset of the training images (None: all)

    def short(self) -> str:
        """'proxy ×0.5 @16px' — how table headers and axis labels name it."""
        return f"{self.role} ×{self.width_mult:g} @{self.resolution}px"


@dataclass(frozen=True)
class EvaluatorSpec:
    """How a trial measures an architecture: the target and proxy networks, plain dicts of the evaluators' fields.

    `data` holds the proxy's data settings (its resolution and training subset included), `latency` the target's
    timing settings (its resolution included), `train` the proxy's recipe.
    """

    data: dict
    train: dict
    latency: dict
    target: Network = Network("target", 1.0, 32)
    proxy: Network = Network("proxy", 1.0, 32)
    adapt_min_feature: int | None = 2  # small-input adaptation of every network (space.adapt); None: off
    zero_cost_batch: int = 64
    latency_cache: str = "default"
    quiet: bool = True  # pause training on the node while latency is measured

    @property
    def epochs(self) -> int:
        """Training epochs of a trial's proxy."""
        return int(self.train.get("epochs", 5))

    @property
    def proxy_is_target(self) -> bool:
        """Whether the trained network is the deployed one (same width and resolution, all training images)."""
        return (self.proxy.width_mult == self.target.width_mult and self.proxy.resolution == self.target.resolution
                and self.proxy.train_images is None)

    @property
    def adapt_resolution(self) -> int:
        """The input the adaptation fits: the smaller of the two (both networks share one architecture)."""
        return min(self.target.resolution, self.proxy.resolution)

    def describe_proxy(self) -> str:
        """'proxy ×0.5 @16px, 4 epochs, digits' (or 'the target itself, ...')."""
        what = "the target itself" if self.proxy_is_target else self.proxy.short()
        subset = f" ({self.proxy.train_images} training images)" if self.proxy.train_images else ""
        return f"{what}, {self.epochs} epochs, {self.data.get('name')}{subset}"

    def describe_target(self) -> str:
        """'target ×1 @32px; cpu, batch 1, 1 thread(s), eager' — the deployed network and its timing conditions."""
        lat = self.latency
        return (f"{self.target.short()}; {lat.get('device', 'cpu')}, batch {lat.get('batch_size', 1)}, "
                f"{lat.get('threads', 1)} thread(s), {lat.get('backend', 'eager')}")


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
    seed: int = 0
    repeats: Repeats | None = None
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives."""
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """Objective metric names in order (the keys of trial attributes and report columns)."""
        return [o.metric for o in self.objectives]

    @property
    def metric_labels(self) -> list[str]:
        """Objective names as Optuna and the dashboard show them: which network and fidelity each is of."""
        return [self.metric_label(o.metric) for o in self.objectives]

    def metric_label(self, metric: str) -> str:
        """'accuracy (proxy ×0.5 @16px, 4 ep)', 'latency_ms (target ×1 @32px, cpu b1 t1 eager)', ..."""
        ev = self.evaluator
        if metric == "accuracy":
            net = "target" if ev.proxy_is_target else ev.proxy.short()
            return f"accuracy ({net}, {ev.epochs} ep)"
        if metric == "latency_ms":
            lat = ev.latency
            return (f"latency_ms ({ev.target.short()}, {lat.get('device', 'cpu')} b{lat.get('batch_size', 1)} "
                    f"t{lat.get('threads', 1)} {lat.get('backend', 'eager')})")
        if METRICS[metric].stage == "cost":
            return f"{metric} ({ev.target.short()})"
        return f"{metric} ({ev.proxy.short()}, untrained)"

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
        "early_stopping", "resources", "concurrency", "storage", "ray", "seed", "repeats")
REPEAT_SETS = ("front", "named", "all")


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
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"expected a non-negative integer, got {seed!r}", key="seed")
    return Study(name=name, source=str(path), description=str(data.get("description", "")), space=space,
                 objectives=objectives, constraints=constraints, named=named, sampler=sampler, evaluator=evaluator,
                 budget=_budget(data.get("budget")), early_stopping=early,
                 resources=_resources(data.get("resources") or {}), concurrency=concurrency,
                 storage=_storage(data.get("storage"), path, name), address=address, seed=seed,
                 repeats=_repeats(data.get("repeats")), raw=dict(data))


def _repeats(raw: Any) -> Repeats | None:
    if raw in (None, False, "off", "none"):
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {seeds: 2, of: [front, named]}, or off", key="repeats")
    _only(raw, ("seeds", "of"), "repeats")
    seeds = raw.get("seeds", 2)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
        raise SpecError(f"expected an integer in [1, 100], got {seeds!r}", key="repeats.seeds")
    of = raw.get("of", ["front", "named"])
    of = [of] if isinstance(of, str) else of
    if not isinstance(of, list) or not of:
        raise SpecError("expected a list of front, named, all", key="repeats.of")
    for i, item in enumerate(of):
        if item not in REPEAT_SETS:
            raise SpecError(f"unknown set {item!r}", key=f"repeats.of[{i}]", hint=did_you_mean(str(item), REPEAT_SETS))
    return Repeats(seeds=seeds, of=tuple(of))


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
    if "width_mult" in raw:
        raise SpecError("moved", key="evaluator.width_mult", hint="give evaluator.proxy.width_mult (the trained copy) "
                        "and evaluator.target.width_mult (the deployed network, default 1)")
    _only(raw, ("data", "train", "latency", "target", "proxy", "adapt_input", "zero_cost"), "evaluator")
    sections = {}
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("latency", LatencyConfig)):
        body = raw.get(section) or {}
        if not isinstance(body, Mapping):
            raise SpecError("expected a mapping", key=f"evaluator.{section}")
        extra = ("cache", "quiet") if section == "latency" else ()
        _only(body, tuple(f.name for f in dataclasses.fields(cls)) + extra, f"evaluator.{section}")
        checked = _fill(cls, {k: v for k, v in body.items() if k not in extra}, f"evaluator.{section}")
        sections[section] = {k: getattr(checked, k) for k in body if k not in extra}
    if "seed" in sections["train"]:
        raise SpecError("a trial's training seed derives from the study", key="evaluator.train.seed",
                        hint="set the top-level `seed:` of the study")
    if "resolution" in sections["latency"]:
        raise SpecError("the latency resolution is the target's", key="evaluator.latency.resolution",
                        hint="set evaluator.target.resolution")
    data = sections["data"]
    if data.get("root") and not Path(data["root"]).expanduser().is_absolute():
        data["root"] = str((base / data["root"]).resolve())  # relative to the study file, not to a worker's cwd
    data.setdefault("name", DataConfig.name)
    default_res = int(data.pop("resolution", DataConfig.resolution))
    target = _network("target", raw.get("target"), default_res)
    proxy = target if raw.get("proxy") == "target" else _network("proxy", raw.get("proxy"), default_res)
    proxy = dataclasses.replace(proxy, role="proxy")
    if proxy.train_images is not None:
        data["limit_train"] = proxy.train_images
    data["resolution"] = proxy.resolution
    sections["latency"]["resolution"] = target.resolution
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
    zc = raw.get("zero_cost") or {}
    if not isinstance(zc, Mapping):
        raise SpecError("expected a mapping like {batch_size: 64}", key="evaluator.zero_cost")
    _only(zc, ("batch_size",), "evaluator.zero_cost")
    batch = zc.get("batch_size", 64)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise SpecError("expected an integer >= 2", key="evaluator.zero_cost.batch_size")
    return EvaluatorSpec(data=data, train=sections["train"], latency=sections["latency"], target=target,
                         proxy=proxy, adapt_min_feature=_adapt(raw.get("adapt_input", {})), zero_cost_batch=batch,
                         latency_cache=cache, quiet=quiet)


def _network(role: str, raw: Any, default_res: int) -> Network:
    key = f"evaluator.{role}"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        hint = "or `target` to train the target itself" if role == "proxy" else ""
        raise SpecError(f"expected a mapping like {{width_mult: 0.5, resolution: 16}}{' ' + hint if hint else ''}",
                        key=key)
    _only(raw, ("width_mult", "resolution", "train_images") if role == "proxy" else ("width_mult", "resolution"), key)
    width = raw.get("width_mult", 1.0)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise SpecError(f"expected a number in (0, 4], got {width!r}", key=f"{key}.width_mult")
    res = raw.get("resolution", default_res)
    if isinstance(res, bool) or not isinstance(res, int) or not 4 <= res <= 1024:
        raise SpecError(f"expected an integer in [4, 1024], got {res!r}", key=f"{key}.resolution")
    images = raw.get("train_images")
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 10):
        raise SpecError(f"expected an integer >= 10, got {images!r}", key=f"{key}.train_images")
    return Network(role, float(width), int(res), images)


def _adapt(raw: Any) -> int | None:
    if raw in (False, None, "off", "none"):
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping like {min_feature: 2}, or off", key="evaluator.adapt_input")
    _only(raw, ("min_feature",), "evaluator.adapt_input")
    m = raw.get("min_feature", 2)
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 64:
        raise SpecError(f"expected an integer in [1, 64], got {m!r}", key="evaluator.adapt_input.min_feature")
    return m


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
