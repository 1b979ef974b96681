"""Quiet where it matters: a latency measurement pauses only the trials that share its device.

Every trial works inside *busy* sections over its **scope**, the names of what it uses on this machine: `cpu<N>` for
each core it runs on, `gpu<ID>` for each GPU Ray gave it (`ID` as in CUDA_VISIBLE_DEVICES, so the same physical GPU
has the same name in every worker). A latency measurement makes its own scope *quiet*: it waits until every trial
whose scope overlaps it pauses, and holds them paused while it runs; trials on other cores and other GPUs go on.

- On a GPU the measurement's scope is that GPU: it pauses the trials packed on it (`resources: {gpu: 0.5}` packs two)
  and so the CPU threads feeding it, not the node's other GPUs. Its host thread runs on the measuring trial's cores.
- On CPU it is the cores the measurement runs on. In a Ray worker a trial claims cores of its own (one per reserved
  CPU) and is pinned to them, so the measurement runs on the trial's cores and pauses no one; cores that cannot be
  claimed (more trials than cores, or outside Ray) leave the trial unpinned, and its scope is every core it may use.
- `evaluator.latency.cpus` dedicates cores to measurements: trials never claim them, so the measurement pauses only
  unpinned trials.

A paused trial stops between two optimizer steps (an optimizer step pre-hook checks for a waiting measurement every
`POLL_SECONDS`) or at the end of an epoch (`breathe()`), so a measurement waits about one training step, not one
epoch. The locks are files (`flock`) in `lock_dir()`, three per name (see `QuietLock`): a waiting measurement has
priority, no busy section on its names starts while it waits. `QuietLock.quiet()` without a scope is node-wide:
it waits for every busy section on the machine (what `nas` did before scopes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

NODE = "node"  # the name every busy section holds: a node-wide quiet waits for all of them
POLL_SECONDS = 0.05  # how often a training step checks for a waiting measurement


def lock_dir() -> Path:
    """$NAS_QUIET_DIR, else <latency cache dir>/quiet/<host name> (one set of locks per machine, even on NFS)."""
    if os.environ.get("NAS_QUIET_DIR"):
        return Path(os.environ["NAS_QUIET_DIR"]).expanduser()
    from evaluators.latency import default_cache_dir

    return default_cache_dir() / "quiet" / socket.gethostname()


# -- devices ----------------------------------------------------------------------------------------------------------
def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (Ray sets it for each trial)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return [str(i) for i in range(torch.cuda.device_count())]
    return []


def physical_gpu(device: str) -> str | None:
    """The GPU a torch device string names, as CUDA_VISIBLE_DEVICES names it ('cuda:1' -> its second entry)."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return None
    gpus = visible_gpus()
    i = int(index) if index else 0
    if i >= len(gpus):
        return None if gpus else str(i)  # no CUDA_VISIBLE_DEVICES: torch's index is the physical one
    return gpus[i]


def gpu_key(gpu: str) -> str:
    """The lock name of a GPU ('0', or a UUID like 'GPU-8f3a...')."""
    return "gpu" + "".join(c if c.isalnum() or c in "-_" else "_" for c in gpu)


def core_key(core: int) -> str:
    """The lock name of a CPU core."""
    return f"cpu{core}"


# -- where a trial runs ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """The cores and GPUs a trial runs on; `pinned`: the cores were claimed for it alone, out of `allowed`."""

    cores: tuple[int, ...]
    gpus: tuple[str, ...] = ()
    pinned: bool = False
    allowed: tuple[int, ...] = ()  # every core the worker may use (the cores when unpinned)

    def busy_scope(self) -> frozenset[str]:
        """What the trial's work occupies: its cores and its GPUs."""
        return frozenset([core_key(c) for c in self.cores] + [gpu_key(g) for g in self.gpus])

    def measurement(self, device: str, threads: int = 1,
                    cpus: Iterable[int] | None = None) -> tuple[frozenset[str], tuple[int, ...] | None]:
        """The scope of a latency measurement on `device` made by this trial, and the cores to pin it to (or None).

        Dedicated `cpus` are the measurement's cores; else the trial's own pinned cores when there are enough of them
        for `threads`; else it runs unpinned, on every core the worker may use. On a GPU the scope is that GPU (the
        cores only say where its host thread runs).
        """
        if cpus is not None:
            cores: tuple[int, ...] | None = tuple(cpus)
        elif self.pinned and len(self.cores) >= threads:
            cores = self.cores[:threads]
        else:
            cores = None
        gpu = physical_gpu(device)
        if gpu is not None:
            keys = {gpu_key(gpu)}
        else:
            keys = {core_key(c) for c in (cores if cores is not None else self.allowed or self.cores)}
        return frozenset(keys), cores


