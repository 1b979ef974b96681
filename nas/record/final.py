"""The final stage in the record: the target network of chosen trials trained to convergence, n seeds each.

Each run is a study user attribute `final:<setting>:<arch hash>:<seed index>` (its accuracy, per-epoch validation
accuracy and training loss, seed, epochs, time, and where its weights are), written the moment it ends, so an
interrupted stage resumes without losing a finished run. `<setting>` identifies the target network and the recipe:
a changed recipe is a new setting, never mixed with the old one.

`table` is the paper table: per network its target latency, params and MACs, proxy accuracy ± spread, final accuracy
± spread (n), a mark (converged / not converged / did not train) and its rank by proxy and by final accuracy. A
network whose runs did not train is shown as such, is not ranked and never loses a comparison.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.record.repeats import Spread, runs_under, spread_of, stored
from nas.record.training import CONVERGED, DID_NOT_TRAIN, NOT_CONVERGED, Mark, run_mark
from nas.record.trials import display_name, front, proxy_mark
from nas.study import Study

PREFIX = "final:"
SEED_OFFSET = 1000  # a final run k is seeded with trial_seed(study seed, arch hash, SEED_OFFSET + k)
FRONT, NAMED, RANDOM = "front", "named", "random"
MIXED = "did not train in some seeds"


@dataclass(frozen=True)
class FinalSetting:
    """What a final run trains: the target network (width, resolution, all training images) and the recipe."""

    width_mult: float
    resolution: int
    train: tuple[tuple[str, Any], ...]  # the recipe's TrainConfig fields, sorted
    patience: int | None = None

    @property
    def epochs(self) -> int:
        """Epochs of a run (at most, with a patience)."""
        return int(dict(self.train).get("epochs", 30))

    @property
    def key(self) -> str:
        """Identifies the setting in the storage."""
        blob = json.dumps([list(self.train), self.patience], sort_keys=True, default=str)
        return f"w{self.width_mult:g}-r{self.resolution}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        """'target ×1 @16px, all training images, 30 epochs of adamw lr 0.002'."""
        t = dict(self.train)
        recipe = f"{self.epochs} epochs of {t.get('optimizer', 'sgd')} lr {t.get('lr', 0.1):g}"
        if self.patience:
            recipe += f" (patience {self.patience})"
        return f"target ×{self.width_mult:g} @{self.resolution}px, all training images, {recipe}"


def setting_of(study: Study) -> FinalSetting | None:
    """The study's final setting (None without a `final:` block)."""
    if study.final is None:
        return None
    t = study.evaluator.target
    train = {"epochs": study.final.epochs, **study.final.train}
    return FinalSetting(t.width_mult, t.resolution, tuple(sorted(train.items())), study.final.patience)


def run_key(setting: FinalSetting, arch_hash: str, seed: int) -> str:
    """The storage key of one run."""
    return f"{PREFIX}{setting.key}:{arch_hash}:{seed}"


def stored_runs(ostudy: optuna.Study, setting: FinalSetting) -> dict[str, dict[int, dict]]:
    """Final runs of `setting`: arch hash → seed index → record."""
    return runs_under(ostudy, f"{PREFIX}{setting.key}:")


def weights_dir(study: Study) -> Path:
    """Where final runs keep their weights: `<study dir>/<name>_final/`."""
    return Path(study.source).resolve().parent / f"{study.name}_final"


def final_weights(study: Study, ostudy: optuna.Study, t: FrozenTrial) -> tuple[Path, dict, FinalRow] | None:
    """The final stage's trained weights of trial `t` (its first seed whose file exists), that run's record and the
    trial's row of the paper table; None when the stage has not trained it."""
    rows = [r for r in table(study, ostudy) if r.trial == t.number]
    if not rows:
        return None
    for run in rows[0].runs:
        path = weights_dir(study) / str(run.get("weights", ""))
        if run.get("weights") and path.is_file():
            return path, run, rows[0]
    return None


# -- which trials ------------------------------------------------------------------------------------------------------
def choose(study: Study, ostudy: optuna.Study) -> list[tuple[FrozenTrial, str]]:
    """(trial, role) for every network of the final stage: the `top` front points by proxy accuracy, the named points
    and the random baselines within the constraints (one trial per architecture). A named point or random baseline
    that ASHA stopped early is trained all the same: the final stage judges it, not its proxy's first epochs."""
    final = study.final
    if final is None:
        return []
    repeats = stored(ostudy)
    picked: list[tuple[FrozenTrial, str]] = []
    trials = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if "duplicate_of" not in t.user_attrs and t.user_attrs.get("feasible", True)
              and (t.state == TrialState.COMPLETE or t.user_attrs.get("status") == "pruned")]
    if NAMED in final.of:
        picked += [(t, NAMED) for t in trials if t.user_attrs.get("named")]
    if RANDOM in final.of:
        picked += [(t, RANDOM) for t in trials if "random_baseline" in t.user_attrs]
    if FRONT in final.of:
        best = sorted((t for t in front(ostudy) if not t.user_attrs.get("named")),
                      key=lambda t: -(spread_of(t, repeats) or Spread((0.0,))).mean)
        picked += [(t, FRONT) for t in best[:final.top] if "random_baseline" not in t.user_attrs]
    out, seen = [], set()
    for t, role in sorted(picked, key=lambda p: p[0].number):
        h = t.user_attrs.get("hash")
        if h not in seen:
            seen.add(h)
            out.append((t, role))
    return out


