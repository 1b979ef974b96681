"""The final stage through the real engine: `nas search` with a `final:` block, killed with SIGKILL in the middle of
the stage, then `nas final` again: nothing finished is lost or trained twice, and every run gets its weights."""

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

from nas.record.final import SEED_OFFSET, choose, setting_of, stored_runs, weights_dir
from nas.record.store import load_results
from nas.study import Study
from tests.nas.run.test_resume import descendants

pytestmark = pytest.mark.slow

SEEDS = 2
STUDY = {
    "name": "finalkill", "space": "small", "objectives": ["accuracy", "latency_ms"], "seed": 3,
    "evaluator": {"data": {"name": "digits", "resolution": 8, "limit_train": 512, "limit_val": 128},
                  "proxy": {"width_mult": 0.5}, "target": {"width_mult": 0.5},
                  "train": {"epochs": 3, "batch_size": 32, "optimizer": "adamw", "lr": 0.005},
                  "latency": {"max_seconds": 0.2, "min_runs": 3, "max_attempts": 1}},
    "early_stopping": "off", "budget": {"trials": 4}, "sampler": {"type": "random", "seed": 1},
    "final": {"of": ["front", "random"], "top": 2, "random": 1, "seeds": SEEDS,
              "train": {"epochs": 8, "batch_size": 32, "optimizer": "adamw", "lr": 0.003}},
}


def final_runs(path: Path) -> dict[str, dict]:
    """Every stored final run: storage key → record."""
    try:
        s = optuna.load_study(study_name="finalkill", storage=f"sqlite:///{path.with_suffix('.db')}")
    except KeyError:
        return {}
    return {k: v for k, v in s.user_attrs.items() if k.startswith("final:")}


def test_final_stage_resumes_after_sigkill_with_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "finalkill.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", str(path), "--status-every", "5"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 400
    while not final_runs(path):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no final run stored in time"
        time.sleep(0.5)
    orphans = descendants(proc.pid)
    proc.kill()  # SIGKILL: the stage stops between two stored runs, or in the middle of one
    proc.communicate(timeout=60)
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = final_runs(path)
    study = Study.load(path)
    chosen = choose(study, load_results(study))
    assert 0 < len(before) < len(chosen) * SEEDS, "the kill should land in the middle of the stage"

    done = subprocess.run([sys.executable, "-m", "nas.cli", "final", str(path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = final_runs(path)
    assert {k: after[k] for k in before} == before  # what was stored is kept as it was
    assert len(after) == len(chosen) * SEEDS
    assert f"{len(chosen) * SEEDS - len(before)} final run(s) trained" in done.stdout
    assert "Final stage (the paper table):" in done.stdout

    ostudy = load_results(study)
    runs = stored_runs(ostudy, setting_of(study))
    roles = {role for _, role in chosen}
    assert roles == {"front", "random"}
    for t, _ in chosen:
        mine = runs[t.user_attrs["hash"]]
        assert sorted(mine) == list(range(SEEDS))
        assert len({r["seed"] for r in mine.values()}) == SEEDS  # each seed its own draw
        assert all(r["repeat"] >= SEED_OFFSET and len(r["history"]) == r["epochs"] for r in mine.values())
        assert all((weights_dir(study) / r["weights"]).is_file() for r in mine.values())
    again = subprocess.run([sys.executable, "-m", "nas.cli", "final", str(path)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "0 final run(s) trained" in again.stdout
