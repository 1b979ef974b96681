"""Where runs execute: connecting to Ray (a local Ray on loopback, or a cluster), how many trials fit at once, and
whether the driver's Ray is still there. The search, the repeats, the fidelity and final runners share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import ray

from nas.study import Study
from space.errors import NasError


class RayLost(NasError):
    """The driver's own Ray went away during a search (its raylet or GCS exited): the search cannot go on here."""


GPU_SHARE_KEY = "gpu_share"  # study attribute: the calibrated GPU fraction per trial of `resources: {gpu: auto}`


def with_gpu_share(study: Study, resources: dict, share: float | None = None) -> Study:
    """`study` with `resources.gpu: auto` resolved for this cluster: `share` (a calibration's) or one GPU over the
    documented default number of trials per GPU where the cluster has GPUs, none where it has none; a number is kept."""
    if study.resources.gpu != "auto":
        return study
    from evaluators.packing import DEFAULT_TRIALS_PER_GPU

    gpu = (share or 1.0 / DEFAULT_TRIALS_PER_GPU) if resources.get("GPU", 0) > 0 else 0.0
    return dataclasses.replace(study, resources=dataclasses.replace(study.resources, gpu=gpu))


def calibrated_share(study: Study, stored: float | None, log: Callable[[str], None]) -> float | None:
    """`resources: {gpu: auto}` on a driver with a GPU: trials per GPU measured once (evaluators.packing) with the
    study's first named point (else a point of the space) as its proxy; None where there is nothing to measure."""
    if study.resources.gpu != "auto" or stored is not None:
        return stored
    import torch

    if not torch.cuda.is_available():
        return None
    from evaluators import DataConfig, TrainConfig, load_data
    from evaluators.packing import PackingError, calibrate_packing
    from space.adapt import adapt_input

    ev = study.evaluator
    data = load_data(DataConfig(**ev.data))
    import optuna

    arch = study.named[0] if study.named else study.space.sample(optuna.create_study().ask())
    if ev.adapt_min_feature is not None:
        arch = adapt_input(arch, ev.adapt_resolution, ev.adapt_min_feature).arch
    cfg = TrainConfig(**{**ev.train, "device": "cuda"})
    try:
        packing = calibrate_packing(arch, cfg, resolution=ev.proxy.resolution, num_classes=data.num_classes,
                                    in_chans=data.in_chans, width_mult=ev.proxy.width_mult)
    except PackingError as e:
        log(f"gpu: auto: calibration failed ({e}); the default share is used")
        return None
    log(f"gpu: auto: {packing.trials_per_gpu} trials per GPU (calibrated: {packing.speedup:.1f}x one trial's "
        "throughput)")
    return packing.gpu_fraction


def concurrency(study: Study, resources: dict) -> int:
    """As many trials as the cluster's CPUs (and GPUs) allow."""
    n = int(resources.get("CPU", 1) // study.resources.cpu)
    if study.resources.gpu > 0:
        n = min(n, int(resources.get("GPU", 0) // study.resources.gpu))
    if n < 1:
        raise NasError(f"{study.source}: resources {dataclasses.asdict(study.resources)} per trial do not fit the "
                       f"cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)")
    return n


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[dict]:
    """Connect to Ray: the session already open in this process, the cluster at `address`, or a new local one.

    A new local Ray listens on the loopback interface only and starts no dashboard: nobody asked for a cluster.
    Only a Ray started here is shut down here (never `ray stop`: it kills every Ray process on the machine).
    """
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(address="local", include_dashboard=False)
        try:
            with contextlib.nullcontext() if address else loopback_only():
                ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise NasError(f"cannot start or join Ray at {address or 'a new local instance'}: {e}") from None
        started = True
    try:
        yield ray.cluster_resources()
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make the Ray started inside use 127.0.0.1 as its node address, so every server it runs binds to loopback.

    Ray's single-machine mode (its default on Windows and macOS, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) does exactly
    this. The variable reaches the processes Ray starts; this process read it when it imported Ray, so the flag it
    was turned into is set for the start too. (`_node_ip_address="127.0.0.1"` would be replaced by the machine's
    address, and its servers would still listen on every interface.)
    """
    from ray._private import ray_constants

    env, flag = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "ENABLE_RAY_CLUSTER"
    saved_env, saved_flag = os.environ.get(env), getattr(ray_constants, flag, None)
    os.environ[env] = "0"
    if saved_flag is not None:
        setattr(ray_constants, flag, False)
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = saved_env
        if saved_flag is not None:
            setattr(ray_constants, flag, saved_flag)


def ray_gone() -> str | None:
    """Why this driver's Ray is gone (its local raylet or GCS exited, its node is dead), or None while it is up."""
    node = getattr(ray._private.worker, "_global_node", None)  # a local Ray started by this process: its daemons
    for kind in ("raylet", "gcs_server"):
        for info in (getattr(node, "all_processes", None) or {}).get(kind, []):
            code = info.process.poll() if info.process is not None else None
            if code is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                return f"the local Ray's {kind} (pid {info.process.pid}) exited ({how})"
    try:
        me = ray.get_runtime_context().get_node_id()
        alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
    except Exception as e:  # the GCS is gone (head node down): any call to it fails
        return f"Ray's GCS cannot be reached ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    if not alive.get(me, False):
        return f"Ray marked this machine's node {me[:12]} dead (its raylet exited)"
    return None
