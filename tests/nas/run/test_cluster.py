"""Distributed: a 2-node Ray cluster (ray.cluster_utils.Cluster) runs trials on both nodes; storage stays here."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from optuna.trial import TrialState
from ray.cluster_utils import Cluster

from nas.run.search import run_search
from nas.study import Study

pytestmark = pytest.mark.slow


def test_trials_run_on_both_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))  # the nodes' workers inherit it
    path = tmp_path / "two-nodes.yaml"
    path.write_text(yaml.safe_dump({
        "space": "small", "objectives": ["accuracy", "latency_ms"], "budget": {"trials": 4},
        "evaluator": {"data": {"name": "digits", "resolution": 8, "limit_train": 64, "limit_val": 32},
                      "proxy": {"width_mult": 0.25}, "train": {"epochs": 1, "batch_size": 32},
                      "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}},
        "resources": {"cpu": 1}, "sampler": {"type": "random", "seed": 0}}))
    study = Study.load(path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = run_search(study, address=cluster.address, log=lambda line: None)
        assert not ray.is_initialized()  # the engine disconnects from the cluster it joined
        assert out.ran == 4
    finally:
        ray.shutdown()
        cluster.shutdown()
    trials = optuna.load_study(study_name="two-nodes", storage=study.storage).trials
    ran = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 4 and len(ran) >= 2
    # One CPU per node and two trials at a time: the first two trials are placed one on each node.
    assert len({t.user_attrs["node"] for t in ran}) == 2
    assert all(t.user_attrs["fingerprint"] and t.user_attrs["latency_ms"] > 0 for t in ran)
    assert Path(study.storage[len("sqlite:///"):]).is_file() and os.path.dirname(study.source) == str(tmp_path)


def test_gpu_auto_is_resolved_per_cluster() -> None:
    """`resources: {gpu: auto}`: the calibrated share, else 1 / the default trials per GPU, none without GPUs."""
    from evaluators.packing import DEFAULT_TRIALS_PER_GPU
    from nas.run.cluster import calibrated_share, concurrency, with_gpu_share
    from nas.study import Study

    auto = Study.from_dict({"space": "small", "budget": {"trials": 1}, "resources": {"cpu": 1, "gpu": "auto"}},
                           source="auto.yaml")
    on_gpus = with_gpu_share(auto, {"CPU": 16, "GPU": 2})
    assert on_gpus.resources.gpu == 1 / DEFAULT_TRIALS_PER_GPU
    assert concurrency(on_gpus, {"CPU": 16, "GPU": 2}) == 2 * DEFAULT_TRIALS_PER_GPU
    assert with_gpu_share(auto, {"CPU": 16, "GPU": 2}, share=0.5).resources.gpu == 0.5
    assert with_gpu_share(auto, {"CPU": 4}).resources.gpu == 0.0
    fixed = Study.from_dict({"space": "small", "budget": {"trials": 1}, "resources": {"gpu": 1}}, source="f.yaml")
    assert with_gpu_share(fixed, {"CPU": 4, "GPU": 8}).resources.gpu == 1
    assert calibrated_share(auto, 0.5, print) == 0.5  # a stored calibration is reused, not measured again
    assert calibrated_share(fixed, None, print) is None