_claim: _Claim | None = None  # this process's cores; a worker runs one trial at a time, so one claim at most
_original_affinity: set[int] | None = None


class _Claim:
    def __init__(self, files: list[IO[str]], cores: tuple[int, ...]):
        self.files, self.cores = files, cores

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing drops the flock
        self.files = []


def place(threads: int = 1, *, avoid: Iterable[int] = (), pin: bool | None = None) -> Placement:
    """The placement of the trial starting in this process: its Ray GPUs, and `threads` cores claimed and pinned.

    `pin` defaults to whether this is a Ray worker (a pytest or CLI process is never re-pinned). Cores in `avoid`
    (dedicated to measurements) are never claimed. The previous trial's claim of this process is released first.
    """
    global _claim, _original_affinity
    if _claim is not None:
        _claim.release()
        _claim = None
    gpus = tuple(_ray_gpus())
    if not hasattr(os, "sched_getaffinity"):  # no affinity API (macOS): every core, unpinned
        every = tuple(range(os.cpu_count() or 1))
        return Placement(every, gpus, allowed=every)
    if _original_affinity is None:
        _original_affinity = set(os.sched_getaffinity(0))
    allowed = sorted(_original_affinity)
    if pin is None:
        pin = _in_ray_worker()
    if pin:
        claim = _claim_cores(max(1, threads), [c for c in allowed if c not in set(avoid)])
        if claim is not None:
            _claim = claim
            _set_affinity(set(claim.cores))
            return Placement(claim.cores, gpus, pinned=True, allowed=tuple(allowed))
    if pin:
        _set_affinity(_original_affinity)
    return Placement(tuple(allowed), gpus, allowed=tuple(allowed))


