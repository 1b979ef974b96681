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
    final: {of: [front, named], top: 3, seeds: 3, train: {epochs: 30}}   # train the chosen targets to convergence

Every key is declared once, in the schema below (`StudySchema`): its type, range or allowed values (read from the
registries: datasets, latency backends, optimizers, metrics, samplers), default and one line of documentation. A
file is checked whole before anything is created; the README's reference table is generated from the same schema
(scripts/study_reference.py).

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
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, NoReturn

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined, core_schema

from evaluators.data import DATASETS, DataConfig
from evaluators.latency import (
    BACKENDS,
    CUDA_ONLY_BACKENDS,
    DTYPE_ALIASES,
    DTYPES,
    LatencyConfig,
    default_backend,
)
from evaluators.train import AMP, OPTIMIZERS, SWITCH, TrainConfig
from space import Arch, resolve_arch
from space.errors import NasError, SpecError, did_you_mean
from space.search_space import SPACE_DIR, Space


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
SAMPLERS = ("tpe", "nsga2", "random", "qmc")  # the one list of sampler types: the schema and the docs read it
REPEAT_SETS = ("front", "named", "all")
FINAL_SETS = ("front", "named", "random")


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
class Final:
    """The final stage: train the *target* network of chosen trials to convergence, with several seeds.

    `of`: front (its `top` most accurate points by proxy accuracy), named, random (`random` architectures drawn from
    the space with the study seed and evaluated by the search like any trial; 0 unless `of` has random).
    """

    of: tuple[str, ...] = ("front", "named")  # front | named | random
    top: int | None = 3  # at most this many front points (None: the whole front)
    random: int = 3  # architectures drawn at random from the space, trained the same way (when `of` has random)
    seeds: int = 3  # seeds per network
    train: dict = dataclasses.field(default_factory=dict)  # evaluators.TrainConfig fields given in the study file
    patience: int | None = None  # stop a run once validation accuracy has not improved for this many epochs

    @property
    def epochs(self) -> int:
        """Epochs of a final run (at most, with a patience)."""
        return int(self.train.get("epochs", 30))


@dataclass(frozen=True)
class Resources:
    """What one trial reserves: CPUs (also its torch threads) and a (fractional) GPU, or `auto`."""

    cpu: float = 1.0
    gpu: float | str = 0.0

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

    @property
    def latency_backend(self) -> str:
        """The backend that times the target (`auto` resolved for the latency device)."""
        backend = self.latency.get("backend", "auto")
        return default_backend(self.latency.get("device", "cpu")) if backend == "auto" else backend

    def describe_target(self) -> str:
        """'target ×1 @32px; cpu, batch 1, 1 thread(s), eager' — the deployed network and its timing conditions."""
        lat = self.latency
        return (f"{self.target.short()}; {lat.get('device', 'cpu')}, batch {lat.get('batch_size', 1)}, "
                f"{lat.get('threads', 1)} thread(s), {self.latency_backend}")


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
    final: Final | None = None
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
                    f"t{lat.get('threads', 1)} {ev.latency_backend})")
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


# -- the schema -------------------------------------------------------------------------------------------------------
# Every key of a study file, its type, range or allowed values, default and one line of documentation. Validation,
# the error messages ("expected <type>, got <value>") and the README's reference table all read these classes.
OFF = ("off", "none")
DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]+)?)$"
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
NEEDS_ROOT = ("cifar10", "cifar100", "imagefolder")


def _fail(message: str, *, sub: str | int | None = None, hint: str | None = None) -> NoReturn:
    """Raise a schema error located at the current key (or at its `sub` key)."""
    raise PydanticCustomError("nas", "{message}", {"message": message, "sub": sub, "hint": hint or ""})


