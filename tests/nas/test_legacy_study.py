"""A study written by the code before nas/ was layered (commit 9a5aadc; tests/nas/data/legacy) still reports,
exports and resumes; and the commands that only read a study never import Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nas.cli import main

LEGACY = Path(__file__).parent / "data" / "legacy"


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A writable copy of the legacy study file and its database."""
    for f in LEGACY.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "legacy.yaml"


def values(path: Path) -> dict[int, tuple]:
    """Trial number → (state, latency, the search's own accuracy) as stored (a trial with seed repeats shows their
    mean as its value since issue 19; the search's seed stays as `accuracy_seed0`)."""
    s = optuna.load_study(study_name="legacy", storage=f"sqlite:///{path.with_suffix('.db')}")
    return {t.number: (t.state, t.values[1] if t.values else None,
                       t.user_attrs.get("accuracy_seed0", t.user_attrs.get("accuracy"))) for t in s.trials}


def test_legacy_study_reports(legacy: Path) -> None:
    assert main(["report", str(legacy)]) == 0
    summary = (legacy.parent / "legacy_report" / "summary.md").read_text()
    assert "| 1 |  | 0.6435 |" in summary  # the front as the old code wrote it
    assert "mobilenet_v2_050 (small-input strides) | 0 | 0.3384 | 3.031 ms | dominated by #1" in summary


def test_legacy_study_exports(legacy: Path) -> None:
    zoo = legacy.parent / "zoo"
    assert main(["export", str(legacy), "--trial", "1", "--name", "old", "--zoo", str(zoo), "--no-latency"]) == 0
    config = json.loads((zoo / "old" / "config.json").read_text())
    assert config["num_classes"] == 10


@pytest.mark.parametrize("argv", [["report", "{study}"], ["export", "{study}", "--trial", "2", "--name", "e",
                                                           "--zoo", "{dir}/zoo", "--no-latency"],
                                  ["fidelity", "--help"], ["dashboard", "--help"]])
def test_commands_that_read_a_study_do_not_import_ray(legacy: Path, argv: list[str]) -> None:
    args = [a.format(study=legacy, dir=legacy.parent) for a in argv]
    code = ("import sys\nfrom nas.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nprint('exit', rc, sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') "
            "or m.startswith('nas.run')))")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=legacy.parent)
    assert r.stdout.strip().splitlines()[-1] == "exit 0 []", r.stdout[-2000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_legacy_study_resumes(legacy: Path) -> None:
    before = values(legacy)
    assert main(["search", str(legacy), "--trials", "5", "--status-every", "5"]) == 0
    after = values(legacy)
    assert len(after) == len(before) + 1
    assert {n: after[n] for n in before} == before  # nothing stored before is touched
    assert after[max(after)][0] == optuna.trial.TrialState.COMPLETE
