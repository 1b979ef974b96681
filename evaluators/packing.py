"""Trials per GPU, chosen by measurement: train k copies of a proxy at once, one process each (as k packed trials
run), for k = 1, 2, 4, ..., and keep the k past which doubling no longer raises the total throughput enough.

A proxy at small widths and inputs leaves most of a large GPU idle: one process is bound by its host launching
kernels, and k processes fill each other's gaps (on an H200, four ResNet-18 ×0.5 trials trained 3.7× as many epochs
per second as one). The decision is a pure function of the measured throughputs (`choose_trials_per_gpu`); the
measurement (`calibrate_packing`) runs real `train_model` steps on synthetic tensors of the proxy's shape.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from evaluators.data import Data
from evaluators.train import TrainConfig, train_model
from space import Arch, create_model
from space.errors import NasError

DEFAULT_TRIALS_PER_GPU = 4  # without a calibration: 4 small proxies per GPU (3.7× one alone on an H200)
MIN_GAIN = 0.15  # doubling the trials on a GPU must raise their total throughput by at least this fraction
MEMORY_HEADROOM = 0.8  # packed trials may plan on this fraction of the GPU's memory
CONTEXT_BYTES = 512 << 20  # what a process's CUDA context takes beside its tensors
KS = (1, 2, 4, 8)
TIMEOUT_SECONDS = 300.0  # for one k: start, warm-up and the timed steps of every process


class PackingError(NasError):
    """The calibration could not run (no CUDA device, a process that never reported)."""


@dataclass(frozen=True)
class Packing:
    """The chosen trials per GPU, and what it was chosen from: total steps/s per k, one trial's peak memory."""

    trials_per_gpu: int
    throughput: dict[int, float | None]  # None: that k failed (out of memory, a crash) or was not reached
    peak_memory: int | None = None  # bytes one trial held at most, CUDA context included (CUDA only)
    total_memory: int | None = None

    @property
    def gpu_fraction(self) -> float:
        """The GPU share to reserve per trial (Ray's `num_gpus`): 1 / trials_per_gpu."""
        return 1.0 / self.trials_per_gpu

    @property
    def speedup(self) -> float:
        """Total throughput at the chosen k over one trial alone."""
        one, chosen = self.throughput.get(1), self.throughput.get(self.trials_per_gpu)
        return chosen / one if one and chosen else 1.0


