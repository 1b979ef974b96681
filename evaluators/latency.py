"""Measured latency of the deploy form of an architecture, cached by (architecture, device fingerprint, settings).

A measurement warms up until successive blocks of calls agree (caches, allocator, and the clocks of a GPU that was
idle), then times blocks of calls until the median is stable (IQR / median below a target) or a time budget runs
out; CUDA is timed with events. CPU thread count, dtype, memory format and runtime (eager, TorchScript trace+freeze,
ONNX Runtime, a replayed CUDA graph, torch.compile) are explicit settings, because each changes the answer: at batch
1 on a GPU, eager mode mostly measures the host launching kernels, a CUDA graph (the default there) the GPU's work.
Measurements on one device are serialized across processes by a file lock, optionally pinned to cores kept free of
training, and the CPU load of other processes during the measurement is recorded: above a threshold the measurement
is repeated, and flagged when it never gets below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import gc
import hashlib
import itertools
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from space import Arch, count_params, create_model, resolve_arch
from space.errors import NasError, did_you_mean

BACKENDS = ("eager", "torchscript", "onnxruntime", "cuda_graph", "compile")
CUDA_ONLY_BACKENDS = ("cuda_graph",)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
BLOCK_SECONDS = 0.02  # calls are timed in blocks this long, so the timer's own cost and jitter do not count
WARMUP_SECONDS = 0.2  # warm-up lasts at least this long (caches, allocator, CPU clocks), beyond `warmup` calls
RETRY_WAIT_SECONDS = 1.0  # pause before re-measuring under load, to let a burst from another process pass
CLOCK_WINDOW = 5  # warm-up ends when this many successive blocks...
CLOCK_TOLERANCE = 0.03  # ...agree within this fraction of their median (or at `warmup_max_seconds`)
WARMUP_MAX_SECONDS = {"cuda": 3.0, "cpu": 0.5}  # the default cap of that warm-up: a GPU's clocks ramp up slowly


class LatencyError(NasError):
    """A latency setting that cannot be measured here (unknown backend or dtype, no CUDA, bad cache file...)."""


@dataclass(frozen=True)
class LatencyConfig:
    """Where and how to time: the settings that change the answer, then how hard to try for a stable estimate.

    `backend` "auto" is `default_backend(device)`: eager on the CPU, cuda_graph on CUDA. Warm-up runs at least
    `warmup` calls, then blocks of calls until `CLOCK_WINDOW` successive ones agree within `CLOCK_TOLERANCE` (a GPU's
    clocks ramp up under load) or `warmup_max_seconds` (None: 3 s on CUDA, 0.5 s on the CPU; at most `max_seconds`).

    Timing stops once the IQR is within `target_rel_iqr` of the median after `min_runs` blocks and `min_seconds`
    (so one measurement spans the machine's short-term noise), or at `max_seconds`. `max_attempts` bounds the
    re-measurements while other processes load the CPU above `load_threshold` cores. `cpus` pins the measuring
    thread to those cores and counts load on them only: keep them free of training trials (unpinned, trials
    training anywhere on the machine count as load).
    """

    device: str = "cpu"
    batch_size: int = 1
    resolution: int = 224
    dtype: str = "float32"
    threads: int = 1
    channels_last: bool = False
    backend: str = "auto"
    warmup: int = 5
    warmup_max_seconds: float | None = None
    min_runs: int = 10
    max_seconds: float = 5.0
    min_seconds: float = 0.5
    target_rel_iqr: float = 0.05
    load_threshold: float = 0.5
    max_attempts: int = 3
    cpus: tuple[int, ...] | None = None


@dataclass
class LatencyResult:
    """Median and IQR (ms per batch) over `runs` timed blocks, with the context that produced them."""

    median_ms: float
    iqr_ms: float
    runs: int
    fingerprint: str
    settings: dict
    load: float
    loaded: bool
    cached: bool
    params: int | None = None  # parameters of the model that was timed (the deploy form for measure_latency)

    @property
    def rel_iqr(self) -> float:
        """IQR / median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")


# -- public entry points ----------------------------------------------------------------------------------------------
def measure_latency(arch: Arch | str, cfg: LatencyConfig = LatencyConfig(), *, num_classes: int = 1000,
                    in_chans: int = 3, width_mult: float = 1.0,
                    cache: LatencyCache | str | None = "default") -> LatencyResult:
    """Latency of the deploy form of `arch` in eval mode; cached, and serialized per device by a file lock."""
    cfg = _normalize(cfg)
    point = resolve_arch(arch).scaled(width_mult)
    settings = latency_settings(cfg, num_classes=num_classes, in_chans=in_chans)
    fingerprint = device_fingerprint(cfg.device, cfg.threads, cfg.backend)
    store = open_cache(cache)

    def lookup() -> LatencyResult | None:
        return store.get(point.hash, fingerprint, settings) if store is not None else None

    hit = lookup()
    if hit is not None and not hit.loaded:
        return hit
    with device_lock(cfg.device, store.path.parent if store is not None else default_cache_dir()):
        hit = lookup()  # another process may have measured it while we waited for the lock
        if hit is not None and not hit.loaded:
            return hit
        model = timed_model(point, cfg, num_classes=num_classes, in_chans=in_chans)
        result = time_model(model, cfg, in_chans=in_chans)
        result.settings = settings
        if hit is not None and hit.load <= result.load:
            return hit  # both were measured under load; keep the quieter one
        if store is not None:
            store.put(point.hash, fingerprint, settings, result, name=point.name,
                      info=device_info(cfg.device, cfg.threads, cfg.backend))
    return result


def timed_model(arch: Arch | str, cfg: LatencyConfig = LatencyConfig(), *, num_classes: int = 1000,
                in_chans: int = 3, width_mult: float = 1.0) -> nn.Module:
    """The module `measure_latency` times: the deploy form (lambda 1, re-parameterized), in eval mode."""
    model = create_model(arch, deploy=True, num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)
    return model.eval()


def time_model(model: nn.Module, cfg: LatencyConfig = LatencyConfig(), *, in_chans: int = 3) -> LatencyResult:
    """Time `model` as it is (any form; moved to the device and dtype in place), in eval mode; not cached or locked."""
    cfg = _normalize(cfg)
    device = torch.device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.eval().to(device=device, dtype=dtype, memory_format=fmt)
    x = torch.randn(cfg.batch_size, in_chans, cfg.resolution, cfg.resolution, generator=torch.Generator()
                    .manual_seed(0)).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
    params = count_params(model)
    settings = latency_settings(cfg, num_classes=getattr(model, "num_classes", 1000), in_chans=in_chans,
                                form="deploy" if getattr(model, "deployed", False) else "train")
    # CUDA events record on the current device's stream: make the measured device current.
    with _pinned(cfg), torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        fn, events = _runner(model, x, cfg)
        attempts: list[LatencyResult] = []
        for attempt in range(cfg.max_attempts):
            if attempt:
                time.sleep(RETRY_WAIT_SECONDS)
            median, iqr, runs, load = _time(fn, cfg, events)
            attempts.append(LatencyResult(median_ms=median, iqr_ms=iqr, runs=runs, load=load,
                                          fingerprint=device_fingerprint(cfg.device, cfg.threads, cfg.backend),
                                          settings=settings, loaded=load > cfg.load_threshold, cached=False,
                                          params=params))
            if not attempts[-1].loaded:
                break
    return min(attempts, key=lambda r: r.load)


def default_backend(device: str) -> str:
    """The backend a study on `device` times with by default: cuda_graph on CUDA (the GPU's work, not the host's
    kernel launches, which dominate eager batch-1 latency there), eager elsewhere."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise LatencyError(f"latency device '{device}' unknown; use cpu or cuda[:N]") from None
    return "cuda_graph" if kind == "cuda" else "eager"


def clocks_steady(blocks: list[float], *, window: int = CLOCK_WINDOW, tolerance: float = CLOCK_TOLERANCE) -> bool:
    """Whether the last `window` block times agree within `tolerance` of their median (warm-up may end)."""
    if len(blocks) < window:
        return False
    last = blocks[-window:]
    median = statistics.median(last)
    return median > 0 and max(last) - min(last) <= tolerance * median


def latency_settings(cfg: LatencyConfig, *, num_classes: int = 1000, in_chans: int = 3, form: str = "deploy") -> dict:
    """The settings that change the answer (the cache key besides the architecture and the device fingerprint)."""
    return {"form": form, "device": cfg.device, "batch_size": cfg.batch_size, "resolution": cfg.resolution,
            "dtype": cfg.dtype, "threads": cfg.threads, "channels_last": cfg.channels_last,
            "backend": default_backend(cfg.device) if cfg.backend == "auto" else cfg.backend,
            "num_classes": num_classes, "in_chans": in_chans}


# -- device identity --------------------------------------------------------------------------------------------------
def device_info(device: str = "cpu", threads: int = 1, backend: str = "eager") -> dict:
    """What makes latency on this device comparable: processor, core count, GPU and driver, runtime versions.

    $NAS_DEVICE_LABEL, when set (e.g. on each node of a cluster), is part of it: machines of the same model then keep
    separate measurements — for nodes that differ in ways the rest does not see (cooling, power limits, clocks).
    Backend "auto" stands for `default_backend(device)`.
    """
    if backend == "auto":
        backend = default_backend(device)
    info: dict = {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
                  "mkldnn": torch.backends.mkldnn.is_available(), "backend": backend}
    if os.environ.get("NAS_DEVICE_LABEL"):
        info["label"] = os.environ["NAS_DEVICE_LABEL"]
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else 0
        props = torch.cuda.get_device_properties(index)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", memory=props.total_memory,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), driver=_gpu_driver(index))
    if backend == "onnxruntime":
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def device_fingerprint(device: str = "cpu", threads: int = 1, backend: str = "eager") -> str:
    """16 hex chars identifying `device_info`: a change of machine, driver or runtime version changes it."""
    blob = json.dumps(device_info(device, threads, backend), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model", "Model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _gpu_driver(index: int) -> str:
    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- cache and lock ---------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """$NAS_CACHE_DIR, else $XDG_CACHE_HOME/nas, else ~/.cache/nas."""
    if os.environ.get("NAS_CACHE_DIR"):
        return Path(os.environ["NAS_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas"


class LatencyCache:
    """A SQLite table of measurements keyed by (architecture hash, device fingerprint, settings JSON)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS latency (arch_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, "
                           "settings TEXT NOT NULL, median_ms REAL NOT NULL, iqr_ms REAL NOT NULL, "
                           "runs INTEGER NOT NULL, load REAL NOT NULL, loaded INTEGER NOT NULL, params INTEGER, "
                           "name TEXT, measured_at REAL NOT NULL, PRIMARY KEY (arch_hash, fingerprint, settings))")
                db.execute("CREATE TABLE IF NOT EXISTS devices (fingerprint TEXT PRIMARY KEY, info TEXT NOT NULL)")
        except (sqlite3.Error, OSError) as e:
            raise LatencyError(f"{self.path}: cannot use it as the latency cache ({e}); delete the file or choose "
                               "another path (NAS_CACHE_DIR)") from None

    @classmethod
    def default(cls) -> LatencyCache:
        """The user-level cache: <default_cache_dir()>/latency.sqlite."""
        return cls(default_cache_dir() / "latency.sqlite")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get(self, arch_hash: str, fingerprint: str, settings: dict) -> LatencyResult | None:
        """The stored measurement, or None."""
        with self._connect() as db:
            row = db.execute("SELECT median_ms, iqr_ms, runs, load, loaded, params FROM latency "
                             "WHERE arch_hash = ? AND fingerprint = ? AND settings = ?",
                             (arch_hash, fingerprint, _key(settings))).fetchone()
        if row is None:
            return None
        median, iqr, runs, load, loaded, params = row
        return LatencyResult(median_ms=median, iqr_ms=iqr, runs=runs, fingerprint=fingerprint, settings=dict(settings),
                             load=load, loaded=bool(loaded), cached=True, params=params)

    def put(self, arch_hash: str, fingerprint: str, settings: dict, result: LatencyResult, *,
            name: str | None = None, info: dict | None = None) -> None:
        """Store (or replace) a measurement, and the device description behind the fingerprint."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (arch_hash, fingerprint, _key(settings), result.median_ms, result.iqr_ms, result.runs,
                        result.load, int(result.loaded), result.params, name, time.time()))
            if info is not None:
                db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?)", (fingerprint, json.dumps(info)))

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]


def open_cache(cache: LatencyCache | str | Path | None) -> LatencyCache | None:
    """A cache from a LatencyCache, a path, "default" (the user-level cache) or None (no caching)."""
    if cache is None or isinstance(cache, LatencyCache):
        return cache
    return LatencyCache.default() if cache == "default" else LatencyCache(cache)


@contextlib.contextmanager
def device_lock(device: str, directory: str | Path) -> Iterator[Path]:
    """Hold an exclusive file lock for `device` (one measurement per device at a time, across processes).

    A GPU is named as CUDA_VISIBLE_DEVICES names it: 'cuda:0' of two Ray workers given different GPUs are two devices.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = device.replace(":", "")
    kind, _, index = device.partition(":")
    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if kind == "cuda" and int(index or 0) < len(visible):
        name = "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in visible[int(index or 0)])
    path = directory / f"latency-{name}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


# -- settings ---------------------------------------------------------------------------------------------------------
def _normalize(cfg: LatencyConfig) -> LatencyConfig:
    """Canonical device and dtype names, and one-line errors for settings this machine cannot measure."""
    dtype = DTYPE_ALIASES.get(cfg.dtype, cfg.dtype)
    if dtype not in DTYPES:
        raise LatencyError(f"latency dtype '{cfg.dtype}' unknown; {did_you_mean(cfg.dtype, DTYPES)}")
    if cfg.backend not in BACKENDS and cfg.backend != "auto":
        raise LatencyError(f"latency backend '{cfg.backend}' unknown; {did_you_mean(cfg.backend, BACKENDS)}")
    try:
        dev = torch.device(cfg.device)
    except RuntimeError:
        raise LatencyError(f"latency device '{cfg.device}' unknown; use cpu or cuda[:N]") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LatencyError(f"latency device '{cfg.device}': CUDA is not available on this machine; use cpu")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise LatencyError(f"latency device '{cfg.device}': only {torch.cuda.device_count()} GPU(s) here")
        device = f"cuda:{index}"
    elif dev.type == "cpu":
        device = "cpu"
        if dtype == "float16":
            raise LatencyError("latency dtype float16 is for CUDA; use float32 (or bfloat16) on cpu")
    else:
        raise LatencyError(f"latency device '{cfg.device}' is not supported; use cpu or cuda[:N]")
    backend = default_backend(device) if cfg.backend == "auto" else cfg.backend
    if backend in CUDA_ONLY_BACKENDS and device == "cpu":
        raise LatencyError(f"latency backend {backend} replays a captured CUDA graph and needs device cuda; use eager "
                           "(or auto) on cpu")
    if backend == "onnxruntime":
        if dtype == "bfloat16":
            raise LatencyError("latency backend onnxruntime takes float32 or float16 models, not bfloat16")
        if cfg.channels_last:
            raise LatencyError("channels_last is a PyTorch memory format; onnxruntime picks its own layout, so "
                               "leave channels_last off with that backend")
    for key in ("batch_size", "resolution", "threads", "min_runs", "max_attempts"):
        if getattr(cfg, key) < 1:
            raise LatencyError(f"latency {key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.cpus is not None:
        allowed = os.sched_getaffinity(0)
        if not cfg.cpus or not set(cfg.cpus) <= allowed:
            raise LatencyError(f"latency cpus {list(cfg.cpus)} are not all available; this process may use "
                               f"{sorted(allowed)}")
    return dataclasses.replace(cfg, device=device, dtype=dtype, backend=backend)


@contextlib.contextmanager
def _pinned(cfg: LatencyConfig) -> Iterator[None]:
    """Pin torch's thread count (and the calling thread's cores when `cpus` is set); restore both after."""
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if cfg.cpus is not None else None
    benchmark = torch.backends.cudnn.benchmark
    torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = True
    if cfg.cpus is not None:
        os.sched_setaffinity(0, cfg.cpus)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        if affinity is not None:
            os.sched_setaffinity(0, affinity)


# -- runtimes ---------------------------------------------------------------------------------------------------------
def _runner(model: nn.Module, x: torch.Tensor, cfg: LatencyConfig) -> tuple[Callable[[], object], bool]:
    """A zero-argument call running one inference in the chosen runtime, and whether CUDA events can time it."""
    cuda = x.device.type == "cuda"
    if cfg.backend == "eager":
        return _no_grad(lambda: model(x)), cuda
    if cfg.backend == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
            traced = torch.jit.freeze(torch.jit.trace(model, x).eval())
        return _no_grad(lambda: traced(x)), cuda
    if cfg.backend == "cuda_graph":
        return _cuda_graph(model, x), True
    if cfg.backend == "compile":
        return _compiled(model, x), cuda
    return _onnxruntime(model, x, cfg), False  # ORT runs on its own CUDA stream and returns when done


def _cuda_graph(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Capture one inference in a CUDA graph; replaying it launches the whole network at once."""
    static = x.clone()
    current = torch.cuda.current_stream(x.device)
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(current)
    try:
        with torch.no_grad():
            # Warm-up on a side stream, as capture requires: cuDNN picks its algorithms here, not during capture.
            with torch.cuda.stream(side):
                for _ in range(3):
                    model(static)
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(static)
    except RuntimeError as e:
        raise LatencyError(f"cannot capture {type(model).__name__} in a CUDA graph ({_first_line(e)}); use the "
                           "eager backend") from None
    return graph.replay


def _compiled(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """torch.compile the model (with CUDA graphs on CUDA: mode reduce-overhead) and run it once to compile."""
    import torch._dynamo

    # Every network's forward is the same code object: without a reset, dynamo's recompile limit would leave later
    # networks of a search running uncompiled.
    torch._dynamo.reset()
    mode = "reduce-overhead" if x.device.type == "cuda" else "default"
    compiled = torch.compile(model, mode=mode, dynamic=False)
    call = _no_grad(lambda: compiled(x))
    try:
        call()
    except Exception as e:  # inductor raises many types (no C++ compiler, an unsupported op...)
        raise LatencyError(f"torch.compile failed for {type(model).__name__} ({type(e).__name__}: "
                           f"{_first_line(e)}); use the eager or cuda_graph backend") from None
    return call


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return fn()

    return call


def _onnxruntime(model: nn.Module, x: torch.Tensor, cfg: LatencyConfig) -> Callable[[], object]:
    """Export to ONNX and run in an ONNX Runtime session with `threads` intra-op threads."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        raise LatencyError("backend onnxruntime needs the onnx extra: pip install 'nas[onnx]'") from None
    proto = _export_onnx(model, x)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if x.device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise LatencyError("onnxruntime here has no CUDAExecutionProvider; install onnxruntime-gpu")
        providers: list = [("CUDAExecutionProvider", {"device_id": x.device.index})]
    else:
        providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(proto, sess_options=opts, providers=providers)
    name = sess.get_inputs()[0].name
    if x.device.type == "cuda":
        binding = sess.io_binding()
        element = np.float16 if x.dtype == torch.float16 else np.float32
        binding.bind_input(name, "cuda", x.device.index, element, tuple(x.shape), x.data_ptr())
        binding.bind_output(sess.get_outputs()[0].name, "cuda", x.device.index)
        return lambda: sess.run_with_iobinding(binding)
    feed = {name: x.numpy()}
    return lambda: sess.run(None, feed)


def _export_onnx(model: nn.Module, x: torch.Tensor) -> bytes:
    """The ONNX bytes of `model` at the input shape of `x` (torch.export based; the TorchScript exporter if not)."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, input_names=["x"],
                                            output_names=["logits"])
                return program.model_proto.SerializeToString()
            except Exception:  # the torch.export path rejects some graphs the TorchScript exporter handles
                import io

                buf = io.BytesIO()
                torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["logits"])
                return buf.getvalue()
    except Exception as e:
        raise LatencyError(f"cannot export {type(model).__name__} to ONNX ({type(e).__name__}: {e}); use the "
                           "eager or torchscript backend") from None
    finally:
        quiet.setLevel(level)


# -- the timing loop --------------------------------------------------------------------------------------------------
def _time(fn: Callable[[], object], cfg: LatencyConfig, events: bool) -> tuple[float, float, int, float]:
    """(median ms, IQR ms, timed blocks, other processes' CPU load in cores) of `fn`, per call."""
    device = torch.device(cfg.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    warm = min(WARMUP_SECONDS, cfg.max_seconds)
    for i in itertools.count():
        if i >= cfg.warmup and time.perf_counter() - t0 >= warm:
            break
        fn()
        sync()
    min_seconds = min(cfg.min_seconds, cfg.max_seconds)
    t0 = time.perf_counter()
    fn()
    sync()
    calls = max(1, int(BLOCK_SECONDS / max(time.perf_counter() - t0, 1e-9)))
    cap = cfg.warmup_max_seconds if cfg.warmup_max_seconds is not None else WARMUP_MAX_SECONDS[device.type]
    warm_up(lambda: _block(fn, calls, sync, events), max_seconds=min(cap, cfg.max_seconds))
    samples: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    before = _cpu_seconds(cfg.cpus)
    start = time.perf_counter()
    try:
        while True:
            samples.append(_block(fn, calls, sync, events) / calls)
            elapsed = time.perf_counter() - start
            stable = (len(samples) >= cfg.min_runs and elapsed >= min_seconds
                      and _iqr(samples) <= cfg.target_rel_iqr * statistics.median(samples))
            if stable or (elapsed >= cfg.max_seconds and len(samples) >= 3):
                break
    finally:
        if gc_was:
            gc.enable()
    load = _other_load(before, _cpu_seconds(cfg.cpus))
    return statistics.median(samples), _iqr(samples), len(samples), load


def warm_up(block: Callable[[], float], *, max_seconds: float, window: int = CLOCK_WINDOW,
            tolerance: float = CLOCK_TOLERANCE) -> list[float]:
    """Run `block` (returning its time) until `clocks_steady` says the last `window` agree, or for `max_seconds`."""
    times: list[float] = []
    start = time.perf_counter()
    while not clocks_steady(times, window=window, tolerance=tolerance):
        if times and time.perf_counter() - start >= max_seconds:
            break
        times.append(block())
    return times


def _block(fn: Callable[[], object], calls: int, sync: Callable[[], None], events: bool) -> float:
    """Milliseconds for `calls` consecutive calls (CUDA events around them on CUDA)."""
    if events:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


def _iqr(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[2] - q[0]


def _cpu_seconds(cpus: tuple[int, ...] | None = None) -> tuple[float, float, float] | None:
    """(wall clock, busy CPU seconds of `cpus` (all cores when None), CPU seconds of this process), or None.

    With the measurement pinned to `cpus`, only those cores count: trials training on the other cores are not load.
    """
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {"cpu"} if cpus is None else {f"cpu{c}" for c in cpus}
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            busy += user + nice + system + irq + softirq + steal
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _other_load(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None) -> float:
    """Average cores used by other processes between two `_cpu_seconds` readings (0 when unknown)."""
    if before is None or after is None or after[0] <= before[0]:
        return 0.0
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (after[0] - before[0]))
