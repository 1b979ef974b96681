"""The Ray Tune searcher that drives an Optuna study: what to try next, and how each trial ended.

Why a searcher of our own rather than `ray.tune.search.optuna.OptunaSearch` (each is a pitfall of that integration on
Ray 2.60 / Optuna 5.0):
- a trial stopped early by ASHA must be PRUNED, not COMPLETE with its partial accuracy;
- a NaN/inf metric or a missing objective must fail the one trial with a reason, not leave it RUNNING forever or
  abort the experiment (the trainable also always reports every objective);
- an architecture the sampler proposes again (same hash) is not evaluated again: the stored result is told again,
  with the user attribute `duplicate_of`;
- named points are enqueued trials, run first; one outside the space is evaluated from its stored architecture;
- the searcher's state is the RDB storage itself, so nothing unpicklable is checkpointed (a closure as the search
  space would not be) and Ray Tune's experiment restore is not needed: running the same command again resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from nas.format import human
from nas.record.store import CONSTRAINTS_KEY, NAMED_PARAM, SYSTEM_KEYS, Recorder
from nas.record.trials import arch_attr, counts_toward_budget, pareto_numbers, stored_arch
from nas.run.sampling import make_sampler
from nas.study import METRICS, Study
from nas.views.notes import write_study_note, write_trial_note
from space import Arch
from space.errors import NasError, SpecError

Log = Callable[[str], None]


def say(line: str) -> None:
    """Print one line. Ray Tune pickles the searcher and its callbacks with their `log`; the builtin `print` pickles
    by reference and fails once something (Ray's own print patching) has replaced `builtins.print`, this does not."""
    print(line)

Told = tuple[TrialState, list[float] | None, dict]  # what Optuna is told: state, values, user attributes




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
    infeasible: int = 0  # complete but violating a constraint, or never trained because of one
    untrained: int = 0  # stopped before training by a constraint (counted in `infeasible` too)
    duplicates: int = 0  # proposals of an architecture evaluated before: its result reused, not an evaluation
    invalid: int = 0  # proposals that are no valid architecture: refused, not an evaluation
    points: list[tuple[int, list[float]]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Finished trials (every state)."""
        return self.complete + self.pruned + self.failed + self.untrained

    def add(self, state: TrialState, values: list[float] | None, attrs: dict, number: int) -> None:
        """Count one finished trial."""
        if state == TrialState.COMPLETE or is_duplicate(attrs):
            self.complete += 1
            if not attrs.get("feasible", True):
                self.infeasible += 1
            elif "duplicate_of" not in attrs:  # a duplicate would be a second copy of the same point
                self.points.append((number, list(values or [])))
        elif state == TrialState.PRUNED and is_untrained(attrs):
            self.untrained += 1
            self.infeasible += 1
        elif state == TrialState.PRUNED:
            self.pruned += 1
        else:
            self.failed += 1
            self.invalid += bool(attrs.get("invalid"))
        if "duplicate_of" in attrs:
            self.duplicates += 1


def is_untrained(attrs: dict) -> bool:
    """Whether a trial was stopped before training because a constraint already failed (stored PRUNED)."""
    return attrs.get("status") == "infeasible"


def is_duplicate(attrs: dict) -> bool:
    """Whether a trial repeats a complete trial's architecture (stored PRUNED: the dashboard lists each point once)."""
    return attrs.get("status") == "duplicate"


def for_sampler(t: FrozenTrial, study: Study) -> FrozenTrial:
    """The trial as the sampler sees it: an untrained infeasible trial is COMPLETE with its worst accuracy.

    The storage keeps it PRUNED with no values (nothing invented is shown as measured); the in-memory copy that the
    sampler learns from gets the measured objectives and the worst value for the unmeasured ones, plus its
    constraint values, so the sampler learns to avoid the region. A duplicate of a complete trial (stored PRUNED with
    its original's figures as attributes) is COMPLETE with those figures. No trial carries its intermediate values.
    """
    if t.state != TrialState.PRUNED or not (is_untrained(t.user_attrs) or is_duplicate(t.user_attrs)):
        if not t.intermediate_values:
            return t
        # The learning curve is for the dashboard: multi-objective TPE cannot rank pruned trials by it (it asks the
        # study for a single direction), so the sampler's copy goes without.
        return optuna.trial.create_trial(state=t.state, values=t.values, params=t.params,
                                         distributions=t.distributions, user_attrs=t.user_attrs,
                                         system_attrs=t.system_attrs)
    values = [float(t.user_attrs[m]) if isinstance(t.user_attrs.get(m), (int, float)) else _worst(m, d)
              for m, d in zip(study.metric_names, study.directions)]
    return optuna.trial.create_trial(state=TrialState.COMPLETE, values=values, params=t.params,
                                     distributions=t.distributions, user_attrs=t.user_attrs,
                                     system_attrs=t.system_attrs)


REPORT_KEYS = ("status", "epochs", "planned_epochs", "seconds", "history", "node", "host", "fingerprint",
               "latency_iqr_ms", "latency_loaded", "latency_load", "latency_cached", "latency_remeasured",
               "latency_noisy", "latency_first_ms", "latency_first_iqr_ms",
               "params_train", "macs_train", "setup_error", "seed", "repeat", "target_hash", "train_images",
               "val_images", "losses", "classes", "label_smoothing")
MAX_IDLE_PROPOSALS = 100  # proposals in a row that are duplicates or invalid before the space counts as exhausted


class StudySearcher(Searcher):
    """Ray Tune searcher over an Optuna study: suggest = ask + sample, on_trial_complete = tell the right state.

    The sampler works on an in-memory copy of the study (finished trials loaded at the start, each new trial told to
    both): sampling a define-by-run architecture on the RDB directly costs a storage round trip per parameter,
    several times the whole per-trial budget. The storage gets each trial in one write when it starts and its
    outcome when it ends. Named points and re-queued trials are popped from the storage's own queue, in order.
    """

    def __init__(self, ostudy: optuna.Study, study: Study, storage: optuna.storages.BaseStorage, *,
                 budget_trials: int | None = None, deadline: float | None = None, log: Log = say):
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
        self.tune_trials: dict[str, Any] = {}  # Ray Tune trial id -> its Trial (registered by the Progress callback)
        self.abort: str | None = None
        self.counted = 0
        trials = ostudy.get_trials(deepcopy=False)
        self.queued = sum(t.state == TrialState.WAITING for t in trials)  # one driver per study: only we enqueue
        memory = optuna.storages.InMemoryStorage()
        self.sampling = optuna.create_study(storage=memory, directions=study.directions,
                                            sampler=make_sampler(study.sampler, study.sampler.seed + len(trials)))
        self.sampling.add_trials([for_sampler(t, study) for t in trials if t.state.is_finished()])
        self.copy = Recorder(self.sampling, study, memory)
        with contextlib.suppress(Exception):  # the dashboard's study note is a courtesy, never a reason to stop
            write_study_note(ostudy, study)
        self.idle = 0  # proposals in a row that needed no evaluation
        for t in trials:
            if t.state.is_finished() and not t.user_attrs.get("interrupted"):
                self.counted += counts_toward_budget(t)
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
            if self.abort or (self.exhausted() and not self.live):
                return Searcher.FINISHED
            if self.exhausted():
                return None  # not finished while trials run: one lost to a dead node or worker is re-queued
            if self.idle >= MAX_IDLE_PROPOSALS and not self.queued:
                if self.live:
                    return None  # wait for the running trials instead of proposing their duplicates forever
                self.abort = (f"the sampler proposed {self.idle} architectures in a row that were evaluated before "
                              "or invalid: the space looks exhausted")
                continue
            live = self._from_queue() if self.queued else self._sample()
            if live is None:
                self.idle += 1
                continue
            self.idle = 0
            self.counted += 1  # the budget counts evaluations: a reused duplicate or a refused proposal is none
            self.live[trial_id] = live
            return {"arch": live.attrs["arch"], "hash": live.arch.hash, "number": live.number,
                    "named": live.attrs.get("named")}

    def _sample(self) -> _Live | None:
        """Ask the sampler (on the in-memory copy) for an architecture and record the trial in the storage."""
        mirror = self.sampling.ask()
        try:
            arch = self.study.space.sample(mirror)
            arch, attrs = self._adapted(arch)
        except SpecError as e:
            return self._invalid(None, mirror, e)
        if self._settled(None, mirror, arch, attrs):
            return None
        number = self.rec.create(TrialState.RUNNING, None, self.copy.get(mirror.number), attrs)
        return _Live(number, mirror, arch, attrs)

    def _from_queue(self) -> _Live | None:
        """Pop the storage's next enqueued trial: a named point (maybe outside the space) or a re-queued one."""
        self.queued -= 1
        trial = self.ostudy.ask()
        attrs = {k: v for k, v in trial.user_attrs.items() if k in ("named", "retry_of", "in_space")}
        text = stored_arch(self.rec.get(trial.number))  # a point outside the space carries its architecture
        try:
            if text and not trial.params:
                arch = Arch.from_yaml(text)
            else:
                arch = self.study.space.sample(trial)  # every parameter is fixed by the queue
        except SpecError as e:
            return self._invalid(trial.number, None, e)
        if attrs.get("named"):
            arch = dataclasses.replace(arch, name=attrs["named"])
            name = str(attrs["named"])
            trial.suggest_categorical(NAMED_PARAM + name, [name])  # the dashboard shows it on hover (store.py)
        try:
            arch, more = self._adapted(arch)
        except SpecError as e:
            return self._invalid(trial.number, None, e)
        attrs.update(more)
        if self._settled(trial.number, None, arch, attrs):
            return None
        for k, v in more.items():
            if k in SYSTEM_KEYS:
                self.rec.storage.set_trial_system_attr(self.rec.trial_id(trial.number), k, v)
            else:
                trial.set_user_attr(k, v)
        return _Live(trial.number, None, arch, attrs)

    def _adapted(self, arch: Arch) -> tuple[Arch, dict]:
        """The architecture the trial evaluates (adapted to the input, see space.adapt) and its attributes."""
        ev = self.study.evaluator
        attrs: dict[str, Any] = {}
        if ev.adapt_min_feature is not None:
            from space.adapt import adapt_input

            adaptation = adapt_input(arch, ev.adapt_resolution, ev.adapt_min_feature)
            if adaptation.changes:
                arch = adaptation.arch
                attrs.update(adapted=adaptation.label, adaptation=", ".join(adaptation.changes))
        arch = arch.validate()
        attrs.update(arch=arch_attr(arch), hash=arch.hash)
        return arch, attrs

    def _invalid(self, number: int | None, mirror: optuna.Trial | None, e: SpecError) -> None:
        """An architecture that cannot exist: a failed trial with the reason, never run (and no evaluation)."""
        attrs = {"fail_reason": f"invalid architecture: {e}", "status": "failed", "invalid": True}
        number = self._record(number, mirror, TrialState.FAIL, None, attrs)
        self._note(number)
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
            self.sampling.add_trial(for_sampler(self.rec.get(number), self.study))
        else:
            if state == TrialState.PRUNED and (is_untrained(attrs) or is_duplicate(attrs)):
                state, values = TrialState.COMPLETE, for_sampler(self.rec.get(number), self.study).values
            if state == TrialState.COMPLETE and self.study.constraints:
                self.copy.storage.set_trial_system_attr(self.copy.trial_id(mirror.number), CONSTRAINTS_KEY,
                                                        self.rec.violations(attrs))
            self.sampling.tell(mirror, values if state == TrialState.COMPLETE else None, state=state)
        return number

    def _tell_duplicate(self, number: int | None, mirror: optuna.Trial | None, attrs: dict,
                        original: FrozenTrial) -> None:
        """Tell a proposal of an architecture evaluated before: the original's figures, stored as attributes.

        A duplicate of a complete trial is stored PRUNED (status `duplicate`), not COMPLETE with the same values: the
        dashboard's best trials would list the architecture once per copy (the sampler's copy still sees COMPLETE).
        """
        copied = {k: v for k, v in original.user_attrs.items() if k not in ("named", "retry_of", "in_space")}
        copied.update({k: attrs[k] for k in ("named", "retry_of") if k in attrs}, duplicate_of=original.number,
                      arch=attrs.get("arch") or stored_arch(original))
        state = original.state
        if state == TrialState.COMPLETE:
            state, copied["status"] = TrialState.PRUNED, "duplicate"
        number = self._record(number, mirror, state, None, copied)
        self._note(number)
        self.tally.add(state, original.values, copied, number)
        self.log(_line(number, f"= #{original.number}", _summary(original.state, copied)))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Store an epoch's validation accuracy as the trial's intermediate value (the dashboard's learning curve)."""
        live = self.live.get(trial_id)
        epoch, accuracy = result.get("epoch"), result.get("accuracy")
        if live is None or not isinstance(epoch, int) or "accuracy" in (result.get("unmeasured") or ()):
            return
        if isinstance(accuracy, (int, float)) and math.isfinite(accuracy):
            with contextlib.suppress(Exception):  # a curve point is a courtesy; the final report carries them all
                self.rec.storage.set_trial_intermediate_value(self.rec.trial_id(live.number), epoch, float(accuracy))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna how the trial ended: COMPLETE, PRUNED (stopped by ASHA) or FAIL with a reason."""
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        tune_trial = self.tune_trials.pop(trial_id, None)
        if (error or not result) and self._requeue_lost(live, tune_trial):
            return
        try:
            state, values, attrs = self._outcome(result, error, tune_trial)
            self._record(live.number, live.mirror, state, values, attrs)
            frozen = self.rec.get(live.number)
        except Exception as e:  # a storage failure ends the search with a message, not a Ray Tune traceback
            self.abort = f"cannot record trial {live.number} in {self.study.storage}: {type(e).__name__}: {e}"
            return
        self.tally.add(state, values, attrs, live.number)
        self._remember(frozen)
        self._note(live.number, frozen)
        self.log(_line(live.number, _status(state, attrs), _summary(state, {**live.attrs, **attrs})))
        if attrs.get("setup_error"):
            self.abort = attrs["fail_reason"]
        for number, mirror, dup_attrs in self.waiting.pop(live.arch.hash, []):
            self._tell_duplicate(number, mirror, dup_attrs, frozen)

    def _requeue_lost(self, live: _Live, tune_trial: Any) -> bool:
        """Re-queue a trial whose worker or node died without a result; False when the loss is the architecture's.

        Ray cannot tell a worker killed from outside (a node lost, the kernel's OOM killer, an operator) from one that
        crashed by itself (a segfault in the trial), so a trial is re-queued once: lost again, it fails. A kill by
        Ray's memory monitor is the trial's own memory use and fails at once.
        """
        reason = _error_text(tune_trial) or "the trial's worker stopped without a result"
        if _out_of_memory(reason):
            return False
        previous = live.attrs.get("retry_of")
        try:
            if previous is not None and self.rec.get(int(previous)).user_attrs.get("lost_worker"):
                return False  # its previous run was lost too: failed as a worker error
            self.rec.storage.set_trial_user_attr(self.rec.trial_id(live.number), "lost_worker", reason)
            self.rec.requeue(self.rec.get(live.number))
        except Exception as e:  # the storage is gone: end the search with a message
            self.abort = f"cannot re-queue trial {live.number} in {self.study.storage}: {type(e).__name__}: {e}"
            return True
        if live.mirror is not None:
            self.sampling.tell(live.mirror, None, state=TrialState.FAIL)
        self.queued += 1
        self.counted -= 1  # the retry is counted when it runs
        self.log(_line(live.number, "re-queued", f"its worker was lost ({reason})"))
        return True

    def _note(self, number: int, frozen: FrozenTrial | None = None) -> None:
        """Write the trial's dashboard note (a failure to write it is logged, never the end of the search)."""
        try:
            write_trial_note(self.ostudy, self.study, frozen or self.rec.get(number))
        except Exception as e:
            self.log(_line(number, "note", f"cannot write the dashboard note: {type(e).__name__}: {e}"))

    def _outcome(self, result: dict | None, error: bool, tune_trial: Any) -> Told:
        if error or not result:
            reason = _error_text(tune_trial) or "the trial's worker stopped without a result"
            # Ray's memory monitor kills a worker with "OutOfMemoryError: ... node running low on memory".
            kind = "out of memory" if _out_of_memory(reason) else "worker error"
            return TrialState.FAIL, None, {"fail_reason": f"{kind}: {reason}", "status": "failed",
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
        attrs["feasible"] = all(v <= 0 for v in self.rec.violations(attrs))
        if status == "infeasible":
            # Never trained: stored PRUNED with what was measured as attributes and no invented objective value.
            attrs.update(infeasible=result.get("reason", ""), trained=False, feasible=False, status="infeasible")
            return TrialState.PRUNED, None, attrs
        return TrialState.COMPLETE, [float(result[m]) for m in names], attrs

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


def _out_of_memory(reason: str) -> bool:
    return "OutOfMemoryError" in reason or "low on memory" in reason


def _error_text(tune_trial: Any) -> str:
    """The last line of the error Ray Tune recorded for a trial whose worker failed."""
    try:
        err = tune_trial.get_error() if tune_trial is not None else None
    except Exception:  # the error file may be gone; the reason then says the worker stopped
        return ""
    lines = [line.strip() for line in str(err or "").splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def _worst(metric: str, direction: str) -> float:
    """The value the sampler's copy gets for an objective never measured (the accuracy of an untrained trial)."""
    if metric == "accuracy":
        return 0.0
    return -math.inf if direction == "maximize" else math.inf


def _status(state: TrialState, attrs: dict) -> str:
    if state == TrialState.COMPLETE:
        return "infeasible" if not attrs.get("feasible", True) else "complete"
    if is_untrained(attrs):
        return "infeasible"
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
    if attrs.get("planned_epochs") and attrs.get("trained", True):
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
    """A status line every `every` seconds; hands the searcher each Ray Tune trial (for the errors of dead workers)."""

    def __init__(self, searcher: StudySearcher, every: float, log: Log):
        self.searcher, self.every, self.log = searcher, every, log
        self.last = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Let the searcher find the trial's recorded error if its worker dies (it is told only the trial id)."""
        self.searcher.tune_trials[trial.trial_id] = trial

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Print the status line when it is due."""
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self.log(status_line(self.searcher))


def status_line(searcher: StudySearcher) -> str:
    """Trials done / running / failed, the size of the Pareto front, and the best accuracy within the constraints."""
    study, t = searcher.study, searcher.tally
    front = pareto_numbers(t.points, study.directions)
    line = (f"  [status] {searcher.counted} evaluated ({t.complete} complete, {t.pruned} pruned, "
            f"{t.failed - t.invalid} failed" + (f", {t.infeasible} infeasible" if t.infeasible else "") + ")"
            + (f", {t.duplicates} duplicate(s) reused" if t.duplicates else "")
            + (f", {t.invalid} invalid proposal(s)" if t.invalid else "")
            + f", {len(searcher.live)} running, front {len(front)}")
    if t.points:
        names = study.metric_names
        i = names.index("accuracy") if "accuracy" in names else 0
        sign = 1.0 if study.directions[i] == "maximize" else -1.0
        number, values = max(t.points, key=lambda p: sign * p[1][i])
        line += f", best {names[i]} {values[i]:.4g} (#{number})" + (" within constraints" if study.constraints else "")
    return line