def choose_trials_per_gpu(throughput: Mapping[int, float | None], *, min_gain: float = MIN_GAIN,
                          peak_memory: int | None = None, total_memory: int | None = None) -> int:
    """The largest k (ascending, from 1) before which each step up raised the total throughput by >= `min_gain`.

    A k that failed (None, 0, NaN) ends the search; so does memory: k trials of `peak_memory` bytes each must fit in
    MEMORY_HEADROOM of `total_memory`. Throughput is of all k processes together (e.g. steps/s summed).
    """
    ks = sorted(throughput)
    if not ks or ks[0] != 1 or not _ok(throughput[1]):
        raise PackingError("packing needs a measured throughput for k = 1 (one trial alone)")
    fit = math.inf
    if peak_memory and total_memory:
        fit = max(1, int(MEMORY_HEADROOM * total_memory // peak_memory))
    best = 1
    for k in ks[1:]:
        t = throughput[k]
        if k > fit or not _ok(t) or t < (1.0 + min_gain) * throughput[best]:
            break
        best = k
    return best


def calibrate_packing(arch: Arch | str, cfg: TrainConfig, *, resolution: int, num_classes: int = 10,
                      in_chans: int = 3, width_mult: float = 1.0, ks: Sequence[int] = KS, steps: int = 30,
                      warmup_steps: int = 10, min_gain: float = MIN_GAIN) -> Packing:
    """Measure the total training throughput of k concurrent processes on `cfg.device`, for each k of `ks` in turn.

    Each process trains `arch` (at `width_mult`, `resolution` px) with `cfg` (its batch size, amp, channels_last) on
    synthetic data: `warmup_steps` steps, then, started together, `steps` timed steps. Stops at the first k that fails
    or gains less than `min_gain` over the last one (larger k would only be slower), and returns the choice.
    """
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise PackingError(f"packing calibration on '{cfg.device}': CUDA is not available on this machine")
    ks = sorted(set(ks) | {1})
    job = {"arch": arch, "cfg": cfg, "resolution": resolution, "num_classes": num_classes, "in_chans": in_chans,
           "width_mult": width_mult, "steps": steps, "warmup_steps": warmup_steps}
    throughput: dict[int, float | None] = {}
    peak: int | None = None
    total = None
    if torch.device(cfg.device).type == "cuda":
        total = torch.cuda.get_device_properties(torch.device(cfg.device).index or 0).total_memory
    for k in ks:
        throughput[k], k_peak = _run_packed(k, job)
        if k == 1:
            peak = k_peak
        if choose_trials_per_gpu(throughput, min_gain=min_gain, peak_memory=peak, total_memory=total) < k:
            break
    chosen = choose_trials_per_gpu(throughput, min_gain=min_gain, peak_memory=peak, total_memory=total)
    return Packing(trials_per_gpu=chosen, throughput=throughput, peak_memory=peak, total_memory=total)


def _ok(t: float | None) -> bool:
    return t is not None and math.isfinite(t) and t > 0


def _run_packed(k: int, job: dict) -> tuple[float | None, int | None]:
    """(total timed steps per second of k processes, the largest peak memory among them), or (None, None)."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    barrier = ctx.Barrier(k)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, barrier, results), daemon=True) for _ in range(k)]
    for p in procs:
        p.start()
    reports = []
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        while len(reports) < k:
            try:
                reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
            if "error" in reports[-1]:
                break
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    if len(reports) < k or any("error" in r for r in reports):
        return None, None
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    peak = max((r["peak"] for r in reports if r["peak"] is not None), default=None)
    return k * job["steps"] / span, peak


def _worker(job: dict, barrier: mp.synchronize.Barrier, results: mp.Queue) -> None:
    """One packed trial: build, warm up, wait for the others, time `steps` training steps, report."""
    try:
        cfg: TrainConfig = job["cfg"]
        device = torch.device(cfg.device)
        torch.manual_seed(0)
        model = create_model(job["arch"], num_classes=job["num_classes"], in_chans=job["in_chans"],
                             width_mult=job["width_mult"])
        data = synthetic_data(cfg.batch_size, job["resolution"], job["num_classes"], job["in_chans"], device)
        train_model(model, data, replace(cfg, epochs=1, steps_per_epoch=job["warmup_steps"]))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        barrier.wait(timeout=TIMEOUT_SECONDS)
        start = time.monotonic()
        train_model(model, data, replace(cfg, epochs=1, steps_per_epoch=job["steps"]))  # ends on a host read
        end = time.monotonic()
        peak = torch.cuda.max_memory_reserved(device) + CONTEXT_BYTES if device.type == "cuda" else None
        results.put({"start": start, "end": end, "peak": peak})
    except BaseException as e:  # out of memory, a broken barrier: this k failed, the caller stops there
        barrier.abort()
        results.put({"error": f"{type(e).__name__}: {e}"})


def synthetic_data(batch_size: int, resolution: int, num_classes: int, in_chans: int,
                   device: str | torch.device = "cpu") -> Data:
    """Random images and labels of a proxy's shape (4 batches to train on, 1 to validate): for timing only."""
    g = torch.Generator().manual_seed(0)
    n = 4 * batch_size

    def images(m: int) -> torch.Tensor:
        return torch.randn(m, in_chans, resolution, resolution, generator=g)

    def labels(m: int) -> torch.Tensor:
        return torch.randint(0, num_classes, (m,), generator=g)

    return Data(x_train=images(n), y_train=labels(n), x_val=images(batch_size), y_val=labels(batch_size),
                num_classes=num_classes, in_chans=in_chans, mean=(0.0,) * in_chans, std=(1.0,) * in_chans,
                name="synthetic").to(device)