def _claim_cores(n: int, candidates: list[int]) -> _Claim | None:
    """Claim `n` of `candidates` with a non-blocking flock each; None (nothing held) when fewer are free."""
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    files: list[IO[str]] = []
    cores: list[int] = []
    for core in candidates:
        f = open(directory / f"core-{core}.claim", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        files.append(f)
        cores.append(core)
        if len(cores) == n:
            return _Claim(files, tuple(cores))
    for f in files:
        f.close()
    return None


def _set_affinity(cores: set[int]) -> None:
    """Pin every thread of this process (torch's pool included; new threads inherit it) to `cores`."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread may have ended meanwhile
            os.sched_setaffinity(tid, cores)


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE  # not the driver (a test or the CLI)


def _ray_gpus() -> list[str]:
    """The GPUs Ray assigned to this worker (physical ids), else the visible ones."""
    if _in_ray_worker():
        import ray

        return [str(g) for g in ray.get_gpu_ids()]
    return visible_gpus()


# -- the lock ---------------------------------------------------------------------------------------------------------
class QuietLock:
    """Scoped reader/writer locks on files: busy sections share the names they use, a measurement takes its alone.

    Per name, three files: `want` (a measurement holds it shared from the moment it asks: busy sections look at it
    to pause, and never lock it otherwise), `gate` (held exclusively by the measurement; a section that sees a
    wanted name waits on it before entering again) and `busy` (shared by sections, exclusive for the measurement).
    Every party takes its locks in one order (gates before busy files, names sorted) and a section waits on a gate
    only while it holds nothing, so no two of them can wait for each other in a cycle.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_node(cls) -> QuietLock:
        """The locks of this machine (see `lock_dir`)."""
        return cls(lock_dir())

    def _open(self, names: Iterable[str]) -> list[_Name]:
        return [_Name(*(open(self.directory / f"{n}.{kind}", "a") for kind in ("want", "gate", "busy")))
                for n in sorted(set(names))]

    @contextlib.contextmanager
    def quiet(self, scope: Iterable[str] | None = None) -> Iterator[None]:
        """Make `scope` quiet (None: the whole node): wait for overlapping busy sections to pause, keep them paused."""
        names = self._open([NODE] if scope is None else scope)
        locked: list[IO[str]] = []
        try:
            for n in names:
                fcntl.flock(n.want, fcntl.LOCK_SH)
                locked.append(n.want)
            for n in names:
                fcntl.flock(n.gate, fcntl.LOCK_EX)
                locked.append(n.gate)
            for n in names:
                fcntl.flock(n.busy, fcntl.LOCK_EX)
                locked.append(n.busy)
            yield
        finally:
            for f in reversed(locked):
                fcntl.flock(f, fcntl.LOCK_UN)
            for n in names:
                n.close()

    @contextlib.contextmanager
    def busy(self, scope: Iterable[str] = (), *, sync: Callable[[], None] | None = None) -> Iterator[Busy]:
        """A section of work on `scope`; it pauses for a measurement at `breathe()` and between optimizer steps.

        `sync` (e.g. a CUDA synchronize) runs before each pause, so work queued on the device finishes first.
        """
        section = Busy(self._open({NODE, *scope}), sync)
        hook = _step_hook(section)
        try:
            section.enter()
            yield section
        finally:
            if hook is not None:
                hook.remove()
            section.leave()
            section.close()


@dataclass
class _Name:
    want: IO[str]
    gate: IO[str]
    busy: IO[str]

    def wanted(self) -> bool:
        """Whether a measurement asks for this name (holds `want`)."""
        try:
            fcntl.flock(self.want, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.want, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        for f in (self.want, self.gate, self.busy):
            f.close()


class Busy:
    """A busy section: shared locks on its names."""

    def __init__(self, names: list[_Name], sync: Callable[[], None] | None = None):
        self.names, self.sync = names, sync
        self.inside = False
        self.next_poll = 0.0
        self.waited = 0.0  # seconds spent paused for measurements (bench/quiet_overhead.py reads it)

    def enter(self) -> None:
        """Take the shared locks, after any measurement that asks for one of the names is done."""
        start = time.perf_counter()
        for n in self.names:
            if n.wanted():  # a measurement waits or runs: it holds the gate until it is done
                fcntl.flock(n.gate, fcntl.LOCK_SH)
                fcntl.flock(n.gate, fcntl.LOCK_UN)
        for n in self.names:
            fcntl.flock(n.busy, fcntl.LOCK_SH)
        self.inside = True
        self.waited += time.perf_counter() - start

    def leave(self) -> None:
        """Drop the shared locks."""
        if self.inside:
            if self.sync is not None:
                self.sync()
            self.inside = False  # before the unlock: once unlocked, a measurement may look
            for n in self.names:
                fcntl.flock(n.busy, fcntl.LOCK_UN)

    def breathe(self) -> None:
        """Step out and back in, so that a measurement asking for one of the names goes first."""
        self.leave()
        self.enter()

    def poll(self) -> None:
        """Breathe if a measurement asks for one of the names (checked at most every POLL_SECONDS)."""
        now = time.monotonic()
        if now < self.next_poll or not self.inside:
            return
        self.next_poll = now + POLL_SECONDS
        if any(n.wanted() for n in self.names):
            self.breathe()

    def close(self) -> None:
        for n in self.names:
            n.close()


class NoBusy:
    waited = 0.0

    def breathe(self) -> None:
        pass

    def poll(self) -> None:
        pass


def _step_hook(section: Busy) -> Any:
    """A global optimizer step pre-hook that lets a waiting measurement in between two training steps."""
    if "torch" not in sys.modules:  # nothing trains without torch; do not import it for the lock alone
        return None
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    thread = threading.get_ident()

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        if threading.get_ident() == thread:  # the hook is process-wide; the section belongs to one thread
            section.poll()

    return register_optimizer_step_pre_hook(hook)


# -- what a trial uses ------------------------------------------------------------------------------------------------
class TrialQuiet:
    """A trial's side of the locks: busy sections over its placement, measurements over the measured device."""

    def __init__(self, lock: QuietLock, placement: Placement, device: str, latency: dict[str, Any]):
        self.lock, self.placement, self.device = lock, placement, device
        cpus = latency.get("cpus")
        self.latency_device = str(latency.get("device", "cpu"))
        self.measure_scope, self.measure_cpus = placement.measurement(
            self.latency_device, int(latency.get("threads", 1)), tuple(cpus) if cpus is not None else None)

    def busy(self) -> contextlib.AbstractContextManager[Busy]:
        """A busy section over the trial's cores and GPUs."""
        return self.lock.busy(self.placement.busy_scope(), sync=_cuda_sync(self.device))

    def quiet(self) -> contextlib.AbstractContextManager[None]:
        """The trial's latency measurement: its device quiet."""
        return self.lock.quiet(self.measure_scope)

    def pin(self, cfg: Any) -> Any:
        """`cfg` (a LatencyConfig) pinned to the measurement's cores, unless it names its own."""
        import dataclasses

        if cfg.cpus is None and self.measure_cpus is not None:
            return dataclasses.replace(cfg, cpus=self.measure_cpus)
        return cfg


def for_trial(threads: int, device: str, latency: dict[str, Any]) -> TrialQuiet:
    """Place the trial starting in this process (claim and pin its cores) and return its side of the locks."""
    cpus = latency.get("cpus")
    return TrialQuiet(QuietLock.for_node(), place(threads, avoid=cpus or ()), device, latency)


def _cuda_sync(device: str) -> Callable[[], None] | None:
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return lambda: torch.cuda.synchronize(torch.device(device))
