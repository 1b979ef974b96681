"""The Ray that `nas search` starts on its own listens on the loopback interface only and runs no dashboard."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import ray
import yaml

from nas.run.search import run_search
from nas.run.trial import Job, Reporter
from nas.study import Study

pytestmark = pytest.mark.slow

SPACE = {"stem": {"type": "conv", "width": [8, 16], "conv": {"kernel": 3, "stride": 1}},
         "stages": {"count": 1, "block": "basic", "depth": 1, "width": [8, 16], "stride": 2},
         "head": {"type": "classifier"}}


def descendants(root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def _address(field: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian words of hex) as text."""
    hexip = field.split(":")[0]
    raw = bytes.fromhex(hexip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening(pids: set[int]) -> list[dict]:
    """Every TCP socket in LISTEN state owned by one of `pids`: pid, command, address, port."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in owner:  # 0A: LISTEN
                pid = owner[f[9]]
                out.append({"pid": pid, "command": Path(f"/proc/{pid}/comm").read_text().strip(),
                            "address": _address(f[1]), "port": int(f[1].split(":")[1], 16)})
    return out


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def probe(arch, job: Job, report: Reporter) -> None:
    """A trial that records the listening sockets of the driver's whole process tree while the search runs."""
    sockets = listening(descendants(int(os.environ["NAS_TEST_DRIVER_PID"])))
    Path(os.environ["NAS_TEST_SOCKETS"]).write_text(json.dumps(sockets))
    report.measured({"latency_ms": 1.0})
    report.epoch(1, 0.5)


def test_a_local_search_listens_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ray.is_initialized()  # the search starts its own Ray
    record = tmp_path / "sockets.json"
    monkeypatch.setenv("NAS_TEST_DRIVER_PID", str(os.getpid()))  # Ray's processes inherit the environment
    monkeypatch.setenv("NAS_TEST_SOCKETS", str(record))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "loop", "space": SPACE, "objectives": ["accuracy", "latency_ms"],
        "evaluator": {"data": {"name": "digits", "resolution": 16}, "train": {"epochs": 1}},
        "budget": {"trials": 1}, "sampler": {"type": "random", "seed": 0}, "concurrency": 1}))
    out = run_search(Study.load(path), evaluate=probe, log=lambda line: None)
    assert out.ran == 1 and not ray.is_initialized()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # this process's settings are restored

    sockets = json.loads(record.read_text())
    commands = {s["command"] for s in sockets}
    assert {"gcs_server", "raylet"} <= commands, sockets  # Ray's servers were seen while the search ran
    exposed = [s for s in sockets if not is_loopback(s["address"])]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not [s for s in sockets if "dashboard" in s["command"].lower() or s["port"] == 8265], sockets
