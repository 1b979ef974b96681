"""A cluster as users start one: `ray start --head` and `ray start --address` (separate processes, token auth, a
custom resource and a device label per node), then `nas search --address ...` from the command line.

Both "nodes" run on this machine, bound to 127.0.0.1; NAS_DEVICE_LABEL gives each its own device fingerprint, so the
test can tell that a trial's latency was measured on the node that ran it. The nodes are stopped by their PIDs (the
processes of their sessions), never with `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports of one node's daemons, picked free (defaults are fixed numbers other Rays on this machine may hold)."""
    names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port")
    return [f"--{n}={_free_port()}" for n in names] + ["--min-worker-port=0", "--max-worker-port=0"]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`ray start ... --block` in its own session; returns once it says the node is up."""
    node = subprocess.Popen([RAY, "start", *args, "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    assert node.stdout is not None
    for line in node.stdout:
        seen.append(line)
        if "Ray runtime started" in line:
            return node
        if time.monotonic() > deadline:
            break
    _stop(node)
    raise RuntimeError("ray start did not come up:\n" + "".join(seen[-30:]))


def _session(sid: int) -> list[int]:
    """PIDs of the processes of session `sid` (a `ray start` started with start_new_session and its daemons)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                    out.append(int(entry.name))
    return out


def _stop(node: subprocess.Popen) -> None:
    """Stop a node by the PIDs of its session: SIGTERM, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session(node.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while _session(node.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.wait(timeout=10)


def test_nas_search_on_a_cluster_started_with_ray_start(tmp_path: Path) -> None:
    study = tmp_path / "cluster.yaml"
    study.write_text(yaml.safe_dump({
        "name": "cluster", "space": "small", "objectives": ["accuracy", "latency_ms"], "budget": {"trials": 4},
        "sampler": {"type": "random", "seed": 0}, "early_stopping": "off", "resources": {"cpu": 1},
        "evaluator": {"data": {"name": "digits"}, "target": {"width_mult": 0.25, "resolution": 8},
                      "proxy": {"width_mult": 0.25, "resolution": 8, "train_images": 64},
                      "train": {"epochs": 2, "batch_size": 32},
                      "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}}}))
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="nasray", dir="/tmp")  # short: Ray's socket paths live under it
    # What every machine of a real cluster shares: token auth and the same token (see the README's cluster section).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "NAS_CACHE_DIR": str(tmp_path / "cache")}
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start(["--head", f"--port={port}",
                             "--include-dashboard=false", f"--temp-dir={temp}", "--num-cpus=1",
                             '--resources={"node_a": 1}', *_node_ports()], {**env, "NAS_DEVICE_LABEL": "node-a"}))
        nodes.append(_start([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node_b": 1}',
                             *_node_ports()], {**env, "NAS_DEVICE_LABEL": "node-b"}))
        search = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(study), "--address",
                                 f"127.0.0.1:{port}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        for node in reversed(nodes):
            _stop(node)
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", temp], check=False)
    assert search.returncode == 0, search.stdout + search.stderr
    assert "2 trial(s) at a time on 2 CPU(s)" in search.stdout
    assert all(not _session(node.pid) for node in nodes)

    trials = [t for t in optuna.load_study(study_name="cluster", storage=f"sqlite:///{tmp_path / 'cluster.db'}").trials
              if t.state == TrialState.COMPLETE]
    assert len(trials) == 4
    with sqlite3.connect(tmp_path / "cache" / "latency.sqlite") as db:
        labels = {fp: json.loads(info).get("label") for fp, info in db.execute("SELECT fingerprint, info FROM devices")}
    by_node: dict[str, set[str | None]] = defaultdict(set)
    for t in trials:
        by_node[t.user_attrs["node"]].add(labels.get(t.user_attrs["fingerprint"]))
    # Trials ran on both nodes, and each node's trials carry that node's own fingerprint (one label per node).
    assert len(by_node) == 2 and all(len(v) == 1 for v in by_node.values())
    assert {label for v in by_node.values() for label in v} == {"node-a", "node-b"}
