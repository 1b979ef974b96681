"""The record of a search: the Optuna study in its RDB storage.

Opening a study checks that it was made by the same study file (objectives, space, evaluator); `Recorder` writes a
trial's architecture, metrics, constraint values and final state; `recover` turns what a killed driver left RUNNING
into failed, re-queued trials; `driver_lock` keeps two drivers off one study. The Pareto front and the standing of
the named points are read back from here too. Every trial attribute is a plain user attribute, so optuna-dashboard
and `optuna.load_study` see everything `nas` knows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from nas.record.trials import arch_attr, stored_arch
from nas.study import Study
from space.errors import NasError

INTERRUPTED = "interrupted (the search stopped while it ran); re-queued"
CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute, in the list form optuna-dashboard reads too
# Bulky per-trial records kept as system attributes: the dashboard's attribute tables stay one line per trial (the
# trial's note shows them). Read the architecture with `nas.record.trials.stored_arch`.
SYSTEM_KEYS = ("history", "arch", "losses")
# A named point's trial has one parameter of its own, `named:<name>` (a single choice, its name), so optuna-dashboard
# shows the name in the trial's parameters and on hover in its plots. One parameter per name: Optuna refuses a
# categorical parameter whose choices change, and named points can be added to a study file later.
NAMED_PARAM = "named:"


def arch_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters that encode its architecture (without the `named:` one)."""
    return {k: v for k, v in params.items() if not k.startswith(NAMED_PARAM)}


def storage_of(study: Study) -> optuna.storages.RDBStorage:
    """The study's RDB storage; a SQLite file is checked first and put in WAL mode (see `_sqlite_pragmas`)."""
    sqlite = study.storage.startswith("sqlite")
    if study.storage.startswith("sqlite:///"):
        _check_sqlite_file(study, Path(study.storage[len("sqlite:///"):].split("?", 1)[0]))
    try:
        storage = optuna.storages.RDBStorage(study.storage,
                                             engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {})
    except Exception as e:  # SQLAlchemy raises a variety of errors for a bad URL or an unreachable server
        cause = str(getattr(e, "orig", None) or e).splitlines()[0]  # the driver's message, without SQL and web link
        raise NasError(f"{study.source}: storage {study.storage}: cannot open it ({cause}); check the URL, and that "
                       "the database server is running and reachable") from None
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # reconnect, so every pooled connection has the pragmas
    return storage


def _check_sqlite_file(study: Study, path: Path) -> None:
    """A SQLite storage file that exists must be a sound database; its folder is made when missing."""
    import sqlite3

    where = f"{study.source}: storage {path}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise NasError(f"{where}: a folder where the database file belongs; set `storage:` to a file path")
        if not path.exists():
            return
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError as e:  # not damage: busy, or not openable by this user
        if "locked" in str(e) or "busy" in str(e):
            return  # a writer holds it; opening the storage waits for it as usual
        raise NasError(f"{where}: cannot open it ({e}); check that this user can read and write it and its folder"
                       ) from None
    except sqlite3.DatabaseError as e:
        verdict = str(e)
    except OSError as e:
        raise NasError(f"{where}: {e.strerror or e}; set `storage:` to a path this user can create and write"
                       ) from None
    if verdict != "ok":
        raise NasError(f"{where}: damaged SQLite database ({verdict.splitlines()[0]}); its trials cannot be read: "
                       "restore it from a backup, or move it aside to start the search over")


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """WAL: the dashboard reads while the search writes, and a commit costs no fsync (3-5x faster per trial).

    A killed driver loses nothing committed; only a power loss can drop the last transactions.
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(study: Study, storage: optuna.storages.BaseStorage, *, fresh: bool = False) -> optuna.Study:
    """Create the Optuna study, or load it after checking it was made by this study file; `fresh` starts over."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if fresh and study.name in names:
        optuna.delete_study(study_name=study.name, storage=storage)
        names.discard(study.name)
    if study.name in names:
        # The study in the storage only records; sampling happens on an in-memory copy (see StudySearcher).
        existing = optuna.load_study(study_name=study.name, storage=storage, sampler=optuna.samplers.RandomSampler())
        check_same(study, existing)
        return existing
    ostudy = optuna.create_study(study_name=study.name, storage=storage, directions=study.directions,
                                 sampler=optuna.samplers.RandomSampler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names(study.metric_labels)
    ostudy.set_user_attr("fingerprints", _fingerprints(study))
    ostudy.set_user_attr("study_file", study.source)
    ostudy.set_user_attr("space", study.space.name)
    ostudy.set_user_attr("constraints", [c.describe() for c in study.constraints])
    ostudy.set_user_attr("metrics", study.metric_names)  # the metric keys behind the labelled objectives
    ostudy.set_user_attr("target", study.evaluator.describe_target())
    ostudy.set_user_attr("proxy", study.evaluator.describe_proxy())
    ostudy.set_user_attr("search_seconds", 0.0)
    return ostudy


def _fingerprints(study: Study) -> dict[str, str]:
    parts = {"space": study.space.raw, "objectives": [dataclasses.astuple(o) for o in study.objectives],
             "constraints": [dataclasses.astuple(c) for c in study.constraints],
             "evaluator": dataclasses.asdict(study.evaluator), "seed": study.seed}
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for k, v in parts.items()}


