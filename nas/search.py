"""The search engine: Optuna decides what to try, Ray Tune runs it, and the Optuna storage is the record.

`run_search(study)` opens (or creates) the Optuna study in the study's RDB storage, recovers what a killed driver
left behind, seeds the named points, and hands Ray Tune a `StudySearcher` — a Ray Tune `Searcher` that drives the
Optuna study with ask/tell — plus ASHA on accuracy. Each trial runs `nas.trial.run_trial` in a Ray worker.

Why a searcher of our own rather than `ray.tune.search.optuna.OptunaSearch` (each is a pitfall of that integration on
Ray 2.60 / Optuna 5.0):
- a trial stopped early by ASHA must be PRUNED, not COMPLETE with its partial accuracy;
- a NaN/inf metric or a missing objective must fail the one trial with a reason, not hang it RUNNING or abort the
  experiment (the trainable also always reports every objective);
- an architecture the sampler proposes again (same hash) is not trained again: the stored result is told again,
  with the user attribute `duplicate_of`;
- named points are enqueued trials, told first; one outside the space is evaluated from its stored architecture;
- a study name reused with other objectives is refused, and a driver killed mid-search leaves RUNNING trials that
  the next run marks FAIL ("interrupted") and re-queues — completed trials are never re-run;
- the searcher's state is the RDB itself, so nothing unpicklable is checkpointed and Ray Tune's own experiment
  restore is not needed: running the same command again resumes.
Trial workers are reused (`reuse_actors`), which takes the per-trial start-up from about 2 s to about 0.2 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher

from nas.format import human
from nas.study import METRICS, Study
from nas.trial import Evaluate, Job, run_trial
from space import Arch
from space.errors import NasError, SpecError

INTERRUPTED = "interrupted (the search stopped while it ran); re-queued"
CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute, in the list form optuna-dashboard reads too
Log = Callable[[str], None]


# -- the study in its storage -----------------------------------------------------------------------------------------
def storage_of(study: Study) -> optuna.storages.RDBStorage:
    """The study's RDB storage; a SQLite file is put in WAL mode (see `_sqlite_pragmas`)."""
    sqlite = study.storage.startswith("sqlite")
    if study.storage.startswith("sqlite:///"):
        Path(study.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(study.storage,
                                             engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {})
    except Exception as e:  # SQLAlchemy raises a variety of errors for a bad URL or an unreachable server
        raise NasError(f"{study.source}: storage {study.storage}: cannot open it ({type(e).__name__}: {e})") from None
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # reconnect, so every pooled connection has the pragmas
    return storage


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
        _check_same(study, existing)
        return existing
    ostudy = optuna.create_study(study_name=study.name, storage=storage, directions=study.directions,
                                 sampler=optuna.samplers.RandomSampler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names(study.metric_names)
    ostudy.set_user_attr("fingerprints", _fingerprints(study))
    ostudy.set_user_attr("study_file", study.source)
    ostudy.set_user_attr("space", study.space.name)
    ostudy.set_user_attr("constraints", [c.describe() for c in study.constraints])
    ostudy.set_user_attr("search_seconds", 0.0)
    return ostudy


def _fingerprints(study: Study) -> dict[str, str]:
    parts = {"space": study.space.raw, "objectives": [dataclasses.astuple(o) for o in study.objectives],
             "constraints": [dataclasses.astuple(c) for c in study.constraints],
             "evaluator": dataclasses.asdict(study.evaluator)}
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for k, v in parts.items()}


def _check_same(study: Study, existing: optuna.Study) -> None:
    """Refuse to append to a study whose objectives or settings differ from the study file's."""
    where = f"{study.source}: study '{study.name}' in {study.storage}"
    fix = "use --fresh to start it over, or give the study another name"
    stored = [d.name.lower() for d in existing.directions]
    stored_names = existing.metric_names or [f"objective {i}" for i in range(len(stored))]
    if stored != study.directions or stored_names != study.metric_names:
        have = ", ".join(f"{n} ({d})" for n, d in zip(stored_names, stored))
        want = ", ".join(f"{o.metric} ({o.direction})" for o in study.objectives)
        raise NasError(f"{where} has objectives [{have}] but the study file asks for [{want}]; {fix}")
    before = existing.user_attrs.get("fingerprints") or {}
    changed = [k for k, v in _fingerprints(study).items() if before.get(k, v) != v]
    if changed:
        raise NasError(f"{where} was made with other {' and '.join(changed)} settings, so its results are not "
                       f"comparable with new trials; {fix}")


def make_sampler(study: Study, offset: int) -> optuna.samplers.BaseSampler:
    """The study's sampler; `offset` (the number of trials already in the study) reseeds a resumed search."""
    spec = study.sampler
    seed = spec.seed + offset  # the same seed again would replay the proposals of the first run
    if spec.type == "tpe":
        # Trials run in parallel: constant_liar keeps concurrent asks from proposing the same point.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup, constant_liar=True)
    if spec.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=spec.population)
    if spec.type == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.seed, qmc_type="sobol", scramble=True)  # indexes by trial count
    return optuna.samplers.RandomSampler(seed=seed)


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
            distributions=like.distributions, user_attrs={k: v for k, v in attrs.items() if v is not None},
            system_attrs=system)
        return self.storage.get_trial_number_from_id(self.storage.create_new_trial(self.study_id, template))

    def finish(self, number: int, state: TrialState, values: list[float] | None, attrs: dict[str, Any]) -> None:
        """Store `attrs`, the constraint values of a complete trial, and tell its final state."""
        tid = self.trial_id(number)
        for k, v in attrs.items():
            if v is not None:
                self.storage.set_trial_user_attr(tid, k, v)
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
        keep = {k: t.user_attrs[k] for k in ("named", "arch", "in_space") if k in t.user_attrs
                and (k == "named" or not t.params)}
        self.ostudy.enqueue_trial(t.params, user_attrs={**keep, "retry_of": t.number})
        self.finish(t.number, TrialState.FAIL, None, {"fail_reason": INTERRUPTED, "interrupted": True,
                                                      "status": "interrupted"})

    def seed_named(self) -> list[str]:
        """Enqueue the named points (the first trials of a new study); one outside the space carries its arch."""
        out = []
        for arch in self.study.named:
            if self.study.space.contains_arch(arch)[0]:
                self.ostudy.enqueue_trial(self.study.space.encode(arch), user_attrs={"named": arch.name})
            else:
                self.ostudy.enqueue_trial({}, user_attrs={"named": arch.name, "arch": arch.to_yaml(),
                                                          "in_space": False})
            out.append(arch.name or arch.hash)
        return out