@dataclass(frozen=True)
class Choice:
    """Annotated marker: the value must be one of `values()` (read when validating, so registries can grow)."""

    what: str
    values: Callable[[], Iterable[str]]

    def check(self, value: str) -> str:
        """The value, or a schema error with a did-you-mean."""
        choices = tuple(self.values())
        if value not in choices:
            _fail(f"unknown {self.what} '{value}'", hint=did_you_mean(value, choices) or
                  "expected one of: " + ", ".join(choices))
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def _off(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """`off`, `none`, false or null switch a section off (None); anything else is validated."""
    if value is None or value is False or (isinstance(value, str) and value in OFF):
        return None
    return handler(value)


def _doc(default: Any, doc: str, *, shown: str | None = None, default_text: str | None = None, **rules: Any) -> Any:
    """A schema field: its default, one line of documentation, and how the reference shows its type and default."""
    extra = {k: v for k, v in (("shown", shown), ("default_text", default_text)) if v is not None}
    return Field(default, description=doc, json_schema_extra=extra or None, **rules)


class _Section(BaseModel):
    """A mapping of the study file: strict types, no unknown keys (with a did-you-mean), keys moved elsewhere named."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
    example: ClassVar[str] = ""
    refused: ClassVar[dict[str, tuple[str, str]]] = {}  # key -> (why, what to do instead)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            _fail(f"expected a mapping{' like ' + cls.example if cls.example else ''}, got {_show(data)}")
        for k in data:
            if k in cls.refused:
                why, fix = cls.refused[k]
                _fail(why, sub=str(k), hint=fix)
            if k not in cls.model_fields:
                _fail("unknown key", sub=str(k), hint=did_you_mean(str(k), cls.model_fields))
        return data


class DataSchema(_Section):
    """evaluator.data: the task (evaluators.DataConfig)."""

    example: ClassVar[str] = "{name: digits}"

    name: Annotated[str, Choice("dataset", lambda: DATASETS)] = _doc(DataConfig.name, "the dataset")
    root: str | None = _doc(DataConfig.root, f"the folder holding it (needed by {', '.join(NEEDS_ROOT)}); relative "
                            "to the study file")
    resolution: int = _doc(DataConfig.resolution, "default input size of target and proxy", ge=4, le=1024)
    val_fraction: float = _doc(DataConfig.val_fraction, "share of the images held out for validation", gt=0, lt=1)
    seed: int = _doc(DataConfig.seed, "seed of the train/validation split", ge=0)
    limit_train: int | None = _doc(DataConfig.limit_train, "use only this many training images (null: all; "
                                   "BatchNorm needs two)", ge=2)
    limit_val: int | None = _doc(DataConfig.limit_val, "use only this many validation images (null: all)", ge=1)

    @model_validator(mode="after")
    def _root_given(self) -> DataSchema:
        if self.name in NEEDS_ROOT and not self.root:
            _fail(f"{self.name} is read from a local folder", sub="root",
                  hint="give evaluator.data.root (nothing is downloaded)")
        return self


class TrainSchema(_Section):
    """A training recipe (evaluators.TrainConfig): evaluator.train for the proxy, final.train for the final stage."""

    example: ClassVar[str] = "{epochs: 4, batch_size: 64}"
    refused: ClassVar[dict[str, tuple[str, str]]] = {
        "seed": ("a trial's training seed derives from the study", "set the top-level `seed:` of the study")}

    epochs: int = _doc(TrainConfig.epochs, "training epochs", ge=1)
    steps_per_epoch: int | None = _doc(TrainConfig.steps_per_epoch, "steps per epoch (null: one pass over the data)",
                                       ge=1)
    batch_size: int = _doc(TrainConfig.batch_size, "images per step (BatchNorm needs two)", ge=2)
    optimizer: Annotated[str, Choice("optimizer", lambda: OPTIMIZERS)] = _doc(TrainConfig.optimizer, "the optimizer")
    lr: float = _doc(TrainConfig.lr, "peak learning rate (cosine schedule after warm-up)", gt=0)
    momentum: float = _doc(TrainConfig.momentum, "SGD momentum", ge=0, lt=1)
    weight_decay: float = _doc(TrainConfig.weight_decay, "weight decay (on weights, not norms and biases)", ge=0)
    warmup_epochs: float = _doc(TrainConfig.warmup_epochs, "linear warm-up, in epochs", ge=0)
    label_smoothing: float = _doc(TrainConfig.label_smoothing, "label smoothing", ge=0, lt=1)
    augment: bool = _doc(TrainConfig.augment, "random crops (and flips where labels allow)")
    amp: Annotated[str, Choice("amp mode", lambda: AMP)] = _doc(TrainConfig.amp, "mixed precision (auto: on CUDA)")
    channels_last: Annotated[str, Choice("setting", lambda: SWITCH)] = _doc(TrainConfig.channels_last,
                                                                             "channels_last memory format")
    lambda_fraction: float = _doc(TrainConfig.lambda_fraction, "share of training over which re-parameterizable "
                                  "blocks anneal to their deploy form", ge=0, le=1)
    drop_path_rate: float = _doc(TrainConfig.drop_path_rate, "stochastic depth, rising to this rate", ge=0, lt=1)
    device: str = _doc(TrainConfig.device, "where to train (trials use their Ray placement)",
                       shown="cpu, cuda or cuda:N", pattern=DEVICE_PATTERN)
    threads: int | None = _doc(TrainConfig.threads, "torch CPU threads (trials use resources.cpu)", ge=1)


class LatencySchema(_Section):
    """evaluator.latency: how the target is timed (evaluators.LatencyConfig), on the node that runs the trial."""

    example: ClassVar[str] = "{batch_size: 1, threads: 1, backend: eager}"
    refused: ClassVar[dict[str, tuple[str, str]]] = {
        "resolution": ("the latency resolution is the target's", "set evaluator.target.resolution")}

    device: str = _doc(LatencyConfig.device, "where to time", shown="cpu, cuda or cuda:N", pattern=DEVICE_PATTERN)
    batch_size: int = _doc(LatencyConfig.batch_size, "images per timed call", ge=1)
    dtype: Annotated[str, Choice("dtype", lambda: (*DTYPES, *DTYPE_ALIASES))] = _doc(LatencyConfig.dtype,
                                                                                     "number format of the timed model")
    threads: int = _doc(LatencyConfig.threads, "torch CPU threads while timing", ge=1)
    channels_last: bool = _doc(LatencyConfig.channels_last, "channels_last memory format")
    backend: Annotated[str, Choice("backend", lambda: ("auto", *BACKENDS))] = _doc(
        LatencyConfig.backend, "what runs the model (auto: cuda_graph on CUDA, eager on the CPU)")
    warmup: int = _doc(LatencyConfig.warmup, "untimed calls first", ge=0)
    min_runs: int = _doc(LatencyConfig.min_runs, "timed blocks at least", ge=1)
    max_seconds: float = _doc(LatencyConfig.max_seconds, "time budget of one attempt", gt=0)
    min_seconds: float = _doc(LatencyConfig.min_seconds, "time one attempt spans at least", ge=0)
    target_rel_iqr: float = _doc(LatencyConfig.target_rel_iqr, "stop once IQR / median is below this", gt=0)
    load_threshold: float = _doc(LatencyConfig.load_threshold, "re-measure while other processes use more cores",
                                 ge=0)
    max_attempts: int = _doc(LatencyConfig.max_attempts, "attempts while the machine is loaded", ge=1)
    warmup_max_seconds: float | None = _doc(LatencyConfig.warmup_max_seconds, "cap of the clock warm-up (null: 3 s "
                                            "on CUDA, 0.5 s on the CPU)", gt=0)
    cpus: list[Annotated[int, Field(ge=0)]] | None = _doc(LatencyConfig.cpus, "pin timing to these cores (null: "
                                                          "the trial's own)", shown="a list of core numbers or null",
                                                          min_length=1)
    cache: str | None = _doc("default", "the latency cache: default, none (or null), or a file relative to the study")
    quiet: bool = _doc(True, "pause training on the node while latency is measured")

    @model_validator(mode="after")
    def _measurable(self) -> LatencySchema:
        dtype = DTYPE_ALIASES.get(self.dtype, self.dtype)
        if self.device == "cpu" and dtype == "float16":
            _fail("float16 is for CUDA", sub="dtype", hint="use float32 (or bfloat16) on cpu")
        if self.backend in CUDA_ONLY_BACKENDS and not self.device.startswith("cuda"):
            _fail(f"backend {self.backend} times a CUDA graph; it needs device: cuda", sub="backend")
        if self.backend == "onnxruntime" and dtype == "bfloat16":
            _fail("onnxruntime takes float32 or float16 models, not bfloat16", sub="dtype")
        if self.backend == "onnxruntime" and self.channels_last:
            _fail("channels_last is a PyTorch memory format; onnxruntime picks its own", sub="channels_last",
                  hint="leave it off with that backend")
        return self


class NetworkSchema(_Section):
    """evaluator.target: the deployed network."""

    example: ClassVar[str] = "{width_mult: 1.0, resolution: 32}"

    width_mult: float = _doc(1.0, "scale of every channel count", gt=0, le=4)
    resolution: int | None = _doc(None, "input size", default_text="evaluator.data.resolution", shown="an integer "
                                  "from 4 to 1024", ge=4, le=1024)


def _proxy_or_target(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """`target` (train the target itself) or a proxy mapping."""
    return "target" if value == "target" else handler(value)


class ProxySchema(NetworkSchema):
    """evaluator.proxy: the cheaper copy that is trained (or `target`)."""

    example: ClassVar[str] = "{width_mult: 0.5, resolution: 16}, or `target` to train the target itself"

    train_images: int | None = _doc(None, "train on a seeded subset of this many images (null: all)", ge=10)


class AdaptSchema(_Section):
    """evaluator.adapt_input: small-input stems for every network (space.adapt), or off."""

    example: ClassVar[str] = "{min_feature: 2}, or off"

    min_feature: int = _doc(2, "remove downsampling until the last feature map is this wide", ge=1, le=64)


class ZeroCostSchema(_Section):
    """evaluator.zero_cost: the batch zero-cost proxies score."""

    example: ClassVar[str] = "{batch_size: 64}"

    batch_size: int = _doc(64, "images in the scored batch", ge=2)


class EvaluatorSchema(_Section):
    """evaluator: how a trial measures an architecture."""

    example: ClassVar[str] = "{data: {name: digits}, train: {epochs: 4}}"
    refused: ClassVar[dict[str, tuple[str, str]]] = {
        "width_mult": ("moved", "give evaluator.proxy.width_mult (the trained copy) and evaluator.target.width_mult "
                                "(the deployed network, default 1)")}

    data: DataSchema = _doc(DataSchema(), "the task")
    target: NetworkSchema = _doc(NetworkSchema(), "the deployed network: latency, params, MACs are of it")
    proxy: Annotated[ProxySchema, WrapValidator(_proxy_or_target)] = _doc(
        ProxySchema(), "the trained copy: accuracy is of it; `target` trains the target itself",
        shown="a mapping, or target", default_text="the target's width and resolution")
    train: TrainSchema = _doc(TrainSchema(), "the proxy's training recipe")
    latency: LatencySchema = _doc(LatencySchema(), "how the target is timed")
    adapt_input: Annotated[AdaptSchema | None, WrapValidator(_off)] = _doc(
        AdaptSchema(), "small-input adaptation of every network", shown="a mapping, or off")
    zero_cost: ZeroCostSchema = _doc(ZeroCostSchema(), "zero-cost proxy settings")


class SamplerSchema(_Section):
    """sampler: which Optuna sampler decides what to try."""

    example: ClassVar[str] = "{type: tpe, seed: 0}"

    type: Annotated[str, Choice("sampler", lambda: SAMPLERS)] = _doc(SamplerSpec.type, "the sampler")
    seed: int = _doc(SamplerSpec.seed, "the sampler's seed", ge=0)
    startup: int = _doc(SamplerSpec.startup, "tpe: random trials before the model is used", ge=0)
    multivariate: bool = _doc(SamplerSpec.multivariate, "tpe: model co-occurring parameters jointly")
    population: int = _doc(SamplerSpec.population, "nsga2: population size", ge=2)


def _sampler_type(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A bare sampler name stands for {type: name}."""
    return handler({"type": value} if isinstance(value, str) else value)


class BoundsSchema(_Section):
    """constraints.METRIC: bounds on a metric."""

    example: ClassVar[str] = "{max: 1.0}"

    max: float | None = _doc(None, "upper bound")
    min: float | None = _doc(None, "lower bound")

    @model_validator(mode="after")
    def _some(self) -> BoundsSchema:
        if self.max is None and self.min is None:
            _fail("give max and/or min, e.g. {max: 1.0}")
        if self.max is not None and self.min is not None and self.min > self.max:
            _fail(f"min {self.min:g} is above max {self.max:g}", sub="min")
        return self


class BudgetSchema(_Section):
    """budget: when to stop (a resumed study counts what is done)."""

    example: ClassVar[str] = "{trials: 40, minutes: 10}"

    trials: int | None = _doc(None, "evaluations in all", ge=1)
    minutes: float | None = _doc(None, "minutes of search in all", gt=0)

    @model_validator(mode="after")
    def _some(self) -> BudgetSchema:
        if self.trials is None and self.minutes is None:
            _fail("give trials and/or minutes", hint="e.g. {trials: 40, minutes: 10}")
        return self


class EarlyStoppingSchema(_Section):
    """early_stopping: ASHA on validation accuracy, in epochs, or off."""

    example: ClassVar[str] = "{grace_period: 1, reduction_factor: 2}, or off"

    type: Annotated[str, Choice("early stopping", lambda: ("asha",))] = _doc("asha", "the scheduler")
    grace_period: int = _doc(EarlyStopping.grace_period, "epochs before the first decision", ge=1)
    reduction_factor: float = _doc(EarlyStopping.reduction_factor, "keep 1 in this many at each rung", gt=1)


class RepeatsSchema(_Section):
    """repeats: re-train chosen trials with other seeds after the search, or off."""

    example: ClassVar[str] = "{seeds: 2, of: [front, named]}, or off"

    seeds: int = _doc(Repeats.seeds, "extra seeds per architecture", ge=1, le=100)
    of: list[Annotated[str, Choice("set", lambda: REPEAT_SETS)]] = _doc(
        list(Repeats.of), "which trials", shown="a non-empty list of: " + ", ".join(REPEAT_SETS), min_length=1)


def _one_or_list(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A single name stands for a list of one."""
    return handler([value] if isinstance(value, str) else value)


class ResourcesSchema(_Section):
    """resources: what one trial reserves."""

    example: ClassVar[str] = "{cpu: 1, gpu: 0.5}"

    cpu: float = _doc(Resources.cpu, "CPUs (also the trial's torch threads)", gt=0)
    gpu: Any = _doc(Resources.gpu, "a fraction of one GPU (packs trials), whole GPUs, or auto",
                    shown="a number >= 0 or auto")

    @field_validator("gpu", mode="plain")
    @classmethod
    def _gpu(cls, value: Any) -> float | str:
        if value == "auto" and isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            _fail(f"expected a number >= 0 or auto, got {_show(value)}")
        if value > 1 and not float(value).is_integer():
            _fail(f"expected a fraction of one GPU or a whole number of GPUs, got {value:g}")
        return float(value)


class RaySchema(_Section):
    """ray: which Ray cluster runs the trials."""

    example: ClassVar[str] = "{address: auto}"

    address: str | None = _doc(None, "null: a local Ray; host:port, auto or ray://... joins a cluster")


class FinalSchema(_Section):
    """final: train the target network of chosen trials to convergence, with several seeds; absent: no final stage."""

    example: ClassVar[str] = "{of: [front, named], top: 3, seeds: 3, train: {epochs: 30}}"

    of: Annotated[list[Annotated[str, Choice("set", lambda: FINAL_SETS)]], WrapValidator(_one_or_list)] = _doc(
        list(Final.of), "which networks", shown="a non-empty list of: " + ", ".join(FINAL_SETS), min_length=1)
    top: int | None = _doc(Final.top, "at most this many front points (null: the whole front)", ge=1)
    random: int = _doc(Final.random, "architectures drawn at random from the space (with `random` in of)", ge=0)
    seeds: int = _doc(Final.seeds, "seeds per network", ge=1)
    train: TrainSchema = _doc(TrainSchema(), "the recipe: evaluator.train's keys, checked alike")
    patience: int | None = _doc(Final.patience, "stop a run after this many epochs without a better validation "
                                "accuracy (null: never)", ge=1)

    @model_validator(mode="after")
    def _random_drawn(self) -> FinalSchema:
        if "random" in self.of and self.random < 1:
            _fail("'random' is in final.of but random is 0", sub="random",
                  hint="give random >= 1 or drop random from final.of")
        return self


class StudySchema(_Section):
    """A study file."""

    name: str | None = _doc(None, "the Optuna study name", shown="a name: letters, digits, -, _ and . (not leading)",
                            default_text="the file's stem", pattern=NAME_PATTERN, max_length=100)
    description: str = _doc("", "one line shown by the report and the dashboard")
    space: Any = _doc(..., "a shipped space (small, full, ...), a space file relative to the study, or a mapping",
                      shown="a name, a file or a mapping")
    objectives: Any = _doc(["accuracy", "latency_ms"], "what is optimized: " + ", ".join(METRICS),
                           shown="a list of metrics, or {metric: maximize|minimize}", validate_default=True)
    constraints: dict[str, BoundsSchema] = _doc({}, "bounds per metric; violating trials never reach the front",
                                                shown="{metric: {max: X, min: Y}}")
    named: list[Any] = _doc([], "named points, architecture files or inline architectures, evaluated first",
                            shown="a list of names, files or mappings")
    sampler: Annotated[SamplerSchema, WrapValidator(_sampler_type)] = _doc(SamplerSchema(), "what to try next",
                                                                           shown="a mapping, or a sampler name")
    seed: int = _doc(0, "every trial's init, data order and augmentation derive from it", ge=0)
    evaluator: EvaluatorSchema = _doc(EvaluatorSchema(), "how a trial measures an architecture")
    budget: BudgetSchema = _doc(..., "when to stop")
    early_stopping: Annotated[EarlyStoppingSchema | None, WrapValidator(_off)] = _doc(
        EarlyStoppingSchema(), "ASHA on accuracy (only when trials train)", shown="a mapping, or off")
    repeats: Annotated[RepeatsSchema | None, WrapValidator(_off)] = _doc(
        None, "seed repeats after the search", shown="a mapping, or off", default_text="off")
    final: Annotated[FinalSchema | None, WrapValidator(_off)] = _doc(
        None, "the final stage after the search", shown="a mapping, or off", default_text="off")
    resources: ResourcesSchema = _doc(ResourcesSchema(), "what one trial reserves")
    concurrency: Any = _doc("auto", "trials at once (auto: what the cluster's resources allow)",
                            shown="auto or an integer >= 1", validate_default=True)
    storage: str | None = _doc(None, "an Optuna storage URL; a relative sqlite:/// path is relative to the study",
                               default_text="sqlite:///NAME.db next to the study")
    ray: RaySchema = _doc(RaySchema(), "where the trials run")

    @field_validator("objectives", mode="plain")
    @classmethod
    def _objectives(cls, raw: Any) -> tuple[Objective, ...]:
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, Mapping) and raw:
            items = list(raw.items())
        elif isinstance(raw, list) and raw:
            items = [(m, None) for m in raw]
        else:
            _fail(f"expected a non-empty list of metrics or a mapping metric: direction, got {_show(raw)}")
        out: list[Objective] = []
        for i, (name, direction) in enumerate(items):
            metric = _metric(name, sub=i if isinstance(raw, list) else str(name))
            direction = metric.direction if direction is None else direction
            if direction not in DIRECTIONS:
                _fail(f"unknown direction {direction!r}", sub=str(name), hint=did_you_mean(str(direction), DIRECTIONS))
            if any(o.metric == metric.name for o in out):
                _fail(f"'{metric.name}' is listed twice")
            out.append(Objective(metric.name, direction))
        return tuple(out)

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraint_metrics(cls, raw: Any) -> Any:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            _fail(f"expected a mapping like {{latency_ms: {{max: 1.0}}}}, got {_show(raw)}")
        for name in raw:
            _metric(name, sub=str(name))
        return raw

    @field_validator("named", mode="before")
    @classmethod
    def _named_list(cls, raw: Any) -> Any:
        return [] if raw is None else raw

    @field_validator("concurrency", mode="plain")
    @classmethod
    def _concurrency(cls, value: Any) -> int | None:
        if value is None or value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _fail(f"expected auto or a positive integer, got {_show(value)}")
        return value

    @field_validator("storage", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://.", value):
            _fail(f"expected a database URL like sqlite:///study.db, got {_show(value)}")
        return value


def _metric(name: Any, *, sub: str | int) -> Metric:
    if not isinstance(name, str) or name not in METRICS:
        _fail(f"unknown metric {name!r}", sub=sub, hint=did_you_mean(str(name), METRICS))
    return METRICS[name]


def _show(value: Any) -> str:
    """A value as an error message quotes it: short, one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


# -- from the schema to a Study ---------------------------------------------------------------------------------------
MISSING_HINTS = {"space": "name a shipped space (e.g. small), a space file, or inline it",
                 "budget": "give {trials: N} and/or {minutes: M}"}


def _parse(data: Any, path: Path) -> Study:
    if not isinstance(data, Mapping):
        raise SpecError(f"a study must be a mapping, got {type(data).__name__}")
    try:
        doc = StudySchema.model_validate(data)
    except ValidationError as e:
        raise _spec_error(e.errors()[0]) from None
    name = doc.name or path.stem
    evaluator = _evaluator(doc.evaluator, data.get("evaluator") or {}, path.parent)
    named = _named(data.get("named") or [], path.parent)
    space = _space(doc.space, path.parent)
    sampler = SamplerSpec(**doc.sampler.model_dump())
    if sampler.type in ("nsga2", "qmc"):
        for arch in named:
            ok, why = space.contains_arch(arch)
            if not ok:
                raise SpecError(f"named point '{arch.name or arch.hash}' is not in the space ({why}); the "
                                f"{sampler.type} sampler derives its search space from finished trials, so a point "
                                "without parameters would turn it into random search", key="named",
                                hint="use sampler tpe or random, or seed only points of the space")
    return Study(name=name, source=str(path), description=doc.description, space=space,
                 objectives=doc.objectives, constraints=tuple(Constraint(m, max=b.max, min=b.min)
                                                              for m, b in doc.constraints.items()),
                 named=named, sampler=sampler, evaluator=evaluator,
                 budget=Budget(trials=doc.budget.trials, minutes=doc.budget.minutes),
                 early_stopping=_early_stopping(doc.early_stopping, doc.objectives, evaluator),
                 resources=Resources(cpu=doc.resources.cpu, gpu=doc.resources.gpu), concurrency=doc.concurrency,
                 storage=_storage(doc.storage, path, name), address=doc.ray.address, seed=doc.seed,
                 repeats=None if doc.repeats is None else Repeats(seeds=doc.repeats.seeds, of=tuple(doc.repeats.of)),
                 final=_final(doc.final), raw=dict(data))


def _spec_error(err: Mapping[str, Any]) -> SpecError:
    """One pydantic error as one line: the key path, what is wrong (with the value) and what is allowed."""
    loc = list(err["loc"])
    if err["type"] == "nas":
        ctx = err["ctx"]
        if ctx.get("sub") is not None:
            loc.append(ctx["sub"])
        return SpecError(ctx["message"], key=_key(loc), hint=ctx.get("hint") or None)
    if err["type"] == "missing":
        return SpecError("missing", key=_key(loc), hint=MISSING_HINTS.get(_key(loc)))
    info = _field_at(loc)
    expected = _shown(info) if info is not None else err["msg"].lower()
    return SpecError(f"expected {expected}, got {_show(err.get('input'))}", key=_key(loc))


def _key(loc: list[str | int]) -> str:
    """('evaluator', 'train', 'lr') -> 'evaluator.train.lr'; list indices as [i]."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field_at(loc: list[str | int]) -> FieldInfo | None:
    """The schema field an error location points at (dict keys and list indices are stepped over)."""
    model: type[BaseModel] | None = StudySchema
    info = None
    for part in loc:
        if model is not None and isinstance(part, str) and part in model.model_fields:
            info = model.model_fields[part]
            model = _model_in(info.annotation)
    return info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The schema class inside an annotation (through Optional, Annotated, list and dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _evaluator(ev: EvaluatorSchema, raw: Mapping[str, Any], base: Path) -> EvaluatorSpec:
    """The evaluator's settings as plain dicts of the keys the file gives (what storage compares on resume)."""
    sections = {s: getattr(ev, s).model_dump(exclude_unset=True) for s in ("data", "train", "latency")}
    cache = sections["latency"].pop("cache", "default")
    quiet = sections["latency"].pop("quiet", True)
    if "cpus" in sections["latency"] and sections["latency"]["cpus"] is not None:
        sections["latency"]["cpus"] = tuple(sections["latency"]["cpus"])
    data = sections["data"]
    if data.get("root") and not Path(data["root"]).expanduser().is_absolute():
        data["root"] = str((base / data["root"]).resolve())  # relative to the study file, not to a worker's cwd
    data.setdefault("name", DataConfig.name)
    default_res = int(data.pop("resolution", DataConfig.resolution))
    target = _network("target", ev.target, default_res)
    if ev.proxy == "target":
        proxy = dataclasses.replace(target, role="proxy")
    else:
        proxy = _network("proxy", ev.proxy, default_res)
    if proxy.train_images is not None:
        data["limit_train"] = proxy.train_images
    data["resolution"] = proxy.resolution
    sections["latency"]["resolution"] = target.resolution
    if cache is None:
        cache = "none"
    if cache not in ("default", "none") and not Path(cache).expanduser().is_absolute():
        cache = str((base / cache).resolve())
    return EvaluatorSpec(data=data, train=sections["train"], latency=sections["latency"], target=target, proxy=proxy,
                         adapt_min_feature=None if ev.adapt_input is None else ev.adapt_input.min_feature,
                         zero_cost_batch=ev.zero_cost.batch_size, latency_cache=cache, quiet=quiet)


def _network(role: str, net: NetworkSchema, default_res: int) -> Network:
    images = getattr(net, "train_images", None)
    return Network(role, float(net.width_mult), net.resolution or default_res, images)


def _final(spec: FinalSchema | None) -> Final | None:
    if spec is None:
        return None
    return Final(of=tuple(spec.of), top=spec.top, random=spec.random if "random" in spec.of else 0,
                 seeds=spec.seeds, train=spec.train.model_dump(exclude_unset=True), patience=spec.patience)


def _named(raw: list[Any], base: Path) -> tuple[Arch, ...]:
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
            except NasError as e:
                raise SpecError(str(e), key=key) from None
            if not arch.name:
                arch = dataclasses.replace(arch, name=Path(item).stem)
        else:
            raise SpecError(f"expected a name, a file or a mapping, got {_show(item)}", key=key)
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
        raise SpecError(f"expected a space name, a file, or a mapping, got {_show(raw)}", key="space")
    local = base / raw
    if local.is_file():
        return Space.load(local)
    if (SPACE_DIR / f"{raw}.yaml").is_file():
        return Space.load(raw)
    shipped = sorted(q.stem for q in SPACE_DIR.glob("*.yaml"))
    raise SpecError(f"no such space file or shipped space '{raw}'", key="space",
                    hint=did_you_mean(raw, shipped) + f" (shipped spaces: {', '.join(shipped)})")


def _early_stopping(spec: EarlyStoppingSchema | None, objectives: tuple[Objective, ...],
                    evaluator: EvaluatorSpec) -> EarlyStopping | None:
    if spec is None or not any(o.metric == "accuracy" for o in objectives):
        return None  # nothing is trained epoch by epoch, so there is nothing to stop early
    if evaluator.epochs <= spec.grace_period:
        return None  # every trial would reach the last epoch before the first decision
    return EarlyStopping(grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)


def _storage(raw: str | None, path: Path, name: str) -> str:
    if raw is None:
        return f"sqlite:///{(path.parent / f'{name}.db').resolve()}"
    prefix = "sqlite:///"
    if raw.startswith(prefix) and not raw.startswith(prefix + "/") and raw != prefix + ":memory:":
        return prefix + str((path.parent / raw[len(prefix):]).resolve())  # relative to the study file
    return raw


# -- the reference ----------------------------------------------------------------------------------------------------
def _shown(info: FieldInfo) -> str:
    """The type of a field in words, with its range or allowed values: 'an integer >= 1', 'one of: sgd, adamw'."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "shown" in extra:
        return str(extra["shown"])
    annotation, nullable = info.annotation, False
    args = typing.get_args(annotation)
    if type(None) in args:
        nullable = True
        annotation = next(a for a in args if a is not type(None))
    marks = list(info.metadata)
    while typing.get_origin(annotation) is Annotated:
        marks += list(annotation.__metadata__)
        annotation = typing.get_args(annotation)[0]
    choice = next((m for m in marks if isinstance(m, Choice)), None)
    if choice is not None:
        text = "one of: " + ", ".join(choice.values())
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "a mapping"
    else:
        text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation,
                                                                                               str(annotation))
        text += _range(marks)
    return text + (" or null" if nullable else "")


def _range(marks: list[Any]) -> str:
    """' >= 1', ' from 4 to 1024', ' > 0 and < 1' from annotated_types bounds."""
    low = next((("> ", m.gt) for m in marks if getattr(m, "gt", None) is not None), None) or \
        next(((">= ", m.ge) for m in marks if getattr(m, "ge", None) is not None), None)
    high = next((("< ", m.lt) for m in marks if getattr(m, "lt", None) is not None), None) or \
        next((("<= ", m.le) for m in marks if getattr(m, "le", None) is not None), None)
    if low and high and low[0] == ">= " and high[0] == "<= ":
        return f" from {low[1]:g} to {high[1]:g}"
    parts = [f"{op}{v:g}" for op, v in (b for b in (low, high) if b)]
    return " " + " and ".join(parts) if parts else ""


def _default_text(info: FieldInfo) -> str:
    """A field's default as the reference shows it."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "default_text" in extra:
        return str(extra["default_text"])
    value = info.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "null"
    if value == "":
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]" if value else "[]"
    if isinstance(value, dict):
        return "{}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def reference() -> str:
    """The study-file reference as Markdown: every key, its type and range or allowed values, default and meaning."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            key = f"{prefix}{name}"
            cells = [f"`{key}`", _shown(info), _default_text(info), info.description or ""]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            inner = _model_in(info.annotation)
            if inner is not None and inner is not BoundsSchema:
                walk(inner, f"{key}.")
            elif inner is BoundsSchema:
                walk(inner, f"{key}.METRIC.")

    walk(StudySchema, "")
    return "\n".join(rows) + "\n"
