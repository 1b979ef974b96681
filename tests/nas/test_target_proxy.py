"""A front point is one deployable network, measured reproducibly: real evaluators, real Ray, real SQLite.

The study here has a distinct target (half width) and proxy (quarter width), so every check below would fail if a
figure were taken from the wrong network.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from optuna.trial import TrialState

from evaluators import LatencyConfig, measure_latency
from nas.export import ExportOptions, export
from nas.record.repeats import seed_noise, stored
from nas.record.standing import named_standing
from nas.record.trials import front, stored_arch, trial_row, trial_seed
from nas.run.repeats import choose, run_repeats
from nas.run.search import run_search
from nas.study import Study
from nas.zoo import load_entry
from space import Arch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One local Ray for the module (2 CPUs, no dashboard), shut down at the end; never `ray stop`."""
    os.environ["NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))  # workers inherit it
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def study_file(folder: Path, **over: object) -> Study:
    """Digits at 8 px; the target is the architecture at half width, the proxy at a quarter, trained 4 epochs."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": "tp", "seed": 0, "space": "small", "objectives": ["accuracy", "latency_ms"],
            "named": ["mobilenet_v2_050"], "sampler": {"type": "random", "seed": 0},
            "evaluator": {"data": {"name": "digits", "limit_train": 384, "limit_val": 96},
                          "target": {"width_mult": 0.5, "resolution": 8},
                          "proxy": {"width_mult": 0.25, "resolution": 8},
                          "train": {"epochs": 4, "batch_size": 32, "optimizer": "adamw", "lr": 0.005},
                          "latency": {"max_seconds": 0.3, "min_runs": 5, "max_attempts": 2}},
            "budget": {"trials": 3}, "early_stopping": "off", "concurrency": 1}
    data.update(over)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Study.load(path)


def by_hash(ostudy: optuna.Study) -> dict[str, float]:
    """Accuracy of each evaluated architecture."""
    return {t.user_attrs["hash"]: t.user_attrs["accuracy"] for t in ostudy.trials
            if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs}


@pytest.fixture(scope="module")
def searched(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, optuna.Study]:
    """One finished search of the study."""
    study = study_file(tmp_path_factory.mktemp("first"))
    run_search(study, log=lambda line: None)
    return study, optuna.load_study(study_name="tp", storage=study.storage)


def test_trials_are_seeded_and_reproducible(searched: tuple[Study, optuna.Study], tmp_path: Path) -> None:
    study, first = searched
    again = study_file(tmp_path / "second")
    run_search(again, log=lambda line: None)
    second = optuna.load_study(study_name="tp", storage=again.storage)
    a, b = by_hash(first), by_hash(second)
    named = next(t for t in first.trials if t.user_attrs.get("named") == "mobilenet_v2_050")
    assert named.user_attrs["hash"] in a and named.user_attrs["hash"] in b
    shared = set(a) & set(b)
    assert shared and all(a[h] == b[h] for h in shared)  # the same architecture trains to the same accuracy
    assert named.user_attrs["seed"] == trial_seed(0, named.user_attrs["hash"], 0) and named.user_attrs["repeat"] == 0

    # Another seed gives another, stored value; running again trains nothing more.
    picked = choose(study, first, ["named"])
    assert [t.number for t in picked] == [named.number]
    assert run_repeats(study, first, picked, 1, log=lambda line: None) == 1
    assert run_repeats(study, first, picked, 1, log=lambda line: None) == 0
    record = stored(optuna.load_study(study_name="tp", storage=study.storage))[named.user_attrs["hash"]][1]
    assert record["seed"] == trial_seed(0, named.user_attrs["hash"], 1) != named.user_attrs["seed"]
    assert record["accuracy"] != named.user_attrs["accuracy"]
    reloaded = optuna.load_study(study_name="tp", storage=study.storage)
    noise = seed_noise(reloaded)
    assert noise is not None and noise[0] > 0 and noise[1] == 1
    row = trial_row(reloaded.trials[named.number], study.metric_names, stored(reloaded))
    assert row["± seeds"].endswith("(n=2)")
    assert row["accuracy"] == pytest.approx((record["accuracy"] + named.user_attrs["accuracy"]) / 2)


def test_export_writes_the_network_of_the_front(searched: tuple[Study, optuna.Study], tmp_path: Path) -> None:
    study, ostudy = searched
    best = front(ostudy)
    assert best
    picks = [(t, f"tp_t{t.number}") for t in best]
    paths = export(study, ostudy, picks, ExportOptions(root=tmp_path / "zoo"), log=lambda line: None)
    for (t, _), path in zip(picks, paths):
        entry = load_entry(path)
        cfg = entry.config
        # The exported network is the trial's target: same architecture, params and MACs as recorded on the front.
        assert cfg["network"] == "target" and cfg["width_mult"] == 0.5 and cfg["input_size"][1:] == [8, 8]
        assert Arch.load(path / "arch.yaml").hash == t.user_attrs["target_hash"]
        assert cfg["params"] == t.user_attrs["params"] and cfg["macs"] == t.user_attrs["macs"]
        # Its latency, measured again (no cache) with the study's target settings, agrees within the spread.
        settings = LatencyConfig(**{**study.evaluator.latency, "max_seconds": 1.0})
        again = measure_latency(Arch.load(path / "arch.yaml"), settings, num_classes=10, in_chans=1, cache=None)
        recorded, iqr = t.user_attrs["latency_ms"], t.user_attrs["latency_iqr_ms"]
        assert abs(again.median_ms - recorded) <= 2 * (iqr + again.iqr_ms) + 0.25 * recorded
        card = (path / "README.md").read_text()
        assert "**target** network (target ×0.5 @8px)" in card and "accuracy (proxy ×0.25 @8px, 4 ep)" in card


def test_named_point_gets_the_small_input_adaptation(searched: tuple[Study, optuna.Study]) -> None:
    study, ostudy = searched
    named = next(t for t in ostudy.trials if t.user_attrs.get("named") == "mobilenet_v2_050")
    assert named.user_attrs["adapted"] == "small-input strides"
    assert "stem stride 2→1" in named.user_attrs["adaptation"]
    assert Arch.from_yaml(stored_arch(named)).total_stride <= 4  # 8 px input, last map >= 2 px
    rows = named_standing(ostudy, study)
    assert rows[0]["network"] == "mobilenet_v2_050 (small-input strides)"


def test_resume_enqueues_new_named_points(local_ray: None, tmp_path: Path) -> None:
    fast = {"train": {"epochs": 1, "batch_size": 32}, "data": {"name": "digits", "limit_train": 64, "limit_val": 32},
            "proxy": {"width_mult": 0.25, "resolution": 8}, "target": {"width_mult": 0.25, "resolution": 8},
            "latency": {"max_seconds": 0.1, "min_runs": 3, "max_attempts": 1}}
    study = study_file(tmp_path, budget={"trials": 1}, evaluator=fast)
    run_search(study, log=lambda line: None)
    more = study_file(tmp_path, budget={"trials": 2}, evaluator=fast, named=["mobilenet_v2_050", "ghostnet_050"])
    lines: list[str] = []
    run_search(more, log=lines.append)
    trials = optuna.load_study(study_name="tp", storage=more.storage).trials
    assert [t.user_attrs.get("named") for t in trials] == ["mobilenet_v2_050", "ghostnet_050"]
    assert any("seeded 1 named point(s)" in line and "ghostnet_050" in line for line in lines)


def test_loaded_latency_is_remeasured_and_flagged(local_ray: None, tmp_path: Path) -> None:
    # A load threshold below any real load: every measurement counts as loaded, so the trial re-measures it after
    # training and, still loaded, carries the flag into every table instead of passing as a quiet measurement.
    fast = {"train": {"epochs": 1, "batch_size": 32}, "data": {"name": "digits", "limit_train": 64, "limit_val": 32},
            "proxy": {"width_mult": 0.25, "resolution": 8}, "target": {"width_mult": 0.25, "resolution": 8},
            "latency": {"max_seconds": 0.1, "min_runs": 3, "max_attempts": 1, "cache": None}}
    study = study_file(tmp_path, budget={"trials": 1}, evaluator=fast)
    # A study file may not say it (the schema wants a threshold >= 0); the test sets it on the validated study.
    latency = {**study.evaluator.latency, "load_threshold": -1.0}
    study = dataclasses.replace(study, evaluator=dataclasses.replace(study.evaluator, latency=latency))
    run_search(study, log=lambda line: None)
    t = optuna.load_study(study_name="tp", storage=study.storage).trials[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs["latency_loaded"] is True and t.user_attrs["latency_remeasured"] is True
    assert trial_row(t, study.metric_names)["latency note"] == "measured under load"


def test_fidelity_is_measured_stored_and_resumed(searched: tuple[Study, optuna.Study], tmp_path: Path) -> None:
    from nas.record.fidelity import high_fidelity, latest, stored_runs
    from nas.run.fidelity import measure
    from nas.views.report import write_report

    study, ostudy = searched
    hf = high_fidelity(study, epochs=1)
    assert (hf.width_mult, hf.resolution) == (0.5, 8)  # the target network, by default
    lines: list[str] = []
    first = measure(study, ostudy, k=3, seeds=1, hf=hf, log=lines.append)
    assert first["k"] >= 2 and first["seeds"] == 1 and "ranks these architectures" in first["verdict"]
    runs = stored_runs(optuna.load_study(study_name="tp", storage=study.storage), hf)
    assert len(runs) == first["k"] and all(set(r) == {0} for r in runs.values())
    # A second seed trains only what is missing; what was stored stays as it was.
    lines.clear()
    second = measure(study, ostudy, k=3, seeds=2, hf=hf, log=lines.append)
    trained = [line for line in lines if "high fidelity seed" in line]
    assert trained and all("seed 1" in line for line in trained)
    again = stored_runs(optuna.load_study(study_name="tp", storage=study.storage), hf)
    assert all(again[h][0] == runs[h][0] for h in runs)
    assert second["proxy_noise"]["seeds"] == 2 and len(second["high_acc"][0]) == 2
    assert latest(optuna.load_study(study_name="tp", storage=study.storage))["seeds"] == 2
    # The report shows it: a section with the verdict, and the scatter.
    report = write_report(study, tmp_path / "report")
    text = report.summary.read_text()
    assert "## Proxy fidelity" in text and second["verdict"] in text
    assert (tmp_path / "report" / "fidelity.png").stat().st_size > 10_000
