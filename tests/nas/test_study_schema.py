"""The study schema, key by key: every numeric key at 0, negative and of the wrong type, every name key misspelled,
each refused in one line that names the file and the key, with nothing created on disk; the README's reference is
the schema's."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel

from evaluators import DataConfig, LatencyConfig, TrainConfig
from nas.study import (
    Choice,
    DataSchema,
    LatencySchema,
    Study,
    StudySchema,
    TrainSchema,
    reference,
)
from space.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"space": "small", "budget": {"trials": 4}}
QUICKSTART = (ROOT / "studies" / "quickstart.yaml").read_text()


def leaves(model: type[BaseModel] = StudySchema, prefix: str = "") -> list[tuple[str, Any]]:
    """(key path, field info) of every key of the schema that holds a value (not a nested mapping)."""
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _model(info.annotation)
        if inner is None:
            out.append((key, info))
        else:
            out += leaves(inner, f"{key}.METRIC." if name == "constraints" else f"{key}.")
    return out


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model, typing.get_args(annotation)) if m is not None), None)


def _base_and_marks(info: Any) -> tuple[Any, list[Any]]:
    """The value type of a field (None and Annotated removed) and its constraint markers."""
    annotation, marks = info.annotation, list(info.metadata)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation):
        annotation = args[0]
    while typing.get_origin(annotation) is Annotated:
        marks += list(annotation.__metadata__)
        annotation = typing.get_args(annotation)[0]
    return annotation, marks


def _lowest(marks: list[Any]) -> float | None:
    for m in marks:
        for attr in ("ge", "gt"):
            if getattr(m, attr, None) is not None:
                return getattr(m, attr)
    return None


def bad_values() -> list[tuple[str, Any]]:
    """(key, value) pairs the schema must refuse, derived from the schema itself."""
    cases: list[tuple[str, Any]] = []
    for key, info in leaves():
        base, marks = _base_and_marks(info)
        choice = next((m for m in marks if isinstance(m, Choice)), None)
        if base in (int, float) and not isinstance(info.default, bool):
            low = _lowest(marks)
            if low is not None and low > 0 or any(getattr(m, "gt", None) == 0 for m in marks):
                cases.append((key, 0))
            if low is not None:
                cases.append((key, -1))
            cases.append((key, "x"))
            cases.append((key, True))
        elif base is bool:
            cases.append((key, "yes"))
            cases.append((key, 1))
        elif choice is not None:
            cases.append((key, next(iter(choice.values())) + "z"))
            cases.append((key, 3))
        elif typing.get_origin(base) is list:
            cases.append((key, [] if key.endswith(".of") else ["x"]))
            cases.append((key, 7))
        elif base is str and info.metadata:  # a pattern: device, name
            cases.append((key, "cdua" if key.endswith("device") else "a/b"))
            cases.append((key, 2))
        elif base is str:
            cases.append((key, 5))
    # Keys whose type the schema checks by hand (several forms are accepted), and registry-backed values.
    cases += [("objectives", ["acuracy"]), ("objectives", []), ("objectives", {"accuracy": "maximise"}),
              ("objectives", 3), ("constraints", {"latncy_ms": {"max": 1}}), ("constraints", [1]),
              ("named", ["resnet81"]), ("named", [3]), ("space", "smal"), ("space", 3), ("sampler", 3),
              ("concurrency", 0), ("concurrency", -1), ("concurrency", "x"), ("concurrency", 1.5),
              ("resources.gpu", -1), ("resources.gpu", "x"), ("resources.gpu", 1.5), ("resources.gpu", True),
              ("early_stopping", 3), ("repeats", "sometimes"), ("final", 3), ("evaluator.proxy", "cheap"),
              ("evaluator.adapt_input", 3), ("name", "../../escape"), ("name", ".hidden"), ("name", ""),
              ("storage", "results.db"), ("evaluator.data.root", None),  # with cifar10: it needs a root
              ("evaluator.latency.dtype", "float16"),  # on cpu
              ("final.random", 0)]  # with final.of [random]
    return cases


def with_value(key: str, value: Any) -> dict:
    """MINIMAL with `value` at the dotted `key` (METRIC stands for a constrained metric)."""
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    if key == "final.random":
        data["final"] = {"of": ["random"]}
    if key == "evaluator.data.root":
        data["evaluator"] = {"data": {"name": "cifar10"}}
    node = data
    parts = key.replace("METRIC", "params").split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


CASES = bad_values()


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_every_bad_value_is_one_line_naming_the_key(key: str, value: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(with_value(key, value), sort_keys=False))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SpecError) as info:
        Study.load(path)
    text = str(info.value)
    shown = key.replace("METRIC", "params")
    assert "\n" not in text and text.startswith(f"{path}: "), text
    assert re.search(rf": {re.escape(shown)}(\.\w+|\[\d+\])?: ", text), text
    assert sorted(os.listdir(tmp_path)) == before  # nothing created: no database, no lock, no cache


def test_final_random_is_accepted_when_drawn() -> None:
    study = Study.from_dict({**MINIMAL, "final": {"of": "random", "random": 2, "train": {"epochs": 30},
                                                  "patience": 3}}, source="s.yaml")
    assert study.final is not None and study.final.of == ("random",) and study.final.random == 2
    assert study.final.train == {"epochs": 30} and study.final.patience == 3 and study.final.top == 3


def test_defaults_and_auto_values(tmp_path: Path) -> None:
    study = Study.from_dict({**MINIMAL, "resources": {"gpu": "auto"}, "final": {}}, source=str(tmp_path / "s.yaml"))
    assert study.resources.gpu == "auto" and study.final is not None and study.final.of == ("front", "named")
    assert study.concurrency is None and study.repeats is None and study.evaluator.adapt_min_feature == 2
    off = Study.from_dict({**MINIMAL, "final": "off", "evaluator": {"adapt_input": "off"}, "early_stopping": False},
                          source="s.yaml")
    assert off.final is None and off.evaluator.adapt_min_feature is None and off.early_stopping is None


@pytest.mark.parametrize("name", ["my-study_1.v2", "A", "0x"])
def test_names_that_are_names(name: str) -> None:
    assert Study.from_dict({**MINIMAL, "name": name}, source="s.yaml").name == name


@pytest.mark.parametrize("schema, config, extra", [
    (TrainSchema, TrainConfig, {"seed"}),  # the training seed derives from the study's
    (DataSchema, DataConfig, set()),
    (LatencySchema, LatencyConfig, {"resolution"}),  # the latency resolution is the target's
])
def test_the_schema_covers_every_evaluator_setting(schema: type[BaseModel], config: type, extra: set[str]) -> None:
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(schema.model_fields) - {"cache", "quiet"} == fields - extra
    for name in set(schema.model_fields) & fields:  # the reference shows the evaluators' own defaults
        assert schema.model_fields[name].default == getattr(config, name), name


def test_every_key_has_a_one_line_description() -> None:
    for key, info in leaves():
        assert info.description and "\n" not in info.description, key


def test_the_readme_reference_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- study-reference:start -->\n(.*?)<!-- study-reference:end -->", readme, re.S)
    assert block, "README.md has no study-reference block"
    assert block.group(1) == reference(), "README.md's study reference is stale: run scripts/study_reference.py --write"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "study_reference.py")], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out == reference()


@pytest.mark.parametrize("old, new, key", [
    ("lr: 0.1", "lr: -0.1", "evaluator.train.lr"),
    ("batch_size: 32", "batch_size: 0", "evaluator.train.batch_size"),
    ("name: digits", "name: cluttered_digitz", "evaluator.data.name"),
    ("latency: {batch_size: 1", "latency: {batch_size: 0", "evaluator.latency.batch_size"),
    ("threads: 1,", "threads: 0,", "evaluator.latency.threads"),
    ("max_attempts: 2}", "max_attempts: 2, backend: tensorrt9}", "evaluator.latency.backend"),
    ("name: quickstart", "name: ../../escape", "name"),
])
def test_the_cli_refuses_a_bad_study_before_creating_anything(old: str, new: str, key: str, tmp_path: Path) -> None:
    assert old in QUICKSTART
    path = tmp_path / "quickstart.yaml"
    path.write_text(QUICKSTART.replace(old, new, 1))
    r = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(path)], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert 1 <= len(lines) <= 3 and f": {key}: " in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["quickstart.yaml"]  # no database, lock or anything else
