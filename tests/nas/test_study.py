"""Study files: the shipped studies load, every mistake is a one-line error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli import main
from nas.record.store import open_study, storage_of
from nas.study import Constraint, Study
from space.errors import NasError, SpecError

STUDIES = Path(__file__).resolve().parents[2] / "studies"
MINIMAL = {"space": "small", "budget": {"trials": 4}}


def write(tmp_path: Path, data: dict | str, name: str = "s.yaml") -> Path:
    """A study file in tmp_path."""
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_studies_load(path: Path) -> None:
    study = Study.load(path)
    assert study.name == path.stem
    assert study.storage == f"sqlite:///{(STUDIES / f'{path.stem}.db').resolve()}"
    assert study.metric_names[:2] == ["accuracy", "latency_ms"]
    assert study.budget.trials or study.budget.minutes
    for arch in study.named:  # the seeds are real named points with stable identities
        assert arch.name and len(arch.hash) == 16


def test_defaults(tmp_path: Path) -> None:
    study = Study.load(write(tmp_path, MINIMAL, "mine.yaml"))
    assert study.name == "mine"
    assert study.directions == ["maximize", "minimize"]
    assert study.storage == f"sqlite:///{(tmp_path / 'mine.db').resolve()}"
    assert study.sampler.type == "tpe" and study.resources.cpu == 1 and study.address is None
    assert study.early_stopping is not None and study.trains


def test_relative_paths_are_relative_to_the_study(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    data = {**MINIMAL, "storage": "sqlite:///results/x.db", "evaluator": {"data": {"name": "cifar10",
                                                                                   "root": "../data"}}}
    study = Study.load(write(tmp_path / "sub", data))
    assert study.storage == f"sqlite:///{(tmp_path / 'sub' / 'results' / 'x.db').resolve()}"
    assert study.evaluator.data["root"] == str((tmp_path / "data").resolve())


def test_objectives_constraints_and_no_training(tmp_path: Path) -> None:
    data = {**MINIMAL, "objectives": {"synflow": "maximize", "params": "minimize"},
            "constraints": {"latency_ms": {"max": 2}}}
    study = Study.load(write(tmp_path, data))
    assert study.metric_names == ["synflow", "params"] and study.metrics() == {"synflow", "params", "latency_ms"}
    assert not study.trains and study.early_stopping is None  # nothing trained: nothing to stop early


def test_constraint_violation_is_relative() -> None:
    c = Constraint("latency_ms", max=2.0)
    assert c.violation(1.0) < 0 and c.violation(3.0) == pytest.approx(0.5)
    assert Constraint("accuracy", min=0.8).violation(0.4) == pytest.approx(0.5)
    assert Constraint("params", min=10, max=20).violation(15) < 0


@pytest.mark.parametrize("data, match", [
    ({**MINIMAL, "objectivs": ["accuracy"]}, r"s\.yaml: objectivs: unknown key; did you mean 'objectives'\?"),
    ({**MINIMAL, "objectives": ["acuracy"]}, r"objectives\[0\]: unknown metric 'acuracy'; did you mean 'accuracy'"),
    ({**MINIMAL, "constraints": {"latency_ms": {"maximum": 1}}}, r"constraints\.latency_ms\.maximum: unknown key"),
    ({**MINIMAL, "constraints": {"params": {"max": "big"}}}, r"constraints\.params\.max: expected a number"),
    ({"space": "small"}, r"budget: missing"),
    ({**MINIMAL, "budget": {"trials": 0}}, r"budget\.trials: expected an integer >= 1 or null, got 0"),
    ({**MINIMAL, "sampler": {"type": "cmaes"}}, r"sampler\.type: unknown sampler 'cmaes'"),
    ({**MINIMAL, "evaluator": {"train": {"epoch": 3}}}, r"evaluator\.train\.epoch: unknown key; did you mean"),
    ({**MINIMAL, "evaluator": {"train": {"lr": "fast"}}}, r"evaluator\.train\.lr: expected a number > 0, got 'fast'"),
        ({**MINIMAL, "evaluator": {"width_mult": 0.5}}, r"evaluator\.width_mult: moved; give evaluator\.proxy"),
        ({**MINIMAL, "evaluator": {"proxy": {"width_mult": 0}}}, r"evaluator\.proxy\.width_mult: expected a number >"),
        ({**MINIMAL, "evaluator": {"target": {"resolution": 2}}}, r"evaluator\.target\.resolution: expected an integ"),
        ({**MINIMAL, "evaluator": {"proxy": "cheap"}}, r"evaluator\.proxy: expected a mapping .* or `target`"),
        ({**MINIMAL, "evaluator": {"train": {"seed": 3}}}, r"evaluator\.train\.seed: .*top-level `seed:`"),
        ({**MINIMAL, "evaluator": {"adapt_input": {"min_feature": 0}}}, r"adapt_input\.min_feature: expected an"),
        ({**MINIMAL, "seed": -1}, r"seed: expected an integer >= 0, got -1"),
        ({**MINIMAL, "repeats": {"seeds": 0}}, r"repeats\.seeds: expected an integer from 1 to 100"),
        ({**MINIMAL, "repeats": {"of": ["frnt"]}}, r"repeats\.of\[0\]: unknown set 'frnt'; did you mean 'front'"),
    ({**MINIMAL, "named": ["resnet81"]}, r"named\[0\]: unknown model 'resnet81'; did you mean 'resnet18'"),
    ({**MINIMAL, "named": ["resnet18"], "sampler": "nsga2"}, r"named: named point 'resnet18' is not in the space"),
    ({**MINIMAL, "space": "smal"}, r"no such space file"),
    ({**MINIMAL, "resources": {"gpu": 1.5}}, r"resources\.gpu: expected a fraction of one GPU"),
    ({**MINIMAL, "storage": "results.db"}, r"storage: expected a database URL"),
    ({**MINIMAL, "concurrency": 0}, r"concurrency: expected auto or a positive integer"),
])
def test_malformed_studies_are_one_line_errors(tmp_path: Path, data: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        Study.load(write(tmp_path, data))
    assert "\n" not in str(info.value)


def test_malformed_study_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, "space: small\nbudget: {trials: 3\n")
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: ") and "malformed YAML" in err
    assert main(["search", str(tmp_path / "missing.yaml")]) == 2
    assert "no such study file" in capsys.readouterr().err


def test_reused_name_with_other_objectives_is_refused(tmp_path: Path) -> None:
    first = Study.load(write(tmp_path, {**MINIMAL, "name": "same", "storage": "sqlite:///shared.db"}, "a.yaml"))
    open_study(first, storage_of(first))
    other = Study.load(write(tmp_path, {**MINIMAL, "name": "same", "storage": "sqlite:///shared.db",
                                        "objectives": ["accuracy", "params"]}, "b.yaml"))
    with pytest.raises(NasError, match=r"has objectives \[accuracy \(maximize\), latency_ms \(minimize\)\] but "
                                       r"the study file asks for \[accuracy \(maximize\), params \(minimize\)\]"):
        open_study(other, storage_of(other))
    changed = Study.load(write(tmp_path, {**MINIMAL, "name": "same", "storage": "sqlite:///shared.db",
                                          "evaluator": {"train": {"epochs": 9}}}, "c.yaml"))
    with pytest.raises(NasError, match="made with other evaluator settings"):
        open_study(changed, storage_of(changed))
    fresh = open_study(other, storage_of(other), fresh=True)  # --fresh replaces it
    assert [d.name for d in fresh.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert fresh.user_attrs["metrics"] == ["accuracy", "params"]
    # The dashboard's names say which network and fidelity each objective is of.
    assert fresh.metric_names == ["accuracy (target, 5 ep)", "params (target ×1 @32px)"]


def test_reused_name_with_other_objectives_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'made-elsewhere.db'}"
    optuna.create_study(study_name="s", storage=url, directions=["minimize", "minimize"])
    path = write(tmp_path, {**MINIMAL, "storage": url})
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fresh" in err and "objectives" in err