def check_same(study: Study, existing: optuna.Study,
                fix: str = "use --fresh to start it over, or give the study another name") -> None:
    """Refuse to append to (or read) a study whose objectives or settings differ from the study file's."""
    where = f"{study.source}: study '{study.name}' in {study.storage}"
    stored = [d.name.lower() for d in existing.directions]
    stored_names = existing.user_attrs.get("metrics") or [f"objective {i}" for i in range(len(stored))]
    if stored != study.directions or stored_names != study.metric_names:
        have = ", ".join(f"{n} ({d})" for n, d in zip(stored_names, stored))
        want = ", ".join(f"{o.metric} ({o.direction})" for o in study.objectives)
        raise NasError(f"{where} has objectives [{have}] but the study file asks for [{want}]; {fix}")
    before = existing.user_attrs.get("fingerprints") or {}
    changed = [k for k, v in _fingerprints(study).items() if before.get(k, v) != v]
    if changed:
        raise NasError(f"{where} was made with other {' and '.join(changed)} settings, so its results are not "
                       f"comparable with new trials; {fix}")


class Recorder:
    """Writes what `nas` knows about a trial into the storage: user attributes, constraints, final state."""

    def __init__(self, ostudy: optuna.Study, study: Study, storage: optuna.storages.BaseStorage):
        self.ostudy = ostudy
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(ostudy.study_name)

    def trial_id(self, number: int) -> int:
        """The storage id of trial `number`."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def get(self, number: int) -> FrozenTrial:
        """Trial `number` as stored."""
        return self.storage.get_trial(self.trial_id(number))

    def create(self, state: TrialState, values: list[float] | None, like: FrozenTrial, attrs: dict[str, Any]) -> int:
        """Store a new trial with the parameters of `like` in one transaction; return its number."""
        system = {k: v for k, v in like.system_attrs.items() if k != CONSTRAINTS_KEY}
        if state == TrialState.COMPLETE and self.study.constraints:
            system[CONSTRAINTS_KEY] = self.violations(attrs)
        template = optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None, params=like.params,
            distributions=like.distributions,
            user_attrs={k: v for k, v in attrs.items() if v is not None and k not in SYSTEM_KEYS},
            system_attrs={**system, **{k: v for k, v in attrs.items() if v is not None and k in SYSTEM_KEYS}})
        return self.storage.get_trial_number_from_id(self.storage.create_new_trial(self.study_id, template))

    def finish(self, number: int, state: TrialState, values: list[float] | None, attrs: dict[str, Any]) -> None:
        """Store `attrs`, the constraint values of a complete trial, and tell its final state.

        The per-epoch validation accuracies (`history`) become Optuna intermediate values, the dashboard's learning
        curve; those the searcher already wrote while the trial ran are not written again.
        """
        tid = self.trial_id(number)
        history = attrs.get("history")
        if isinstance(history, list) and history:
            have = self.storage.get_trial(tid).intermediate_values
            epochs = attrs.get("epochs")
            for step, v in enumerate(history[:epochs] if isinstance(epochs, int) else history, 1):
                if step not in have and isinstance(v, (int, float)) and math.isfinite(v):
                    self.storage.set_trial_intermediate_value(tid, step, float(v))
        for k, v in attrs.items():
            if v is not None:
                setter = self.storage.set_trial_system_attr if k in SYSTEM_KEYS else self.storage.set_trial_user_attr
                setter(tid, k, v)
        if state == TrialState.COMPLETE and self.study.constraints:
            self.storage.set_trial_system_attr(tid, CONSTRAINTS_KEY, self.violations(attrs))
        self.ostudy.tell(number, values if state == TrialState.COMPLETE else None, state=state)

    def violations(self, attrs: dict[str, Any]) -> list[float]:
        """One value per constraint, <= 0 when satisfied (an unmeasured metric counts as satisfied)."""
        return [c.violation(float(attrs[c.metric])) if isinstance(attrs.get(c.metric), (int, float)) else 0.0
                for c in self.study.constraints]

    def recover(self) -> int:
        """Mark trials a stopped driver left RUNNING as FAIL (interrupted) and re-queue them; return how many."""
        stale = self.ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in stale:
            self.requeue(t)
        return len(stale)

    def requeue(self, t: FrozenTrial) -> None:
        """Enqueue trial `t` again (its parameters, or its architecture when it has none) and mark it interrupted."""
        params = arch_params(t.params)
        keep = {k: t.user_attrs[k] for k in ("named", "in_space")
                if k in t.user_attrs and (k == "named" or not params)}
        self.enqueue(params, {**keep, "retry_of": t.number}, None if params else stored_arch(t))
        self.finish(t.number, TrialState.FAIL, None, {"fail_reason": INTERRUPTED, "interrupted": True,
                                                      "status": "interrupted"})

    def enqueue(self, params: dict[str, Any], user_attrs: dict[str, Any], arch: str | None = None) -> None:
        """Enqueue a trial with fixed `params`; `arch` (for a point outside the space) goes to its system attributes."""
        self.ostudy.enqueue_trial(params, user_attrs=user_attrs)
        if arch is not None:  # one driver per study: the newest waiting trial is the one just enqueued
            waiting = self.ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
            self.storage.set_trial_system_attr(waiting._trial_id, "arch", arch)

    def seed_named(self) -> list[str]:
        """Enqueue the named points that have no trial yet (all of them in a new study, new ones on resume).

        One outside the space carries its architecture. Interrupted ones are re-queued by `recover`.
        """
        have = {t.user_attrs.get("named") for t in self.ostudy.get_trials(deepcopy=False)}
        out = []
        for arch in self.study.named:
            if arch.name in have:
                continue
            if self.study.space.contains_arch(arch)[0]:
                self.enqueue(self.study.space.encode(arch), {"named": arch.name})
            else:
                self.enqueue({}, {"named": arch.name, "in_space": False}, arch_attr(arch))
            out.append(arch.name or arch.hash)
        return out

    def seed_random(self, k: int) -> list[str]:
        """Enqueue `k` architectures drawn at random from the space (seeded by the study seed), tagged
        `random_baseline`: the final stage trains them like the front, to show what the search adds over random
        sampling. Drawn once per study; on resume only the missing ones are enqueued."""
        have = {t.user_attrs.get("random_baseline") for t in self.ostudy.get_trials(deepcopy=False)}
        draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.study.seed),
                                   storage=optuna.storages.InMemoryStorage())
        out, seen = [], set()
        while len(seen) < k:
            trial = draw.ask()
            arch = self.study.space.sample(trial)
            draw.tell(trial, state=TrialState.FAIL)
            if arch.hash in seen:
                continue
            seen.add(arch.hash)
            i = len(seen) - 1
            if i not in have:
                self.enqueue(self.study.space.encode(arch), {"random_baseline": i})
                out.append(arch.hash)
        return out




@contextlib.contextmanager
def driver_lock(study: Study) -> Iterator[None]:
    """One driver per study: a second `nas search` on the same storage and name is refused, not interleaved."""
    if study.storage.startswith("sqlite:///"):
        path = Path(study.storage[len("sqlite:///"):] + f".{study.name}.lock")
    else:
        key = hashlib.sha256(f"{study.storage}|{study.name}".encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"nas-search-{key}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise NasError(f"{study.source}: study '{study.name}' is being searched by another `nas search` "
                           f"(pid {pid}); wait for it or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_results(study: Study) -> optuna.Study:
    """The study's Optuna record, opened for reading; a study never searched is a one-line error."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hint = f"run 'nas search {study.source}' first"
    if study.storage.startswith("sqlite:///") and not Path(study.storage[len("sqlite:///"):]).is_file():
        raise NasError(f"{study.source}: no results yet (no database {study.storage[len('sqlite:///'):]}); {hint}")
    storage = storage_of(study)
    try:
        names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception as e:  # SQLAlchemy raises many types for an unreachable server or a file that is not a DB
        raise NasError(f"{study.source}: storage {study.storage}: cannot read it ({type(e).__name__}: {e})") from None
    if study.name not in names:
        raise NasError(f"{study.source}: no study '{study.name}' in {study.storage} (it holds "
                       f"{', '.join(sorted(names)) or 'none'}); {hint}")
    ostudy = optuna.load_study(study_name=study.name, storage=storage)
    check_same(study, ostudy, fix="restore the settings it was searched with to report it (its trials were judged "
                                   "by them), or search the edited file under another name")
    return ostudy
