"""Resume: `nas search` stopped by SIGINT, then killed with SIGKILL, then run to the end loses no completed trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

BUDGET = 8
STUDY = {
    "name": "resume", "space": "small", "objectives": ["accuracy", "latency_ms"],
    "evaluator": {"data": {"name": "digits", "resolution": 8, "limit_train": 128, "limit_val": 64},
                  "proxy": {"width_mult": 0.25}, "train": {"epochs": 2, "batch_size": 32},
                  "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}},
    "early_stopping": "off", "budget": {"trials": BUDGET}, "sampler": {"type": "tpe", "seed": 1, "startup": 4},
}


def start(path: Path, env: dict) -> subprocess.Popen:
    """`nas search` in a child process."""
    return subprocess.Popen([sys.executable, "-m", "nas.cli", "search", str(path), "--status-every", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as stored (empty before the study exists)."""
    storage = f"sqlite:///{path.with_suffix('.db')}"
    try:
        return optuna.load_study(study_name="resume", storage=storage).trials
    except KeyError:
        return []


def wait_until(path: Path, proc: subprocess.Popen, *, complete: int, timeout: float = 120) -> None:
    """Poll the storage until `complete` trials are COMPLETE and one is RUNNING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        ts = trials(path)
        if sum(t.state == TrialState.COMPLETE for t in ts) >= complete and any(
                t.state == TrialState.RUNNING for t in ts):
            return
        time.sleep(0.3)
    raise AssertionError(f"no progress within {timeout}s")


def descendants(pid: int) -> list[int]:
    """PIDs of every process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_resume_after_sigint_and_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}

    # Ctrl-C: the driver stops its trials, marks them failed, re-queues them, and exits 130.
    proc = start(path, env)
    wait_until(path, proc, complete=1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: run the same command again to resume" in out
    after_int = trials(path)
    assert not [t for t in after_int if t.state == TrialState.RUNNING]
    interrupted = [t for t in after_int if t.user_attrs.get("interrupted")]
    waiting = [t for t in after_int if t.state == TrialState.WAITING]
    assert interrupted and sorted(t.user_attrs["retry_of"] for t in waiting) == [t.number for t in interrupted]
    kept = {t.number: t.values for t in after_int if t.state == TrialState.COMPLETE}

    # kill -9 of the driver: its trials are left RUNNING in the storage.
    proc = start(path, env)
    wait_until(path, proc, complete=len(kept) + 1)
    orphans = descendants(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    for pid in orphans:  # the killed driver's local Ray processes; each was started by this test's child
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    after_kill = trials(path)
    assert [t for t in after_kill if t.state == TrialState.RUNNING]
    kept.update({t.number: t.values for t in after_kill if t.state == TrialState.COMPLETE})

    # The same command again: stale trials failed and re-run, completed ones kept, the budget counts what is done.
    proc = start(path, env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "resuming:" in out and "Pareto front of 'resume'" in out
    final = trials(path)
    assert not [t for t in final if not t.state.is_finished()]
    assert sum(not t.user_attrs.get("interrupted") for t in final) == BUDGET
    for number, values in kept.items():
        assert final[number].state == TrialState.COMPLETE and final[number].values == values
    retried = {t.user_attrs["retry_of"] for t in final if "retry_of" in t.user_attrs}
    assert retried and not retried & set(kept), "a completed trial was run again"
    for t in final:
        if t.user_attrs.get("interrupted"):
            assert t.state == TrialState.FAIL and t.number in retried
