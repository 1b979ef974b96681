"""One trial, run in a Ray worker: measure an architecture, check the constraints, train it, report every epoch.

`run_trial` is the Ray Tune function trainable. It hands the architecture to an *evaluator* — `evaluate` below by
default: cost (params, MACs, activations), latency of the deploy form on this node, zero-cost scores, then proxy
training — through a `Reporter`. The reporter checks the constraints as soon as the metrics they bound are known
(an infeasible architecture is never trained) and sends one report per epoch that carries every objective, because
a report missing the scheduler's metric aborts a Ray Tune experiment. Every failure (an architecture that does not
build, out of memory, NaN) becomes a final report with status `failed` and a reason; nothing is raised to Ray, so a
failed trial is recorded, not retried.

Report statuses: `running` (an epoch before the last), `complete`, `infeasible` (stopped before training), `failed`.
Epoch reports of a trial that early stopping may stop also carry `ASHA_EPOCH`, the scheduler's clock; a named point
(a baseline) does not, so it is always trained for the full budget and never moves the scheduler's cut-offs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nas.record.latency import is_noisy, rel_iqr
from nas.record.trials import trial_seed
from nas.run.quiet import Busy, NoBusy, QuietLock, TrialQuiet, for_trial  # noqa: F401 (QuietLock: re-exported)
from nas.study import METRICS, Constraint, EvaluatorSpec, Study
from space import Arch
from space.errors import NasError, SpecError

ASHA_EPOCH = "asha_epoch"  # the early-stopping scheduler's clock (see the module docstring)


@dataclass(frozen=True)
class Job:
    """What every trial of a search shares: the evaluator settings, the metrics to measure, and the budget."""

    evaluator: EvaluatorSpec
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    metrics: frozenset[str]
    device: str = "cpu"
    threads: int = 1
    seed: int = 0  # the study seed; each evaluation's seed is trial_seed(seed, arch hash, repeat)
    patience: int | None = None  # repeat_accuracy: stop once validation accuracy has not improved for this many epochs
    weights: bool = False  # repeat_accuracy: return the trained weights (the final stage keeps them)

    @classmethod
    def from_study(cls, study: Study) -> Job:
        """The job of a study: training on CUDA when its trials reserve a GPU, one torch thread per reserved CPU."""
        gpu = study.resources.gpu
        device = study.evaluator.train.get("device") or ("cuda" if gpu == "auto" or gpu > 0 else "cpu")
        return cls(evaluator=study.evaluator, objectives=tuple(study.metric_names), constraints=study.constraints,
                   metrics=frozenset(study.metrics() | {"params", "macs"}), device=device,
                   threads=study.resources.threads, seed=study.seed)

    @property
    def epochs(self) -> int:
        """Planned training epochs (0 when nothing is trained)."""
        return self.evaluator.epochs if "accuracy" in self.metrics else 0


class Infeasible(Exception):
    """Raised by the reporter when a measured metric violates a constraint; ends the trial before training."""


class NonFinite(Exception):
    """A metric came out NaN or infinite."""


class SetupError(Exception):
    """The trial could not start for a reason unrelated to the architecture (data, configuration)."""


class Reporter:
    """The evaluator's side of a trial: `measured(...)` before training, `epoch(...)` after each epoch."""

    def __init__(self, job: Job, send: Callable[[dict], None], *, stoppable: bool = True, repeat: int = 0):
        self.job = job
        self.send = send
        self.stoppable = stoppable
        self.repeat = repeat  # which seed of the architecture this evaluation is (0: the search's)
        self.values: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.last_epoch = 0
        self.finished = False

    def measured(self, metrics: dict[str, float], **info: Any) -> None:
        """Record metrics known before training; raise Infeasible when one violates a constraint."""
        for name, value in metrics.items():
            self.values[name] = _finite(name, value)
        self.info.update(info)
        for c in self.job.constraints:
            if c.metric in metrics and c.violation(self.values[c.metric]) > 0:
                raise Infeasible(c.describe(self.values[c.metric]))

    def epoch(self, epoch: int, accuracy: float) -> None:
        """Report epoch `epoch` (1-based) with its validation accuracy and every other known metric."""
        self.values["accuracy"] = _finite("accuracy", accuracy)
        self.last_epoch = epoch
        self.info.setdefault("history", []).append(round(accuracy, 6))
        done = epoch >= self.job.epochs
        self.finished = done
        self.send(self.record("complete" if done else "running", epoch=epoch))

    def record(self, status: str, *, epoch: int | None = None, reason: str | None = None) -> dict:
        """A report: status, every objective (0.0 where unknown), every measured metric and the trial's info."""
        unmeasured = [name for name in self.job.objectives if name not in self.values]
        out: dict[str, Any] = {name: 0.0 for name in unmeasured}  # placeholders: Ray Tune wants every metric
        out.update(self.values)
        out.update(self.info)
        out["unmeasured"] = unmeasured
        out.update(status=status, epochs=self.last_epoch, planned_epochs=self.job.epochs,
                   seconds=round(time.perf_counter() - self.start, 3))
        if epoch is not None:
            out["epoch"] = epoch
            if self.stoppable:
                out[ASHA_EPOCH] = epoch
        if reason is not None:
            out["reason"] = reason
        return out


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise NonFinite(f"{name} is {value}")
    return value