def counts_toward_budget(t: FrozenTrial) -> bool:
    """Finished trials count, except interrupted ones (they are re-queued and run again)."""
    return t.state.is_finished() and not t.user_attrs.get("interrupted")


# -- the searcher -----------------------------------------------------------------------------------------------------
@dataclass
class _Live:
    number: int  # the trial in the storage
    mirror: optuna.Trial | None  # the same trial in the sampling copy (None: it came from the storage's queue)
    arch: Arch
    attrs: dict
    started: float = field(default_factory=time.monotonic)


@dataclass
class Tally:
    """Counters and the feasible complete points, for progress lines."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    infeasible: int = 0
    duplicates: int = 0
    points: list[tuple[int, list[float]]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Finished trials (every state)."""
        return self.complete + self.pruned + self.failed

    def add(self, state: TrialState, values: list[float] | None, attrs: dict, number: int) -> None:
        """Count one finished trial."""
        if state == TrialState.COMPLETE:
            self.complete += 1
            if attrs.get("feasible", True):
                self.points.append((number, list(values or [])))
            else:
                self.infeasible += 1
        elif state == TrialState.PRUNED:
            self.pruned += 1
        else:
            self.failed += 1
        if "duplicate_of" in attrs:
            self.duplicates += 1


REPORT_KEYS = ("status", "epochs", "planned_epochs", "seconds", "history", "node", "host", "fingerprint",
               "latency_iqr_ms", "latency_loaded", "latency_cached", "params_train", "macs_train", "setup_error")


