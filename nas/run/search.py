"""`run_search`: run (or resume) a study — Optuna decides what to try, Ray Tune runs it, the RDB records it.

The driver opens the study in its storage (`nas.record.store`), re-queues what a killed driver left running, seeds the
named points, and hands Ray Tune a `StudySearcher` (`nas.run.searcher`) and ASHA on accuracy; each trial runs
`nas.run.trial.run_trial` in a Ray worker — on this machine, or on the nodes of the cluster at `address`. Workers are
reused across trials (`reuse_actors`: about 0.2 s of start-up per trial instead of about 2 s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from nas.record.store import Recorder, driver_lock, open_study, storage_of
from nas.run.cluster import (
    GPU_SHARE_KEY,
    RayLost,
    calibrated_share,
    concurrency,
    connect,
    ray_gone,
    with_gpu_share,
)
from nas.run.searcher import Log, Progress, StudySearcher, say, status_line
from nas.run.trial import ASHA_EPOCH, Evaluate, Job, run_trial
from nas.study import Study
from nas.views.notes import write_learning_curves, write_study_note

# The engine's public surface: the run, and the pieces tools that read or drive a study use.
__all__ = ["run_search", "Outcome", "RayLost", "resume_command"]


@dataclass
class Outcome:
    """How a search run ended."""

    ostudy: optuna.Study
    interrupted: bool
    seconds: float
    ran: int  # trials run by this invocation
    recovered: int  # interrupted trials of an earlier run re-queued at the start
    aborted: str | None = None


def run_search(study: Study, *, address: str | None = None, trials: int | None = None, minutes: float | None = None,
               fresh: bool = False, evaluate: Evaluate | None = None, log: Log = say,
               status_every: float = 30.0) -> Outcome:
    """Run (or resume) the search of `study` until its budget is spent; the record is the Optuna storage."""
    budget_trials = trials if trials is not None else study.budget.trials
    budget_minutes = minutes if minutes is not None else study.budget.minutes
    with driver_lock(study):
        storage = storage_of(study)
        ostudy = open_study(study, storage, fresh=fresh)
        rec = Recorder(ostudy, study, storage)
        recovered = rec.recover()
        if recovered:
            log(f"resuming: {recovered} interrupted trial(s) marked failed and re-queued")
        seeded = rec.seed_named()
        if seeded:
            log(f"seeded {len(seeded)} named point(s), evaluated first: {', '.join(seeded)}")
        if study.final is not None and study.final.random:
            drawn = rec.seed_random(study.final.random)
            if drawn:
                log(f"seeded {len(drawn)} random baseline(s) for the final stage (drawn with the study seed)")
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
        lost: str | None = None
        try:
            with connect(address or study.address) as resources:
                share = calibrated_share(study, ostudy.user_attrs.get(GPU_SHARE_KEY), log)
                if share is not None:
                    ostudy.set_user_attr(GPU_SHARE_KEY, share)
                study = searcher.study = with_gpu_share(study, resources, share)
                slots = study.concurrency or concurrency(study, resources)
                log(f"searching '{study.name}': {_budget_text(budget_trials, budget_minutes, done_before, spent)}, "
                    f"{slots} trial(s) at a time on {resources.get('CPU', 0):g} CPU(s)"
                    + (f" and {resources.get('GPU', 0):g} GPU(s)" if resources.get("GPU") else "")
                    + f"; storage {study.storage}")
                interrupted = _fit(study, searcher, slots, evaluate, log, status_every)
        except RayLost as e:
            lost = str(e)
        finally:
            requeued = searcher.interrupt()
            interrupted = interrupted or requeued > 0
            with contextlib.suppress(Exception):
                ostudy.set_user_attr("search_seconds", spent + time.monotonic() - start)
        log(status_line(searcher))
        try:  # the dashboard's study note (states counted) and learning curves: a courtesy, never a reason to stop
            write_study_note(ostudy, study)
            write_learning_curves(ostudy)
        except Exception as e:
            log(f"cannot write the dashboard's study note or learning curves: {type(e).__name__}: {e}")
        if lost is not None:
            raise RayLost(f"{study.source}: Ray stopped under the search: {lost}; {requeued} running trial(s) "
                          f"re-queued; resume with: {resume_command(study, address, trials, minutes)}")
        return Outcome(ostudy, interrupted=interrupted and not searcher.abort, seconds=time.monotonic() - start,
                       ran=searcher.counted - done_before, recovered=recovered, aborted=searcher.abort)


def resume_command(study: Study, address: str | None, trials: int | None, minutes: float | None) -> str:
    """The `nas search` command that resumes this run (the same overrides, never --fresh)."""
    words = ["nas", "search", study.source]
    if address:
        words += ["--address", address]
    if trials is not None:
        words += ["--trials", str(trials)]
    if minutes is not None:
        words += ["--minutes", f"{minutes:g}"]
    return shlex.join(words)


WATCH_SECONDS = 2.0  # how often the driver checks that its Ray is still there


class _Watch(tune.Callback):
    """Checks between Ray Tune steps that the driver's Ray is up; once it is gone, `lost` says why."""

    def __init__(self) -> None:
        self.lost: str | None = None
        self.last = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Probe Ray every WATCH_SECONDS."""
        if self.lost is None and time.monotonic() - self.last >= WATCH_SECONDS:
            self.last = time.monotonic()
            self.lost = ray_gone()

    def __reduce__(self) -> tuple:
        return (_Watch, ())  # Ray Tune pickles its callbacks; the state is this run's only


class _Stop(tune.Stopper):
    """Ends the experiment when `should_stop()` says so (the searcher aborted, or Ray is gone)."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        """Whether to end the experiment."""
        return self.should_stop()

    def __reduce__(self) -> tuple:
        return (_Stop, (_never,))  # Ray Tune saves its stopper with the experiment; ours closes over the searcher


def _never() -> bool:
    return False


def _budget_text(trials: int | None, minutes: float | None, done: int, spent: float) -> str:
    parts = []
    if trials is not None:
        parts.append(f"{trials} trials ({done} done)" if done else f"{trials} trials")
    if minutes is not None:
        parts.append(f"{minutes:g} min" + (f" ({spent / 60:.1f} spent)" if spent > 1 else ""))
    return " or ".join(parts)


def _fit(study: Study, searcher: StudySearcher, concurrency: int, evaluate: Evaluate | None, log: Log,
         status_every: float) -> bool:
    """Run the Ray Tune experiment; return whether it was interrupted."""
    job = Job.from_study(study)
    trainable = tune.with_parameters(run_trial, job=job, evaluate_fn=evaluate)
    trainable = tune.with_resources(trainable, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    es = study.early_stopping
    scheduler = (ASHAScheduler(time_attr=ASHA_EPOCH, metric="accuracy", mode="max", max_t=job.epochs,
                               grace_period=es.grace_period, reduction_factor=es.reduction_factor)
                 if es is not None and job.epochs > es.grace_period else FIFOScheduler())
    callback = Progress(searcher, status_every, log)
    watch = _Watch()

    # The RDB is the record: no per-trial result files, and no Ray Tune tables or resume hints on the terminal.
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    workdir = tempfile.mkdtemp(prefix=f"nas-{study.name}-")
    quiet = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)  # a failed trial is reported by the searcher, with its reason
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=study.name, storage_path=workdir, verbose=0, callbacks=[callback, watch],
                                      stop=_Stop(lambda: searcher.abort is not None or watch.lost is not None),
                                      failure_config=tune.FailureConfig(max_failures=0), log_to_file=False),
        )
        try:
            tuner.fit()
        except Exception:
            gone = watch.lost or ray_gone()  # Ray Tune fails in many ways once Ray is gone: say that, not them
            if gone is None:
                raise
            raise RayLost(gone) from None
        if watch.lost is not None:
            raise RayLost(watch.lost)
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