# -- the default evaluator --------------------------------------------------------------------------------------------
Evaluate = Callable[[Arch, Job, Reporter], None]


def evaluate(arch: Arch, job: Job, report: Reporter) -> None:
    """Target cost and latency, proxy zero-cost scores, a constraint check, then proxy training, reported per epoch.

    `arch` is the architecture the search proposed (adapted to the input); the target is it at the target width,
    the proxy at the proxy width. The proxy's weights, data order and augmentation are seeded by `trial_seed`.
    """
    from evaluators import measure_cost, score

    ev = job.evaluator
    data, train_cfg = _setup(job, trial_seed(job.seed, arch.hash, report.repeat))
    lock = for_trial(job.threads, job.device, ev.latency) if ev.quiet and "latency_ms" in job.metrics else None
    target = arch.scaled(ev.target.width_mult)
    # Everything cheap is measured before the constraints are checked, so an infeasible trial is fully described.
    with _busy(lock):
        cost = measure_cost(target, input_size=ev.target.resolution, num_classes=data.num_classes,
                            in_chans=data.in_chans)
    metrics = {"params": cost.params_deploy or cost.params, "macs": cost.macs_deploy or cost.macs,
               "activations": cost.activations, "params_train": cost.params, "macs_train": cost.macs}
    info: dict[str, Any] = {"seed": train_cfg.seed, "repeat": report.repeat, "target_hash": target.hash,
                            "train_images": len(data.y_train), "val_images": len(data.y_val)}
    if "latency_ms" in job.metrics:
        lat = _latency(target, job, data.num_classes, data.in_chans, lock)
        metrics["latency_ms"] = lat.median_ms
        info.update(_latency_info(lat))
    proxies = [m for m in sorted(job.metrics) if METRICS[m].stage == "zero_cost"]
    model = proxy_model(arch, job, data, train_cfg) if proxies or job.epochs else None
    if proxies:
        with _busy(lock):
            metrics.update({m: score(m, model, data, batch_size=ev.zero_cost_batch)[0] for m in proxies})
    report.measured(metrics, **info)

    def again(fresh: bool) -> Any:
        return _latency(target, job, data.num_classes, data.in_chans, lock, fresh=fresh)

    if not job.epochs:
        settle_latency(report, again)
        return
    last: list[float] = []
    with _busy(lock) as busy:
        def callback(epoch: int, accuracy: float) -> None:
            if epoch + 1 == job.epochs:
                last.append(accuracy)  # reported below, after the latency check
                return
            report.epoch(epoch + 1, accuracy)
            busy.breathe()  # let a waiting latency measurement on this node run between epochs

        result = train_proxy(model, data, train_cfg, callback)
    # What says whether the run trained at all (nas.record.training): its loss curve and the number of classes.
    report.info.update(losses=[round(v, 6) for v in result.losses], classes=data.num_classes,
                       label_smoothing=train_cfg.label_smoothing)
    settle_latency(report, again)
    if last:
        report.epoch(job.epochs, last[0])


def settle_latency(report: Reporter, measure: Callable[[bool], Any]) -> None:
    """Measure the latency again when it was taken under load or is too noisy to order networks by, keep the better
    of the two, and flag it (`latency_noisy`) when even that one stays noisy (`nas.record.latency`).

    `measure(fresh)` times the target again; `fresh` bypasses the latency cache, which holds the noisy measurement.
    Runs after training, so the trial's own epochs and a burst of load at its start are over.
    """
    if "latency_ms" not in report.values:
        return
    first = {"latency_ms": report.values["latency_ms"], **report.info}
    loaded, noisy = bool(first.get("latency_loaded")), is_noisy(rel_iqr(first))
    if loaded or noisy:
        again = measure(noisy and not loaded)
        keep = (not again.loaded and loaded) or (again.loaded == loaded and (
            again.load <= first.get("latency_load", math.inf) if loaded else again.rel_iqr < rel_iqr(first)))
        if keep:
            report.values["latency_ms"] = again.median_ms
            report.info.update(_latency_info(again))
        report.info.update(latency_remeasured=True, latency_first_ms=round(float(first["latency_ms"]), 6),
                           latency_first_iqr_ms=first.get("latency_iqr_ms"))
    report.info["latency_noisy"] = is_noisy(rel_iqr({"latency_ms": report.values["latency_ms"], **report.info}))


