"""`nas dashboard` serves a study's storage on loopback: objectives, metric names and per-trial architectures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nas.search import Recorder, open_study, storage_of
from nas.study import Study

pytestmark = pytest.mark.slow


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_study(tmp_path: Path) -> None:
    path = tmp_path / "dash.yaml"
    path.write_text(yaml.safe_dump({"space": "small", "budget": {"trials": 1},
                                    "constraints": {"latency_ms": {"max": 2.0}}}))
    study = Study.load(path)
    storage = storage_of(study)
    ostudy = open_study(study, storage)
    rec = Recorder(ostudy, study, storage)
    for accuracy, latency in ((0.9, 1.5), (0.95, 3.0)):  # the second violates the latency constraint
        trial = ostudy.ask()
        arch = study.space.sample(trial)
        rec.finish(trial.number, TrialState.COMPLETE, [accuracy, latency],
                   {"arch": arch.to_yaml(), "hash": arch.hash, "accuracy": accuracy, "latency_ms": latency})

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                studies = get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.3)
        [summary] = [s for s in studies if s["study_name"] == "dash"]
        assert summary["directions"] == ["maximize", "minimize"]
        detail = get(f"{base}/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == ["accuracy", "latency_ms"]
        first, second = detail["trials"]
        attrs = {a["key"]: a["value"] for a in first["user_attrs"]}
        assert attrs["hash"] and "stages:" in attrs["arch"]
        assert first["constraints"][0] < 0 < second["constraints"][0]  # the dashboard can grey out the infeasible
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert optuna.load_study(study_name="dash", storage=study.storage).best_trials[0].number == 0
