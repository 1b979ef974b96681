"""Where runs execute: connecting to Ray (a local Ray on loopback, or a cluster), how many trials fit at once, and
whether the driver's Ray is still there. The search, the repeats, the fidelity and final runners share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import ray

from nas.study import Study
from space.errors import NasError


class RayLost(NasError):
    """The driver's own Ray went away during a search (its raylet or GCS exited): the search cannot go on here."""


AUTO_GPU_SHARE = 0.25  # `gpu: auto`: four proxies per GPU (one H200 trained 4 ResNet-18 x0.5 proxies at 3.7x the
# throughput of one; issue 22's measurement, re-measured by bench/gpu_check.py)


def with_gpu_share(study: Study, resources: dict) -> Study:
    """`study` with `resources.gpu: auto` resolved for this cluster: AUTO_GPU_SHARE of a GPU per trial where the
    cluster has GPUs, none where it has not; a number is kept as given."""
    if study.resources.gpu != "auto":
        return study
    share = AUTO_GPU_SHARE if resources.get("GPU", 0) > 0 else 0.0
    return dataclasses.replace(study, resources=dataclasses.replace(study.resources, gpu=share))


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