class StudySearcher(Searcher):
    """Ray Tune searcher over an Optuna study: suggest = ask + sample, on_trial_complete = tell the right state.

    The sampler works on an in-memory copy of the study (finished trials loaded at the start, each new trial told to
    both): sampling a define-by-run architecture on the RDB directly costs a storage round trip per parameter,
    several times the whole per-trial budget. The storage gets each trial in one write when it starts and its
    outcome when it ends. Named points and re-queued trials are popped from the storage's own queue, in order.
    """

    def __init__(self, ostudy: optuna.Study, study: Study, storage: optuna.storages.BaseStorage, *,
                 budget_trials: int | None = None, deadline: float | None = None, log: Log = print):
        super().__init__()
        self.ostudy = ostudy
        self.study = study
        self.rec = Recorder(ostudy, study, storage)
        self.budget_trials = budget_trials
        self.deadline = deadline
        self.log = log
        self.live: dict[str, _Live] = {}
        self.waiting: dict[str, list[tuple[int | None, optuna.Trial | None, dict]]] = {}  # duplicates of live ones
        self.known: dict[str, FrozenTrial] = {}  # hash -> the trial that evaluated it
        self.tally = Tally()
        self.errors: dict[str, str] = {}  # Ray Tune trial id -> error text (filled in by the progress callback)
        self.abort: str | None = None
        self.counted = 0
        trials = ostudy.get_trials(deepcopy=False)
        self.queued = sum(t.state == TrialState.WAITING for t in trials)  # one driver per study: only we enqueue
        memory = optuna.storages.InMemoryStorage()
        self.sampling = optuna.create_study(storage=memory, directions=study.directions,
                                            sampler=make_sampler(study, len(trials)))
        self.sampling.add_trials([t for t in trials if t.state.is_finished()])
        self.copy = Recorder(self.sampling, study, memory)
        for t in trials:
            if counts_toward_budget(t):
                self.counted += 1
                self._remember(t)
                self.tally.add(t.state, t.values, t.user_attrs, t.number)

    def _remember(self, t: FrozenTrial) -> None:
        """Keep `t` as the result of its architecture, unless its failure may not happen again."""
        h, attrs = t.user_attrs.get("hash"), t.user_attrs
        if h and "duplicate_of" not in attrs and not attrs.get("setup_error") and attrs.get("deterministic", True):
            self.known.setdefault(h, t)

    def exhausted(self) -> bool:
        """Whether the trial or time budget is spent."""
        if self.budget_trials is not None and self.counted >= self.budget_trials:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- Ray Tune hooks ---------------------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Accept: the objectives come from the study file, not from Ray Tune's metric and mode."""
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        """The next new architecture; invalid points and duplicates are told at once, without running."""
        while True:
            if self.abort or self.exhausted():
                return Searcher.FINISHED
            self.counted += 1
            live = self._from_queue() if self.queued else self._sample()
            if live is not None:
                self.live[trial_id] = live
                return {"arch": live.attrs["arch"], "hash": live.arch.hash, "number": live.number}

    def _sample(self) -> _Live | None:
        """Ask the sampler (on the in-memory copy) for an architecture and record the trial in the storage."""
        mirror = self.sampling.ask()
        try:
            arch = self.study.space.sample(mirror)
        except SpecError as e:
            return self._invalid(None, mirror, e)
        attrs = {"arch": arch.to_yaml(), "hash": arch.hash}
        if self._settled(None, mirror, arch, attrs):
            return None
        number = self.rec.create(TrialState.RUNNING, None, self.copy.get(mirror.number), attrs)
        return _Live(number, mirror, arch, attrs)

    def _from_queue(self) -> _Live | None:
        """Pop the storage's next enqueued trial: a named point (maybe outside the space) or a re-queued one."""
        self.queued -= 1
        trial = self.ostudy.ask()
        attrs = {k: v for k, v in trial.user_attrs.items() if k in ("named", "retry_of", "in_space", "arch")}
        try:
            if "arch" in attrs and not trial.params:
                arch = Arch.from_yaml(attrs["arch"])
            else:
                arch = self.study.space.sample(trial)  # every parameter is fixed by the queue
        except SpecError as e:
            return self._invalid(trial.number, None, e)
        if attrs.get("named"):
            arch = dataclasses.replace(arch, name=attrs["named"])
        attrs.update(arch=arch.to_yaml(), hash=arch.hash)
        if self._settled(trial.number, None, arch, attrs):
            return None
        for k in ("arch", "hash"):
            trial.set_user_attr(k, attrs[k])
        return _Live(trial.number, None, arch, attrs)

    def _invalid(self, number: int | None, mirror: optuna.Trial | None, e: SpecError) -> None:
        """An architecture that cannot exist: a failed trial with the reason, never run."""
        attrs = {"fail_reason": f"invalid architecture: {e}", "status": "failed"}
        number = self._record(number, mirror, TrialState.FAIL, None, attrs)
        self.tally.add(TrialState.FAIL, None, attrs, number)
        self.log(_line(number, "failed", attrs["fail_reason"]))
        return None

    def _settled(self, number: int | None, mirror: optuna.Trial | None, arch: Arch, attrs: dict) -> bool:
        """Whether the architecture needs no run: evaluated before (told again now) or running (told later)."""
        h = arch.hash
        if h in self.known:
            self._tell_duplicate(number, mirror, attrs, self.known[h])
            return True
        if any(live.arch.hash == h for live in self.live.values()):
            self.waiting.setdefault(h, []).append((number, mirror, attrs))
            return True
        return False

    def _record(self, number: int | None, mirror: optuna.Trial | None, state: TrialState,
                values: list[float] | None, attrs: dict) -> int:
        """Tell a trial's outcome to the storage (creating the trial when it is not there yet) and to the copy."""
        if number is None:
            number = self.rec.create(state, values, self.copy.get(mirror.number), attrs)
        else:
            self.rec.finish(number, state, values, attrs)
        if mirror is None:
            self.sampling.add_trial(self.rec.get(number))
        else:
            if state == TrialState.COMPLETE and self.study.constraints:
                self.copy.storage.set_trial_system_attr(self.copy.trial_id(mirror.number), CONSTRAINTS_KEY,
                                                        self.rec.violations(attrs))
            self.sampling.tell(mirror, values if state == TrialState.COMPLETE else None, state=state)
        return number

    def _tell_duplicate(self, number: int | None, mirror: optuna.Trial | None, attrs: dict,
                        original: FrozenTrial) -> None:
        copied = {k: v for k, v in original.user_attrs.items() if k not in ("named", "retry_of", "in_space")}
        copied.update({k: attrs[k] for k in ("named", "retry_of") if k in attrs}, duplicate_of=original.number)
        number = self._record(number, mirror, original.state, original.values, copied)
        self.tally.add(original.state, original.values, copied, number)
        self.log(_line(number, f"= #{original.number}", _summary(original.state, copied)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna how the trial ended: COMPLETE, PRUNED (stopped by ASHA) or FAIL with a reason."""
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        try:
            state, values, attrs = self._outcome(result, error, trial_id)
            self._record(live.number, live.mirror, state, values, attrs)
            frozen = self.rec.get(live.number)
        except Exception as e:  # a storage failure ends the search with a message, not a Ray Tune traceback
            self.abort = f"cannot record trial {live.number} in {self.study.storage}: {type(e).__name__}: {e}"
            return
        self.tally.add(state, values, attrs, live.number)
        self._remember(frozen)
        self.log(_line(live.number, _status(state, attrs), _summary(state, {**live.attrs, **attrs})))
        if attrs.get("setup_error"):
            self.abort = attrs["fail_reason"]
        for number, mirror, dup_attrs in self.waiting.pop(live.arch.hash, []):
            self._tell_duplicate(number, mirror, dup_attrs, frozen)

    def _outcome(self, result: dict | None, error: bool, trial_id: str) -> tuple[TrialState, list[float] | None, dict]:
        if error or not result:
            reason = self.errors.get(trial_id) or "the trial's worker stopped without a result"
            return TrialState.FAIL, None, {"fail_reason": f"worker error: {reason}", "status": "failed",
                                           "deterministic": False}
        unmeasured = set(result.get("unmeasured") or ())
        attrs = {k: result[k] for k in (*REPORT_KEYS, *METRICS) if k in result and k not in unmeasured}
        status = result.get("status")
        if status == "failed":
            attrs["fail_reason"] = result.get("reason") or "failed"
            return TrialState.FAIL, None, attrs
        names = self.study.metric_names
        missing = [m for m in names if m not in unmeasured and not isinstance(result.get(m), (int, float))]
        bad = [m for m in names if m not in missing and not math.isfinite(result.get(m, 0.0))]
        if missing or bad:
            reason = (f"the report lacks objective(s) {', '.join(missing)}" if missing else
                      "non-finite metric: " + ", ".join(f"{m} is {result[m]}" for m in bad))
            attrs.update(fail_reason=reason, status="failed")
            return TrialState.FAIL, None, attrs
        if status == "running":  # the last report was not the last epoch: ASHA stopped the trial
            attrs["status"] = "pruned"
            return TrialState.PRUNED, None, attrs
        if status not in ("complete", "infeasible"):
            attrs.update(fail_reason=f"unexpected report status {status!r}", status="failed")
            return TrialState.FAIL, None, attrs
        if status == "infeasible":
            attrs.update(infeasible=result.get("reason", ""), trained=False)
        attrs["feasible"] = all(v <= 0 for v in self.rec.violations(attrs))
        # An objective never measured (accuracy of an infeasible, untrained trial) is told as the worst value.
        values = [float(result[m]) if m not in unmeasured else _worst(m, d)
                  for m, d in zip(names, self.study.directions)]
        return TrialState.COMPLETE, values, attrs

    def interrupt(self) -> int:
        """Fail and re-queue every trial still out (the run is stopping); return how many."""
        pending = [live.number for live in self.live.values()]
        pending += [number for dups in self.waiting.values() for number, _, _ in dups if number is not None]
        for number in pending:
            with contextlib.suppress(Exception):
                self.rec.requeue(self.rec.get(number))
        self.live.clear()
        self.waiting.clear()
        return len(pending)

    def save(self, checkpoint_path: str) -> None:
        """Write which study this is: the searcher's state is the RDB storage itself."""
        Path(checkpoint_path).write_text(json.dumps({"storage": self.study.storage, "study": self.study.name}))

    def restore(self, checkpoint_path: str) -> None:
        """Check a checkpoint belongs to this study (the state is in the storage)."""
        saved = json.loads(Path(checkpoint_path).read_text())
        if saved != {"storage": self.study.storage, "study": self.study.name}:
            raise NasError(f"searcher checkpoint {checkpoint_path} belongs to another study ({saved})")


def _worst(metric: str, direction: str) -> float:
    """The value told for an objective never measured (the accuracy of an untrained, infeasible trial)."""
    if metric == "accuracy":
        return 0.0
    return -math.inf if direction == "maximize" else math.inf


def _status(state: TrialState, attrs: dict) -> str:
    if state == TrialState.COMPLETE:
        return "infeasible" if not attrs.get("feasible", True) else "complete"
    return {TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}.get(state, state.name.lower())


def _summary(state: TrialState, attrs: dict) -> str:
    """The metrics of a finished trial in one short line."""
    if state == TrialState.FAIL:
        return str(attrs.get("fail_reason", ""))
    parts = []
    if "accuracy" in attrs and attrs.get("trained", True):
        parts.append(f"acc {attrs['accuracy']:.4f}")
    if "latency_ms" in attrs:
        parts.append(f"{attrs['latency_ms']:.3f} ms")
    parts += [f"{k} {human(attrs[k])}" for k in ("params", "macs") if k in attrs]
    parts += [f"{k} {attrs[k]:.4g}" for k in ("synflow", "naswot", "snip") if k in attrs]
    if attrs.get("planned_epochs"):
        parts.append(f"{attrs.get('epochs', 0)}/{attrs['planned_epochs']} ep")
    if "seconds" in attrs:
        parts.append(f"{attrs['seconds']:.1f}s")
    if attrs.get("named"):
        parts.append(f"[{attrs['named']}]")
    if attrs.get("infeasible"):
        parts.append(f"({attrs['infeasible']})")
    elif not attrs.get("feasible", True):
        parts.append("(violates a constraint)")
    return "  ".join(parts)


def _line(number: int, status: str, text: str) -> str:
    return f"  #{number:<4d} {status:<10s} {text}"


# -- progress and errors ----------------------------------------------------------------------------------------------
class Progress(Callback):
    """A status line every `every` seconds, and the error text of failed workers for the searcher."""

    def __init__(self, searcher: StudySearcher, every: float, log: Log):
        self.searcher, self.every, self.log = searcher, every, log
        self.last = time.monotonic()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Hand the worker's error to the searcher (it is told the trial failed, not why)."""
        with contextlib.suppress(Exception):
            err = trial.get_error()
            text = " ".join(str(err).split()) if err else ""
            self.searcher.errors[trial.trial_id] = text[-400:] or "unknown error"

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Print the status line when it is due."""
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self.log(status_line(self.searcher))


def status_line(searcher: StudySearcher) -> str:
    """Trials done / running / failed, the size of the Pareto front, and the best accuracy within the constraints."""
    study, t = searcher.study, searcher.tally
    front = pareto_numbers(t.points, study.directions)
    line = (f"  [status] {t.done} done ({t.complete} complete, {t.pruned} pruned, {t.failed} failed"
            + (f", {t.infeasible} infeasible" if t.infeasible else "") + f"), {len(searcher.live)} running, "
            f"front {len(front)}")
    if t.points:
        names = study.metric_names
        i = names.index("accuracy") if "accuracy" in names else 0
        sign = 1.0 if study.directions[i] == "maximize" else -1.0
        number, values = max(t.points, key=lambda p: sign * p[1][i])
        line += f", best {names[i]} {values[i]:.4g} (#{number})" + (" within constraints" if study.constraints else "")
    return line


def pareto_numbers(points: list[tuple[int, list[float]]], directions: list[str]) -> list[int]:
    """Numbers of the non-dominated points."""
    sign = [1.0 if d == "minimize" else -1.0 for d in directions]
    keyed = [(n, [s * v for s, v in zip(sign, vals)]) for n, vals in points]
    return [n for n, a in keyed
            if not any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for _, b in keyed)]


# -- the run ----------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """How a search run ended."""

    ostudy: optuna.Study
    interrupted: bool
    seconds: float
    ran: int  # trials run by this invocation
    recovered: int  # interrupted trials of an earlier run re-queued at the start
    aborted: str | None = None


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


def run_search(study: Study, *, address: str | None = None, trials: int | None = None, minutes: float | None = None,
               fresh: bool = False, evaluate: Evaluate | None = None, log: Log = print,
               status_every: float = 30.0) -> Outcome:
    """Run (or resume) the search of `study` until its budget is spent; the record is the Optuna storage."""
    budget_trials = trials if trials is not None else study.budget.trials
    budget_minutes = minutes if minutes is not None else study.budget.minutes
    with driver_lock(study):
        storage = storage_of(study)
        ostudy = open_study(study, storage, fresh=fresh)
        rec = Recorder(ostudy, study, storage)
        recovered = rec.recover()
        if not ostudy.get_trials(deepcopy=False):
            seeded = rec.seed_named()
            if seeded:
                log(f"seeded {len(seeded)} named point(s), evaluated first: {', '.join(seeded)}")
        elif recovered:
            log(f"resuming: {recovered} interrupted trial(s) marked failed and re-queued")
        spent = float(ostudy.user_attrs.get("search_seconds", 0.0))
        deadline = None if budget_minutes is None else time.monotonic() + budget_minutes * 60 - spent
        start = time.monotonic()
        searcher = StudySearcher(ostudy, study, storage, budget_trials=budget_trials, deadline=deadline, log=log)
        done_before = searcher.counted
        if searcher.exhausted():
            log(f"the budget is already spent ({done_before} trials, {spent / 60:.1f} min): nothing to run "
                "(raise it with --trials or --minutes)")
            return Outcome(ostudy, interrupted=False, seconds=0.0, ran=0, recovered=recovered)
        interrupted = True
        try:
            with _ray(address or study.address) as resources:
                concurrency = study.concurrency or _concurrency(study, resources)
                log(f"searching '{study.name}': {_budget_text(budget_trials, budget_minutes, done_before, spent)}, "
                    f"{concurrency} trial(s) at a time on {resources.get('CPU', 0):g} CPU(s)"
                    + (f" and {resources.get('GPU', 0):g} GPU(s)" if resources.get("GPU") else "")
                    + f"; storage {study.storage}")
                interrupted = _fit(study, searcher, concurrency, evaluate, log, status_every)
        finally:
            requeued = searcher.interrupt()
            interrupted = interrupted or requeued > 0
            with contextlib.suppress(Exception):
                ostudy.set_user_attr("search_seconds", spent + time.monotonic() - start)
        log(status_line(searcher))
        return Outcome(ostudy, interrupted=interrupted and not searcher.abort, seconds=time.monotonic() - start,
                       ran=searcher.counted - done_before, recovered=recovered, aborted=searcher.abort)


def _budget_text(trials: int | None, minutes: float | None, done: int, spent: float) -> str:
    parts = []
    if trials is not None:
        parts.append(f"{trials} trials ({done} done)" if done else f"{trials} trials")
    if minutes is not None:
        parts.append(f"{minutes:g} min" + (f" ({spent / 60:.1f} spent)" if spent > 1 else ""))
    return " or ".join(parts)


def _concurrency(study: Study, resources: dict) -> int:
    """As many trials as the cluster's CPUs (and GPUs) allow."""
    n = int(resources.get("CPU", 1) // study.resources.cpu)
    if study.resources.gpu > 0:
        n = min(n, int(resources.get("GPU", 0) // study.resources.gpu))
    if n < 1:
        raise NasError(f"{study.source}: resources {dataclasses.asdict(study.resources)} per trial do not fit the "
                       f"cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)")
    return n


@contextlib.contextmanager
def _ray(address: str | None) -> Iterator[dict]:
    """Connect to Ray: the session already open in this process, the cluster at `address`, or a new local one.

    Only a Ray started here is shut down here (never `ray stop`: it kills every Ray process on the machine).
    """
    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(address="local", include_dashboard=False)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise NasError(f"cannot start or join Ray at {address or 'a new local instance'}: {e}") from None
        started = True
    try:
        yield ray.cluster_resources()
    finally:
        if started:
            ray.shutdown()


def _fit(study: Study, searcher: StudySearcher, concurrency: int, evaluate: Evaluate | None, log: Log,
         status_every: float) -> bool:
    """Run the Ray Tune experiment; return whether it was interrupted."""
    job = Job.from_study(study)
    trainable = tune.with_parameters(run_trial, job=job, evaluate_fn=evaluate)
    trainable = tune.with_resources(trainable, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    es = study.early_stopping
    scheduler = (ASHAScheduler(time_attr="epoch", metric="accuracy", mode="max", max_t=job.epochs,
                               grace_period=es.grace_period, reduction_factor=es.reduction_factor)
                 if es is not None and job.epochs > es.grace_period else FIFOScheduler())
    callback = Progress(searcher, status_every, log)

    class _Stop(tune.Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return searcher.abort is not None

    # The RDB is the record: no per-trial result files, and no Ray Tune tables or resume hints on the terminal.
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    workdir = tempfile.mkdtemp(prefix=f"nas-{study.name}-")
    quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=study.name, storage_path=workdir, verbose=0, callbacks=[callback],
                                      stop=_Stop(), failure_config=tune.FailureConfig(max_failures=0),
                                      log_to_file=False),
        )
        tuner.fit()
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(workdir, ignore_errors=True)
    return bool(searcher.live) or not (searcher.exhausted() or searcher.abort)


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.config.get('number', trial.trial_id)}"


# -- reading the result -----------------------------------------------------------------------------------------------
def front(ostudy: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front: complete, feasible, non-dominated trials (duplicates collapsed to their original)."""
    return [t for t in ostudy.best_trials if "duplicate_of" not in t.user_attrs]


def trial_row(t: FrozenTrial, names: list[str]) -> dict[str, Any]:
    """A table row of a trial: number, tag, objectives, cost, epochs, hash."""
    row: dict[str, Any] = {"trial": t.number, "named": t.user_attrs.get("named", "")}
    for i, name in enumerate(names):
        row[name] = t.values[i] if t.values else t.user_attrs.get(name)
    for k in ("params", "macs"):
        if k not in names and k in t.user_attrs:
            row[k] = t.user_attrs[k]
    if "epochs" in t.user_attrs and t.user_attrs.get("planned_epochs"):
        row["epochs"] = t.user_attrs["epochs"]
    row["hash"] = t.user_attrs.get("hash", "")
    return row


def named_standing(ostudy: optuna.Study) -> list[dict[str, Any]]:
    """Where each seeded named point stands: on the front, dominated (by which trial), infeasible, or failed."""
    names = ostudy.metric_names or [f"objective {i}" for i in range(len(ostudy.directions))]
    sign = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in ostudy.directions]
    best = front(ostudy)
    on_front = {t.number for t in best}
    out = []
    for t in ostudy.get_trials(deepcopy=False):
        if not t.user_attrs.get("named") or "duplicate_of" in t.user_attrs or t.user_attrs.get("interrupted"):
            continue
        row = trial_row(t, names)
        if t.state == TrialState.COMPLETE and t.number in on_front:
            row["standing"] = "on the Pareto front"
        elif t.state == TrialState.COMPLETE and not t.user_attrs.get("feasible", True):
            row["standing"] = "infeasible: " + str(t.user_attrs.get("infeasible") or "violates a constraint")
        elif t.state == TrialState.COMPLETE:
            mine = [s * v for s, v in zip(sign, t.values)]
            doms = [b for b in best if all(s * v <= m for s, v, m in zip(sign, b.values, mine))]
            row["standing"] = f"dominated by #{doms[0].number}" if doms else "dominated"
        elif t.state == TrialState.PRUNED:
            row["standing"] = f"stopped early after {t.user_attrs.get('epochs', '?')} epoch(s)"
        else:
            row["standing"] = f"failed: {t.user_attrs.get('fail_reason', '')}"
        out.append(row)
    return out
