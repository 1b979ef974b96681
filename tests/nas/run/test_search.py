"""The engine with a real local Ray and a real SQLite study: seeding, ASHA, constraints, failures, duplicates.

Most tests plug in `toy`, a trial function whose metrics are a deterministic function of the architecture (so the
engine's bookkeeping, not proxy training, is what is exercised); one runs the real evaluators end to end.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from optuna.trial import TrialState

from nas.record.standing import named_standing
from nas.record.trials import counts_toward_budget, front, stored_arch
from nas.run.search import run_search
from nas.run.searcher import MAX_IDLE_PROPOSALS
from nas.run.trial import Job, Reporter
from nas.study import Study
from nas.views.standing import standing_text

pytestmark = pytest.mark.slow

SPACE = {  # about half of the bottleneck stages are invalid: mid width 4 or 8 is not divisible by 3 groups
    "stem": {"type": "conv", "width": [16, 24, 32], "conv": {"kernel": 3, "stride": 1}},
    "stages": {"count": [1, 2], "block": ["basic", "bottleneck"], "depth": 1,
               "width": [16, 24, 32, 48], "stride": 2, "basic": {"kernel": [3, 5]},
               "bottleneck": {"bot_mul": [0.25], "groups": [3]}},
    "head": {"type": "classifier"},
}


def inline(name: str, stem: int, width: int = 16) -> dict:
    """A named point of SPACE."""
    return {"name": name, "stem": {"type": "conv", "width": stem, "kernel": 3, "stride": 1},
            "stages": [{"block": "basic", "depth": 1, "width": width, "stride": 2}], "head": {"type": "classifier"}}


def toy(arch, job: Job, report: Reporter) -> None:
    """Real cost, made-up latency and accuracy; the named points seed_raises, seed_nan and seed_crashes misbehave."""
    from evaluators import measure_cost

    cost = measure_cost(arch, input_size=16, num_classes=10)
    report.measured({"params": cost.params, "macs": cost.macs, "latency_ms": cost.macs / 1e6})
    if arch.name == "seed_raises":
        raise RuntimeError("boom")
    if arch.name == "seed_crashes":
        os._exit(3)  # the worker process dies: Ray Tune sees an error, not a report
    quality = 0.1 + 0.8 * (sum(s.width for s in arch.stages) % 7) / 6
    for epoch in range(1, job.epochs + 1):
        time.sleep(0.05)
        report.epoch(epoch, float("nan") if arch.name == "seed_nan" else quality * epoch / job.epochs)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One local Ray for the module (2 CPUs, no dashboard), shut down at the end; never `ray stop`."""
    os.environ["NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))  # workers inherit it
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def study_file(tmp_path: Path, **data: object) -> Study:
    """A study in tmp_path: SPACE, accuracy vs latency, 4 epochs with ASHA, the given overrides."""
    base = {"name": "t", "space": SPACE, "objectives": ["accuracy", "latency_ms"],
            "evaluator": {"data": {"name": "digits", "resolution": 16}, "train": {"epochs": 4}},
            "early_stopping": {"grace_period": 1, "reduction_factor": 2}, "budget": {"trials": 12},
            "sampler": {"type": "random", "seed": 0}}
    base.update(data)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return Study.load(path)


def test_seeds_pruning_constraints_and_failures(local_ray: None, tmp_path: Path) -> None:
    named = [inline("seed_ok", 16, 48), inline("seed_raises", 24), inline("seed_nan", 32), "resnet18",
             inline("seed_crashes", 20), inline("seed_low", 16, 16)]
    # One trial at a time, so ASHA's decisions (and the test) do not depend on which of two trials reports first.
    study = study_file(tmp_path, named=named, constraints={"params": {"max": 200_000}}, budget={"trials": 16},
                       concurrency=1)
    lines: list[str] = []
    out = run_search(study, evaluate=toy, log=lines.append)
    assert not out.interrupted and out.ran == 16
    ostudy = optuna.load_study(study_name="t", storage=study.storage)
    trials = ostudy.trials
    assert not [t for t in trials if not t.state.is_finished()]
    # The budget counts evaluations: refused invalid proposals and reused duplicates come on top of the 16.
    invalid = [t for t in trials if t.user_attrs.get("invalid")]
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]  # re-queued, so run again
    assert invalid and len(trials) == 16 + len(invalid) + len(duplicates) + len(interrupted)
    assert sum(counts_toward_budget(t) for t in trials) == 16
    assert ostudy.user_attrs["metrics"] == ["accuracy", "latency_ms"]
    assert ostudy.metric_names == ["accuracy (target, 4 ep)", "latency_ms (target ×1 @16px, cpu b1 t1 eager)"]

    # The named points are the first trials, started before any sampled one.
    assert [t.user_attrs.get("named") for t in trials[:6]] == ["seed_ok", "seed_raises", "seed_nan", "resnet18",
                                                               "seed_crashes", "seed_low"]
    assert [t.number for t in sorted(trials, key=lambda t: t.datetime_start)][:6] == list(range(6))
    ok, raises, nan, resnet = trials[:4]
    assert ok.state == TrialState.COMPLETE and ok.user_attrs["feasible"] and "basic" in stored_arch(ok)
    assert raises.state == TrialState.FAIL and raises.user_attrs["fail_reason"] == "RuntimeError: boom"
    assert nan.state == TrialState.FAIL and nan.user_attrs["fail_reason"] == "non-finite metric: accuracy is nan"
    # Outside the space: evaluated from its stored architecture (its only parameter names it for the dashboard); too
    # many parameters: recorded, not trained.
    assert resnet.params == {"named:resnet18": "resnet18"} and resnet.user_attrs["in_space"] is False
    assert "name: resnet18" in stored_arch(resnet)
    # Never trained: stored PRUNED with what was measured, and no invented accuracy anywhere in the storage.
    assert resnet.state == TrialState.PRUNED and resnet.user_attrs["feasible"] is False and resnet.values is None
    assert resnet.user_attrs["status"] == "infeasible" and "accuracy" not in resnet.user_attrs
    assert resnet.user_attrs["epochs"] == 0 and resnet.user_attrs["params"] > 200_000
    assert resnet.user_attrs["adapted"] == "small-input stem"  # the same input adaptation as every network
    untrained = [t for t in trials if t.user_attrs.get("trained") is False]
    assert untrained and all(t.values is None and "accuracy" not in t.user_attrs for t in untrained)
    # The worker died: re-queued once (Ray cannot tell a crash from a kill), failed with Ray's error when it died
    # again, and the search went on.
    crashed = trials[4]
    assert crashed.state == TrialState.FAIL and crashed.user_attrs["interrupted"] and crashed.user_attrs["lost_worker"]
    again = [t for t in trials if t.user_attrs.get("retry_of") == crashed.number]
    assert len(again) == 1 and again[0].state == TrialState.FAIL and again[0].user_attrs["deterministic"] is False
    assert again[0].user_attrs["fail_reason"].startswith("worker error: ")

    best = {t.number for t in front(ostudy)}
    assert best and best <= {t.number for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]}
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.user_attrs.get("status") == "pruned"]
    assert pruned and all(not t.user_attrs.get("named") for t in pruned)
    low = trials[5]  # a baseline is trained for the whole budget, however poor its first epochs
    assert low.state == TrialState.COMPLETE and low.user_attrs["epochs"] == 4 and low.values[0] < 0.4
    for t in pruned:  # stopped early: partial accuracy kept as an attribute, never on the front
        assert t.number not in best and t.values is None and t.user_attrs["epochs"] < 4
    assert invalid and all(t.state == TrialState.FAIL and "divisible by groups" in t.user_attrs["fail_reason"]
                           for t in invalid)
    for t in trials:  # every trial that reported carries its architecture, identity and measurements
        if "hash" in t.user_attrs and t.number not in (crashed.number, again[0].number):
            assert {"hash", "params", "macs", "latency_ms"} <= set(t.user_attrs) and stored_arch(t)

    standing = {row["network"]: standing_text(row) for row in named_standing(ostudy, study)}  # data, then words
    assert standing["resnet18 (small-input stem)"].startswith("infeasible: params")
    assert standing["seed_raises"].startswith("failed")
    assert any(line.startswith("  [status] 16 evaluated") and f"{len(invalid)} invalid proposal(s)" in line
               for line in lines)


