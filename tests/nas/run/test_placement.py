"""Placement on declared GPUs (none exists here: Ray is told there are two) and the scope of latency's quiet lock.

`probe` stands in for the default evaluator: it places itself with `nas.run.quiet.for_trial`, as
`nas.run.trial.evaluate` does, trains nothing on a GPU (the study forces training to CPU) and runs real optimizer
steps inside its busy section, so the step hook is what pauses it. Four trials meet in a shared folder; one
measures "on its GPU" while the others step, and the step times show who paused.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import ray
import yaml

from nas.run.quiet import QuietLock, gpu_key, physical_gpu
from nas.run.search import run_search
from nas.run.trial import Job, Reporter
from nas.study import Study
from space import Arch

WAIT = 120.0  # seconds a trial waits for the others before failing the test (a loaded machine starts workers slowly)


def _wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.01)


def probe(arch: Arch, job: Job, report: Reporter) -> None:
    """Place the trial, meet the other three, then measure (one of them) or step in a busy section (the others)."""
    import torch

    from nas.run import quiet

    folder = Path(os.environ["NAS_TEST_PLACEMENT"])
    me = uuid.uuid4().hex
    q = quiet.for_trial(job.threads, job.device, job.evaluator.latency)
    gpus = [str(g) for g in ray.get_gpu_ids()]
    info = {"id": me, "gpus": gpus, "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "latency_gpu": physical_gpu(job.evaluator.latency["device"]), "measure_scope": sorted(q.measure_scope),
            "busy_scope": sorted(q.placement.busy_scope()), "pinned": q.placement.pinned,
            "cores": list(q.placement.cores), "affinity": sorted(os.sched_getaffinity(0)),
            "cpu_scope": sorted(q.placement.measurement("cpu")[0])}
    (folder / f"{me}.placed").write_text(json.dumps(info))
    _wait_for(lambda: len(list(folder.glob("*.placed"))) == 4, "four concurrent trials")
    everyone = sorted((json.loads(p.read_text()) for p in folder.glob("*.placed")), key=lambda t: t["id"])
    measurer = everyone[0]
    others = [t["id"] for t in everyone if t["gpus"] != measurer["gpus"]]
    steps: list[float] = []
    if me == measurer["id"]:
        _wait_for(lambda: len(list(folder.glob("*.busy"))) == 3, "the others' busy sections")
        with q.quiet():
            start = time.monotonic()
            # The trials on the other GPU must keep training while this one measures (with a node-wide lock they
            # would be paused, and this wait would time out).
            _wait_for(lambda: all(_last_step(folder, t) > start for t in others), "steps on the other GPU")
            end = time.monotonic()
        (folder / "measured").write_text(json.dumps({"start": start, "end": end}))
    else:
        w = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1)
        with q.busy():
            (folder / f"{me}.busy").touch()
            while not (folder / "measured").exists():
                opt.zero_grad()
                (w * w).sum().backward()
                opt.step()  # the step pre-hook pauses here while a measurement of this GPU runs
                steps.append(time.monotonic())
                (folder / f"{me}.step.tmp").write_text(repr(steps[-1]))
                os.replace(folder / f"{me}.step.tmp", folder / f"{me}.step")
                time.sleep(0.005)
                if len(steps) > WAIT / 0.005:
                    raise TimeoutError("no measurement happened")
    (folder / f"{me}.steps").write_text(json.dumps(steps))
    report.measured({"params": 1.0, "macs": 1.0, "latency_ms": 1.0})
    report.epoch(1, 0.5)


def _last_step(folder: Path, trial: str) -> float:
    try:
        return float((folder / f"{trial}.step").read_text())
    except (OSError, ValueError):
        return 0.0


@pytest.mark.slow
def test_packed_trials_on_declared_gpus_and_the_quiet_scope(tmp_path: Path) -> None:
    folder = tmp_path / "meet"
    folder.mkdir()
    env = {"NAS_TEST_PLACEMENT": str(folder), "NAS_QUIET_DIR": str(tmp_path / "quiet"),
           "NAS_CACHE_DIR": str(tmp_path / "cache")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the workers inherit it
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({
        "name": "gpu", "space": "small", "objectives": ["accuracy", "latency_ms"], "budget": {"trials": 4},
        "sampler": {"type": "random", "seed": 0}, "early_stopping": "off", "resources": {"cpu": 1, "gpu": 0.5},
        "evaluator": {"train": {"epochs": 1, "device": "cpu"}, "latency": {"device": "cuda"}}}))
    study = Study.load(path)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines: list[str] = []
        out = run_search(study, evaluate=probe, log=lines.append)
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert out.ran == 4 and not out.interrupted and not [line for line in lines if "failed " in line], lines
    trials = {t["id"]: t for t in (json.loads(p.read_text()) for p in folder.glob("*.placed"))}

    # gpu: 0.5 packs two trials on each declared GPU; each trial sees its own GPU, and its measurement names it.
    assert Counter(t["gpus"][0] for t in trials.values() if len(t["gpus"]) == 1) == {"0": 2, "1": 2}
    assert all(t["cvd"] == t["gpus"][0] == t["latency_gpu"] for t in trials.values())
    assert all(t["measure_scope"] == [gpu_key(t["gpus"][0])] for t in trials.values())
    assert all(gpu_key(t["gpus"][0]) in t["busy_scope"] for t in trials.values())

    # Cores: trials that could claim one are pinned to it alone (two real cores here at most); a CPU measurement of
    # a pinned trial covers its own core, of an unpinned one every core.
    pinned = [t for t in trials.values() if t["pinned"]]
    assert pinned and len({c for t in pinned for c in t["cores"]}) == sum(len(t["cores"]) for t in pinned)
    assert all(t["affinity"] == t["cores"] == [int(k[3:]) for k in t["cpu_scope"]] for t in pinned)
    assert all(len(t["cpu_scope"]) == len(t["affinity"]) for t in trials.values() if not t["pinned"])

    # The measurement paused exactly the trial sharing its GPU: no step of it inside the measurement, steps of the
    # trials on the other GPU inside it (the measurement waited for them to step), and the sibling went on after.
    window = json.loads((folder / "measured").read_text())
    measurer = min(trials)
    steps = {i: json.loads((folder / f"{i}.steps").read_text()) for i in trials if i != measurer}
    sibling = [i for i in steps if trials[i]["gpus"] == trials[measurer]["gpus"]]
    assert len(sibling) == 1
    inside = {i: [s for s in st if window["start"] <= s <= window["end"]] for i, st in steps.items()}
    assert inside[sibling[0]] == [] and steps[sibling[0]][-1] > window["end"]
    assert all(inside[i] for i in steps if i != sibling[0])


def test_quiet_waits_only_for_overlapping_busy_sections(tmp_path: Path) -> None:
    lock = QuietLock(tmp_path)
    sections: dict[str, object] = {}
    ready, done = threading.Barrier(3), threading.Event()

    def trainer(name: str, scope: set[str], polls: bool) -> None:
        with lock.busy(scope) as busy:
            sections[name] = busy
            ready.wait()
            while not done.is_set():
                if polls:
                    busy.poll()  # what the optimizer step hook calls
                time.sleep(0.005)

    # The trainer on gpu1 never pauses: a measurement of gpu0 must not wait for it.
    threads = [threading.Thread(target=trainer, args=("gpu0", {"gpu0", "cpu0"}, True)),
               threading.Thread(target=trainer, args=("gpu1", {"gpu1", "cpu1"}, False))]
    for t in threads:
        t.start()
    ready.wait()
    seen: list[tuple[bool, bool]] = []

    def measure() -> None:
        with lock.quiet({"gpu0"}):
            seen.append((sections["gpu0"].inside, sections["gpu1"].inside))  # type: ignore[attr-defined]

    measuring = threading.Thread(target=measure)
    measuring.start()
    measuring.join(timeout=30)
    done.set()
    for t in threads:
        t.join(timeout=10)
    assert seen == [(False, True)]  # the gpu0 trainer was paused, the gpu1 trainer kept its section
    with lock.quiet():  # node-wide: passes once no section is left
        seen.append((False, False))
    assert len(seen) == 2