def _latency_info(lat: Any) -> dict[str, Any]:
    return {"latency_iqr_ms": round(lat.iqr_ms, 6), "fingerprint": lat.fingerprint, "latency_loaded": bool(lat.loaded),
            "latency_load": round(float(lat.load), 3), "latency_cached": bool(lat.cached)}


def _setup(job: Job, seed: int) -> tuple[Any, Any]:
    """The proxy's data (loaded once per worker) and its training recipe with `seed`, device and threads."""
    from evaluators import TrainConfig

    try:
        data = _data(tuple(sorted(job.evaluator.data.items())), job.device)
        cfg = TrainConfig(**{**job.evaluator.train, "device": job.device, "threads": job.threads, "seed": seed})
    except NasError as e:
        raise SetupError(str(e)) from None
    return data, cfg


def proxy_model(arch: Arch, job: Job, data: Any, cfg: Any) -> Any:
    """The proxy network of `arch`, its weights initialised from `cfg.seed`."""
    import torch

    from space import create_model

    torch.manual_seed(cfg.seed)
    return create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans,
                        width_mult=job.evaluator.proxy.width_mult, drop_path_rate=cfg.drop_path_rate)


def train_proxy(model: Any, data: Any, cfg: Any, callback: Callable[[int, float], Any] | None = None) -> Any:
    """Train the proxy with the study's recipe (deterministic for `cfg.seed` on CPU)."""
    from evaluators import train_model

    return train_model(model, data, cfg, callback=callback)