def test_each_architecture_is_evaluated_once(local_ray: None, tmp_path: Path) -> None:
    space = {**SPACE, "stem": {"type": "conv", "width": [16, 20], "conv": {"kernel": 3, "stride": 1}},
             "stages": {"count": 1, "block": "basic", "depth": 1, "width": 16, "stride": 2}}
    study = study_file(tmp_path, space=space, budget={"trials": 3}, early_stopping="off")
    out = run_search(study, evaluate=toy, log=lambda line: None)
    trials = optuna.load_study(study_name="t", storage=study.storage).trials
    assert all(t.state == TrialState.COMPLETE for t in trials if "duplicate_of" not in t.user_attrs)
    originals = [t for t in trials if "duplicate_of" not in t.user_attrs]
    # Two architectures in the space and a budget of three evaluations: both are evaluated once, the reused
    # duplicates do not count, and the search ends saying the space is exhausted instead of proposing forever.
    assert len(originals) == 2 and len(trials) == 2 + MAX_IDLE_PROPOSALS
    assert out.aborted and "the space looks exhausted" in out.aborted
    assert sorted(t.user_attrs["hash"] for t in originals) == sorted({t.user_attrs["hash"] for t in trials})
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            first = trials[t.user_attrs["duplicate_of"]]
            # Stored PRUNED with its original's figures as attributes: the dashboard lists each architecture once.
            assert t.state == TrialState.PRUNED and t.values is None and t.user_attrs["status"] == "duplicate"
            assert [t.user_attrs[m] for m in ("accuracy", "latency_ms")] == first.values
            assert t.user_attrs["hash"] == first.user_attrs["hash"]


def test_real_evaluators_end_to_end(local_ray: None, tmp_path: Path) -> None:
    study = study_file(tmp_path, space="small", named=["mobilenet_v2_050"], budget={"trials": 4},
                       constraints={"latency_ms": {"max": 50.0}},
                       evaluator={"data": {"name": "digits", "resolution": 8, "limit_train": 128, "limit_val": 64},
                                  "proxy": {"width_mult": 0.25}, "train": {"epochs": 2, "batch_size": 32},
                                  "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}})
    run_search(study, log=lambda line: None)
    ostudy = optuna.load_study(study_name="t", storage=study.storage)
    done = [t for t in ostudy.trials if t.state == TrialState.COMPLETE]
    assert len(ostudy.trials) == 4 and done and ostudy.trials[0].user_attrs["named"] == "mobilenet_v2_050"
    for t in done:
        attrs = t.user_attrs
        assert 0 <= t.values[0] <= 1 and t.values[1] == attrs["latency_ms"] > 0
        assert attrs["epochs"] == 2 and len(t.system_attrs["history"]) == 2 and attrs["fingerprint"] and attrs["node"]
        assert attrs["params"] > 0 and attrs["macs"] > 0 and t.system_attrs["constraints"][0] < 0