# -- the table -------------------------------------------------------------------------------------------------------
@dataclass
class FinalRow:
    """One network of the paper table."""

    trial: int
    network: str  # the named point's name (with its input adaptation), or '#N'
    role: str  # front | named | random
    latency_ms: float | None
    latency_iqr_ms: float | None
    params: float | None
    macs: float | None
    proxy: Spread | None  # proxy accuracy over its seeds
    proxy_trained: bool  # False when the proxy's runs sat at chance
    stopped_at: int | None = None  # epochs the proxy ran before ASHA stopped it (no proxy accuracy then)
    runs: list[dict] = field(default_factory=list)  # the final runs, by seed index
    marks: list[Mark] = field(default_factory=list)  # one per run
    rank_proxy: int | None = None
    rank_final: int | None = None

    @property
    def final(self) -> Spread | None:
        """Final accuracy over the seeds run so far."""
        return Spread(tuple(float(r["accuracy"]) for r in self.runs)) if self.runs else None

    @property
    def status(self) -> str:
        """converged | not converged | did not train | did not train in some seeds | pending."""
        if not self.marks:
            return "pending"
        kinds = {m.status for m in self.marks}
        if kinds == {DID_NOT_TRAIN}:
            return DID_NOT_TRAIN
        if DID_NOT_TRAIN in kinds:
            return MIXED
        return NOT_CONVERGED if NOT_CONVERGED in kinds else CONVERGED

    @property
    def measured(self) -> bool:
        """Whether the final accuracy is a measurement of the architecture: every run trained and converged."""
        return self.status == CONVERGED


def final_noise(runs: Iterable[list[dict]]) -> float | None:
    """Pooled seed-to-seed standard deviation of final accuracy over networks with two or more trained runs."""
    pairs = []
    for rs in runs:
        accs = [float(r["accuracy"]) for r in rs]
        if len(accs) > 1:
            pairs.append((len(accs) - 1, statistics.variance(accs)))
    dof = sum(d for d, _ in pairs)
    return math.sqrt(sum(d * v for d, v in pairs) / dof) if dof else None


def table(study: Study, ostudy: optuna.Study) -> list[FinalRow]:
    """The paper table, ordered by target latency; empty before the final stage has run."""
    setting = setting_of(study)
    if setting is None:
        return []
    runs = stored_runs(ostudy, setting)
    chosen = choose(study, ostudy)
    if not any(t.user_attrs.get("hash") in runs for t, _ in chosen):
        return []
    repeats = stored(ostudy)
    smoothing = float(dict(setting.train).get("label_smoothing", study.evaluator.train.get("label_smoothing", 0.1)))
    rows = []
    for t, role in chosen:
        a = t.user_attrs
        mine = runs.get(a.get("hash", ""), {})
        rows.append(FinalRow(trial=t.number, network=display_name(t) or f"#{t.number}", role=role,
                             latency_ms=_num(a.get("latency_ms")), latency_iqr_ms=_num(a.get("latency_iqr_ms")),
                             params=_num(a.get("params")), macs=_num(a.get("macs")), proxy=spread_of(t, repeats),
                             proxy_trained=proxy_mark(t) is None, runs=[mine[k] for k in sorted(mine)],
                             stopped_at=a.get("epochs") if t.state == TrialState.PRUNED else None))
    # Whether a run trained does not depend on the noise; the noise (of the trained runs) decides convergence.
    noise = final_noise([[r for r in row.runs if _mark(r, smoothing, None).trained] for row in rows])
    for row in rows:
        row.marks = [_mark(r, smoothing, noise) for r in row.runs]
    ranked = [r for r in rows if r.runs and r.measured]
    for rank, r in enumerate(sorted(ranked, key=lambda r: -r.final.mean), 1):
        r.rank_final = rank
    by_proxy = [r for r in ranked if r.proxy is not None and r.proxy_trained]
    for rank, r in enumerate(sorted(by_proxy, key=lambda r: -r.proxy.mean), 1):
        r.rank_proxy = rank
    return sorted(rows, key=lambda r: (r.latency_ms is None, r.latency_ms or 0.0))


def noise_of(rows: list[FinalRow]) -> float | None:
    """The final stage's seed noise over the rows' trained runs."""
    return final_noise([[r for r, m in zip(row.runs, row.marks) if m.trained] for row in rows])


def _mark(run: dict, smoothing: float, noise: float | None) -> Mark:
    """The mark of one stored final run (`smoothing`: the recipe's, for runs that did not store theirs)."""
    return run_mark(run.get("history") or [run["accuracy"]], run.get("losses"), int(run.get("classes") or 10),
                    run.get("val_images"), smoothing=float(run.get("label_smoothing", smoothing)), noise=noise,
                    stopped_early=bool(run.get("stopped_early")))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
