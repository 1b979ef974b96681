"""Losing a worker, a node, or the driver's own Ray is not losing an architecture: real Ray processes killed by PID.

A trial whose worker or node dies is re-queued and run again (the search goes on); when the driver's own Ray dies
(its raylet), `nas search` ends with one line naming the cause and the command that resumes, and that command does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from optuna.trial import TrialState
from ray.cluster_utils import Cluster

from nas.run.search import run_search
from nas.run.trial import Job, Reporter
from nas.study import Study
from space import Arch

pytestmark = pytest.mark.slow
WAIT = 180.0


def steady(arch: Arch, job: Job, report: Reporter) -> None:
    """Made-up metrics, 0.25 s per epoch; the worker announces itself: <node id>.<pid>.<arch hash>."""
    folder = Path(os.environ["NAS_TEST_LOSS"])
    (folder / f"{ray.get_runtime_context().get_node_id()}.{os.getpid()}.{arch.hash}").touch()
    report.measured({"params": 1.0, "macs": 1.0, "latency_ms": 1.0})
    for epoch in range(1, job.epochs + 1):
        time.sleep(0.25)
        report.epoch(epoch, 0.1 + 0.01 * epoch)


def study_file(tmp_path: Path, name: str, epochs: int, trials: int) -> Path:
    """A random search of the small space with made-up metrics, two at a time, ASHA off."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "space": "small", "objectives": ["accuracy", "latency_ms"], "budget": {"trials": trials},
        "sampler": {"type": "random", "seed": 0}, "early_stopping": "off", "resources": {"cpu": 1},
        "evaluator": {"data": {"name": "digits"}, "target": {"width_mult": 0.25, "resolution": 8},
                      "proxy": {"width_mult": 0.25, "resolution": 8, "train_images": 64},
                      "train": {"epochs": epochs, "batch_size": 32},
                      "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}}}))
    return path


def _announced(folder: Path, node: str | None = None, not_node: str | None = None) -> tuple[str, int, str]:
    """The first (node, pid, hash) a trial announced (on `node`, or not on `not_node`)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for p in sorted(folder.iterdir()):
            n, pid, h = p.name.split(".")
            if (node is None or n == node) and (not_node is None or n != not_node):
                return n, int(pid), h
        time.sleep(0.05)
    raise TimeoutError("no trial announced itself")


def _check_retried(storage: str, name: str, lost_hash: str, ran: int) -> None:
    """The lost trial is stored interrupted (not failed) and its architecture was evaluated again, completely."""
    trials = optuna.load_study(study_name=name, storage=storage).trials
    lost = [t for t in trials if t.user_attrs.get("hash") == lost_hash and t.user_attrs.get("interrupted")]
    assert len(lost) == 1 and lost[0].user_attrs["lost_worker"], [(t.number, t.state, t.user_attrs) for t in trials]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].user_attrs["hash"] == lost_hash
    failed = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")]
    assert not failed, [t.user_attrs.get("fail_reason") for t in failed]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == ran


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A folder where trials announce themselves and private caches, set for this process and its Ray workers."""
    values = {"NAS_TEST_LOSS": str(tmp_path / "announce"), "NAS_CACHE_DIR": str(tmp_path / "cache")}
    Path(values["NAS_TEST_LOSS"]).mkdir()
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_a_killed_worker_requeues_its_trial(tmp_path: Path, env: dict[str, str]) -> None:
    study = Study.load(study_file(tmp_path, "worker", epochs=8, trials=4))
    folder = Path(env["NAS_TEST_LOSS"])
    killed: list[str] = []

    def kill_first_trial() -> None:
        _, pid, h = _announced(folder)
        os.kill(pid, signal.SIGKILL)
        killed.append(h)

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    killer = threading.Thread(target=kill_first_trial, daemon=True)
    killer.start()
    try:
        lines: list[str] = []
        out = run_search(study, evaluate=steady, log=lines.append)
    finally:
        ray.shutdown()
    killer.join(timeout=1)
    assert killed and out.ran == 4 and not out.interrupted and not out.aborted
    assert any("re-queued" in line and "worker was lost" in line for line in lines), lines
    _check_retried(study.storage, "worker", killed[0], ran=4)


def test_a_lost_node_requeues_its_trials_and_the_search_goes_on(tmp_path: Path, env: dict[str, str]) -> None:
    study = Study.load(study_file(tmp_path, "node", epochs=16, trials=3))
    folder = Path(env["NAS_TEST_LOSS"])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    killed: list[str] = []
    try:
        worker_node = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        head_id = cluster.head_node.node_id

        def kill_the_other_node() -> None:
            _, _, h = _announced(folder, not_node=head_id)
            raylet = worker_node.all_processes["raylet"][0].process.pid
            workers = descendants(raylet)  # the node goes down with everything on it, as when a machine fails
            os.kill(raylet, signal.SIGKILL)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.append(h)

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        killer = threading.Thread(target=kill_the_other_node, daemon=True)
        killer.start()
        out = run_search(study, address=cluster.address, evaluate=steady, log=lambda line: None)
        killer.join(timeout=1)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed and out.ran == 3 and not out.interrupted
    _check_retried(study.storage, "node", killed[0], ran=3)
    # Everything after the loss ran on the head node.
    assert {p.name.split(".")[0] for p in folder.iterdir()} == {head_id, worker_node.node_id}


def test_the_drivers_ray_gone_ends_in_one_line_and_resumes(tmp_path: Path, env: dict[str, str]) -> None:
    path = study_file(tmp_path, "driver", epochs=3, trials=3)
    storage = f"sqlite:///{tmp_path / 'driver.db'}"
    nas = [sys.executable, "-m", "nas.cli", "search", str(path), "--status-every", "600"]
    cwd = Path(__file__).resolve().parents[3]
    search = subprocess.Popen(nas, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ours: dict[int, str] = {}
    try:
        deadline = time.monotonic() + WAIT
        while not _running(storage, "driver"):
            assert search.poll() is None and time.monotonic() < deadline, search.communicate()
            time.sleep(0.2)
        ours = descendants(search.pid)  # the local Ray the search started
        raylet = [pid for pid, name in ours.items() if name == "raylet"]
        assert len(raylet) == 1, ours
        os.kill(raylet[0], signal.SIGKILL)
        out, err = search.communicate(timeout=WAIT)
    finally:
        if search.poll() is None:
            search.kill()
        for pid, name in ours.items():  # whatever of that Ray outlived it, by PID (never `ray stop`)
            if _name(pid) == name:
                os.kill(pid, signal.SIGKILL)
    last = err.strip().splitlines()[-1]
    assert search.returncode == 2, (out, err)
    assert last.startswith("nas: error: ") and "raylet" in last and "re-queued" in last, err
    resume = last.split("resume with: ")[1]
    assert resume == f"nas search {path}"
    again = subprocess.run([sys.executable, "-m", "nas.cli", *resume.split()[1:]], cwd=cwd, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="driver", storage=storage).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    assert not [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")]


def descendants(pid: int) -> dict[int, str]:
    """PID -> process name of every descendant of `pid` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out:
                out[child] = _name(child)
                frontier.append(child)
    return out


def _name(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def _running(storage: str, name: str) -> bool:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:  # not created yet
        return False
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
