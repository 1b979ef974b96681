"""`nas dashboard` serves a study's storage on loopback: objectives, metric names, per-trial architectures and notes.

The second test reads optuna-dashboard's own HTTP API (a real server on a real SQLite study recorded through the
engine's searcher) the way its pages do: what a practitioner choosing a network sees.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nas.record.repeats import store_mean
from nas.record.store import NAMED_PARAM, Recorder, open_study, storage_of
from nas.record.trials import arch_attr, stored_arch
from nas.study import Study
from nas.views.notes import refresh_arch_notes, write_learning_curves, write_study_note
from tests.nas.views.test_report import VAL_IMAGES, Outcome, Recording, filled

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


@contextlib.contextmanager
def dashboard(study_file: Path) -> Iterator[str]:
    """`nas dashboard STUDY` on a free loopback port, serving; yields its base URL and stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", str(study_file), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                get(f"{base}/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
                   {"arch": arch_attr(arch), "hash": arch.hash, "accuracy": accuracy, "latency_ms": latency})

    with dashboard(path) as base:
        [summary] = [s for s in get(f"{base}/api/studies")["study_summaries"] if s["study_name"] == "dash"]
        assert summary["directions"] == ["maximize", "minimize"]
        detail = get(f"{base}/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == study.metric_labels  # which network and fidelity each objective is of
        first, second = detail["trials"]
        attrs = {a["key"]: a["value"] for a in first["user_attrs"]}
        assert attrs["hash"] and "arch" not in attrs  # a system attribute: see the second test
        assert first["constraints"][0] < 0 < second["constraints"][0]  # the dashboard can grey out the infeasible
    assert optuna.load_study(study_name="dash", storage=study.storage).best_trials[0].number == 0


def test_dashboard_is_a_place_to_choose(tmp_path: Path) -> None:
    rec, n = filled(tmp_path, "choose")
    study, ostudy = rec.study, rec.ostudy
    best = ostudy.trials[n["best"]]
    # The sampler proposes the best architecture again: its result is reused (a duplicate), not measured again.
    ostudy.enqueue_trial(best.params)
    again = Recording(study)
    again.add(Outcome(accuracy=0.5, latency_ms=0.35))
    [dup] = [t for t in ostudy.get_trials() if t.user_attrs.get("duplicate_of") == best.number]
    # `nas repeat` stores two more seeds of the best architecture, makes their mean its accuracy (the Optuna value too)
    # and rewrites its trials' notes; the search's end writes the study note and the learning curves.
    for k, acc in ((1, 0.88), (2, 0.86)):
        ostudy.set_user_attr(f"repeat:{best.user_attrs['hash']}:{k}", {"accuracy": acc, "seed": 7 + k})
    assert store_mean(ostudy, study, best.user_attrs["hash"]) == [best.number, dup.number]
    assert refresh_arch_notes(ostudy, study, best.user_attrs["hash"]) == 2  # the trial and its duplicate
    write_study_note(ostudy, study)
    write_learning_curves(ostudy)

    with dashboard(Path(study.source)) as base:
        [summary] = [s for s in get(f"{base}/api/studies")["study_summaries"] if s["study_name"] == "choose"]
        detail = get(f"{base}/api/studies/{summary['study_id']}")
    trials = {t["number"]: t for t in detail["trials"]}
    attrs = {number: {a["key"]: a["value"] for a in t["user_attrs"]} for number, t in trials.items()}

    # Only measured values are values: the untrained infeasible trial has none (no 0.0 accuracy), nor has a pruned one.
    untrained = trials[n["slow"]]
    assert untrained["state"] == "Pruned" and untrained.get("values") is None
    assert "accuracy" not in attrs[n["slow"]] and attrs[n["slow"]]["status"] == "infeasible"
    assert all(t["values"][0] > 0.0 for t in trials.values() if t.get("values"))

    # Each architecture once among the best trials: the duplicate is stored PRUNED, its original's figures attributes.
    hashes = [{a["key"]: a["value"] for a in t["user_attrs"]}["hash"] for t in detail["best_trials"]]
    assert len(hashes) == len(set(hashes)) and best.number in {t["number"] for t in detail["best_trials"]}
    assert trials[dup.number]["state"] == "Pruned" and attrs[dup.number]["status"] == "duplicate"
    assert attrs[dup.number]["accuracy_seed0"] == "0.9" and attrs[dup.number]["duplicate_of"] == str(best.number)

    # The plotted value is the reported accuracy: the seed mean, as in the note; the search's seed is kept apart.
    assert trials[best.number]["values"][0] == pytest.approx(0.88)
    assert float(attrs[best.number]["accuracy"]) == pytest.approx(0.88) and attrs[best.number]["seeds"] == "3"
    assert attrs[best.number]["accuracy_seed0"] == "0.9"
    [plotted] = [t for t in detail["best_trials"] if t["number"] == best.number]
    assert plotted["values"][0] == pytest.approx(0.88)
    reloaded = optuna.load_study(study_name="choose", storage=study.storage)  # a fresh reader agrees
    assert reloaded.trials[best.number].values[0] == pytest.approx(0.88) == ostudy.trials[best.number].values[0]

    # Named networks are identifiable: a parameter of their own (the trial's parameters, the plots' hover text).
    for name in ("resnet18", "mobilenet_v2"):
        params = {p["name"]: p["param_external_value"] for p in trials[n[name]]["params"]}
        assert params[NAMED_PARAM + name] == name and attrs[n[name]]["named"] == name
    assert not any(p["name"].startswith(NAMED_PARAM) for p in trials[n["best"]]["params"])

    # Learning curves: every trained trial's validation accuracy per epoch as intermediate values, and a graph of them.
    curve = [(v["step"], v["value"]) for v in trials[best.number]["intermediate_values"]]
    assert curve == [(1, pytest.approx(0.72)), (2, pytest.approx(0.9))]
    assert [v["step"] for v in trials[n["pruned"]]["intermediate_values"]] == [1]  # stopped after epoch 1
    assert trials[n["slow"]]["intermediate_values"] == []  # never trained
    [graph] = [g for g in detail["plotly_graph_objects"] if g["id"] == "learning-curves"]
    traces = {tr["name"]: tr for tr in json.loads(graph["graph_object"])["data"]}
    assert traces[f"#{best.number}"]["y"] == [pytest.approx(0.72), pytest.approx(0.9)]
    assert any(name.startswith(f"#{n['resnet18']} resnet18") for name in traces)
    assert traces[f"#{n['pruned']} (ASHA stop)"]["line"]["dash"] == "dot"

    # The study note says what PRUNED means here, with the counts of each kind.
    study_note = detail["note"]["body"]
    assert ("**PRUNED** (3 trial(s)): 1 stopped early by ASHA" in study_note and "1 infeasible and never trained"
            in study_note and "1 duplicate(s)" in study_note)
    assert "`accuracy_seed0`" in study_note and f"`{NAMED_PARAM}<name>`" in study_note

    # No bulky user attribute (the Smart Selection table and the trial page stay one line per trial and attribute):
    # the architecture and the per-epoch history are system attributes, shown in the note.
    for number, a in attrs.items():
        assert all("\n" not in str(v) and len(str(v)) <= 80 for v in a.values()), (number, a)
        assert "history" not in a and "arch" not in a
    assert all(stored_arch(t) for t in ostudy.trials if t.state.is_finished() and t.number != n["failed"])

    # Every finished trial carries a note saying what its figures are of.
    acc_label, lat_label = study.metric_label("accuracy"), study.metric_label("latency_ms")
    for number, t in trials.items():
        if t["state"] == "Running":
            continue
        body = t["note"]["body"]
        assert body.startswith(f"## Trial {number}"), (number, body)
        if "latency_ms" in attrs[number]:
            assert lat_label in body and study.evaluator.describe_target() in body and "ms per batch" in body
            assert f"device fingerprint: `{attrs[number]['fingerprint']}`" in body
        if stored_arch(ostudy.trials[number]):
            assert "| stage | block | depth | width | stride |" in body
    front = trials[n["best"]]["note"]["body"]
    assert acc_label in front and study.evaluator.describe_proxy() in front
    assert f"{VAL_IMAGES} validation images (1 validation image = {100 / VAL_IMAGES:.3g} %)" in front
    assert "0.8800 ± 0.0200 (3 seeds)" in front and "| 2 | 9 | 0.8600 | `nas repeat` |" in front
    assert "Validation accuracy per epoch: 0.7200, 0.9000" in front
    assert "the same architecture as trial" in trials[dup.number]["note"]["body"]
    assert "not measured (never trained)" in trials[n["slow"]]["note"]["body"]
    assert "accuracy when stopped" in trials[n["pruned"]]["note"]["body"]
    assert "boom" in trials[n["failed"]]["note"]["body"]
    # The study's own note names the target and the proxy.
    assert study.evaluator.describe_target() in detail["note"]["body"]
    assert study.evaluator.describe_proxy() in detail["note"]["body"]