def repeat_accuracy(arch_yaml: str, job: Job, repeat: int) -> dict[str, Any]:
    """Train `arch`'s proxy again with the seed of repeat `repeat` (a Ray task body): its accuracy, seed, time, curves
    (validation accuracy and training loss per epoch), and with `job.weights` the trained weights."""
    import torch

    torch.set_num_threads(job.threads)
    arch = Arch.from_yaml(arch_yaml, source="repeat")
    data, cfg = _setup(job, trial_seed(job.seed, arch.hash, repeat))
    start = time.perf_counter()
    model = proxy_model(arch, job, data, cfg)
    result = train_proxy(model, data, cfg, _patience(job.patience) if job.patience else None)
    out: dict[str, Any] = {
        "accuracy": float(result.accuracy), "seed": cfg.seed, "repeat": repeat, "epochs": result.epochs,
        "seconds": round(time.perf_counter() - start, 3), "node": _node(),
        "history": [round(v, 6) for v in result.history], "losses": [round(v, 6) for v in result.losses],
        "classes": data.num_classes, "val_images": len(data.y_val), "stopped_early": bool(result.stopped_early),
        "label_smoothing": cfg.label_smoothing}
    if job.weights:
        out["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return out


def _patience(patience: int) -> Callable[[int, float], bool]:
    """An epoch callback that stops training once accuracy has not improved for `patience` epochs."""
    best = [-1.0, 0]  # best accuracy, epochs since it

    def callback(epoch: int, accuracy: float) -> bool:
        if accuracy > best[0]:
            best[0], best[1] = accuracy, 0
        else:
            best[1] += 1
        return best[1] >= patience

    return callback


@functools.lru_cache(maxsize=4)
def _data(items: tuple, device: str) -> Any:
    """The dataset, loaded once per worker process (workers are reused across trials)."""
    from evaluators import DataConfig, load_data

    return load_data(DataConfig(**dict(items)), device=device)


def _latency(arch: Arch, job: Job, num_classes: int, in_chans: int, lock: TrialQuiet | None, *,
             fresh: bool = False) -> Any:
    """Latency of the deploy form on this node: from the cache when measured before, else with its device quiet.

    `fresh` measures again whatever the cache holds, and replaces the cached measurement when the new one is steadier.
    """
    from evaluators import LatencyConfig, measure_latency
    from evaluators.latency import device_fingerprint, latency_settings, open_cache

    ev = job.evaluator
    cfg = LatencyConfig(**ev.latency)
    if lock is not None:
        cfg = lock.pin(cfg)  # on the trial's own cores (or the dedicated ones), like the quiet scope says
    cache = None if ev.latency_cache == "none" else ev.latency_cache
    store = open_cache(cache)
    if store is not None and lock is not None:
        hit = store.get(arch.hash, device_fingerprint(cfg.device, cfg.threads, cfg.backend),
                        latency_settings(cfg, num_classes=num_classes, in_chans=in_chans))
        if hit is not None and not hit.loaded:
            return hit
    with lock.quiet() if lock is not None else contextlib.nullcontext():
        if fresh:
            return _measure_again(arch, cfg, num_classes, in_chans, store)
        return measure_latency(arch, cfg, num_classes=num_classes, in_chans=in_chans, cache=store)


def _measure_again(arch: Arch, cfg: Any, num_classes: int, in_chans: int, store: Any) -> Any:
    """A new measurement under the device lock, bypassing the cache; cached when steadier than what it holds."""
    from evaluators.latency import (
        default_cache_dir,
        device_fingerprint,
        device_info,
        device_lock,
        latency_settings,
        time_model,
        timed_model,
    )

    settings = latency_settings(cfg, num_classes=num_classes, in_chans=in_chans)
    with device_lock(cfg.device, store.path.parent if store is not None else default_cache_dir()):
        result = time_model(timed_model(arch, cfg, num_classes=num_classes, in_chans=in_chans), cfg, in_chans=in_chans)
        if store is not None and not result.loaded:
            fingerprint = device_fingerprint(cfg.device, cfg.threads, cfg.backend)
            hit = store.get(arch.hash, fingerprint, settings)
            if hit is None or hit.loaded or result.rel_iqr < hit.rel_iqr:
                store.put(arch.hash, fingerprint, settings, result, name=arch.name,
                          info=device_info(cfg.device, cfg.threads, cfg.backend))
    return result


# -- keeping latency measurements off busy devices (the locks live in nas.run.quiet) ----------------------------------
@contextlib.contextmanager
def _busy(lock: TrialQuiet | None) -> Iterator[Busy | NoBusy]:
    """A busy section over the trial's cores and GPUs (nothing without a lock)."""
    if lock is None:
        yield NoBusy()
    else:
        with lock.busy() as section:
            yield section


# -- the Ray Tune trainable -------------------------------------------------------------------------------------------
def run_trial(config: dict, job: Job | None = None, evaluate_fn: Evaluate | None = None) -> None:
    """Ray Tune function trainable: evaluate `config["arch"]` and report; failures end in a `failed` report."""
    from ray import tune

    assert job is not None, "pass the job with tune.with_parameters(run_trial, job=...)"
    run(config, job, evaluate_fn or evaluate, tune.report)


def run(config: dict, job: Job, evaluate_fn: Evaluate, send: Callable[[dict], None]) -> dict:
    """Evaluate one architecture with `evaluate_fn`, sending reports through `send`; return the final report."""
    import torch

    torch.set_num_threads(job.threads)
    report = Reporter(job, send, stoppable=not config.get("named"), repeat=int(config.get("repeat", 0)))
    report.info.update(node=_node(), host=socket.gethostname())
    final: dict | None = None
    try:
        arch = Arch.from_yaml(config["arch"], source=f"trial {config.get('number', '?')}")
        evaluate_fn(arch, job, report)
        if not report.finished:
            final = report.record("complete")
    except Infeasible as e:
        final = report.record("infeasible", reason=str(e))
    except (SetupError, SpecError) as e:
        if isinstance(e, SpecError) and e.source != "train config":  # a train config error is the study's
            final = report.record("failed", reason=failure_reason(e))
        else:
            final = report.record("failed", reason=f"setup: {e}")
            final["setup_error"] = True
    except Exception as e:
        final = report.record("failed", reason=failure_reason(e))
    if final is not None:
        send(final)
        return final
    return report.record("complete")


def failure_reason(e: BaseException) -> str:
    """One line saying why a trial failed: invalid architecture, out of memory, diverged, non-finite, or the error."""
    from evaluators import TrainingDiverged

    text = " ".join(str(e).split())[:500]
    if isinstance(e, SpecError):
        return f"invalid architecture: {text}"
    if isinstance(e, MemoryError) or "out of memory" in text.lower() or type(e).__name__ == "OutOfMemoryError":
        return f"out of memory: {text}"
    if isinstance(e, TrainingDiverged):
        return f"diverged: {text}"
    if isinstance(e, NonFinite):
        return f"non-finite metric: {text}"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _node() -> str:
    """The Ray node id of this worker (the host name outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker there is no runtime context; the host name will do
        pass
    return f"{socket.gethostname()}:{os.getpid()}"
