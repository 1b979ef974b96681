"""Seed repeats, run: an architecture's proxy trained again with other seeds, through Ray like the search.

`run_repeats` trains chosen trials again with repeats 1..k (a cluster or GPUs when there are some) and stores each
result at once (`nas.record.repeats`), so an interrupted run loses nothing and a second run trains only what is
missing. `train_many` is the runner the fidelity and final stages share.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.record.repeats import PREFIX, spread_of, store_mean, stored
from nas.record.trials import front, stored_arch
from nas.run.cluster import concurrency, connect, with_gpu_share
from nas.run.trial import Job, repeat_accuracy
from nas.study import Study
from nas.views.notes import refresh_arch_notes

Log = Callable[[str], None]


def choose(study: Study, ostudy: optuna.Study, which: Iterable[str] = ("front", "named"),
           numbers: Iterable[int] = ()) -> list[FrozenTrial]:
    """The trials to repeat: the front, the named points, all trained ones, and/or the given numbers (one per arch)."""
    trials = ostudy.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    picked: list[FrozenTrial] = []
    which = set(which)
    if "front" in which:
        picked += front(ostudy)
    for t in trials:
        if ("all" in which or ("named" in which and t.user_attrs.get("named"))) and spread_of(t, {}) is not None:
            picked.append(t)
    for n in numbers:
        t = by_number.get(n)
        if t is None or spread_of(t, {}) is None:
            from space.errors import NasError

            raise NasError(f"{study.source}: trial {n} is not a complete, trained trial of study '{study.name}'")
        picked.append(t)
    out, seen = [], set()
    for t in sorted(picked, key=lambda t: t.number):
        h = t.user_attrs.get("hash")
        if "duplicate_of" not in t.user_attrs and h not in seen:
            seen.add(h)
            out.append(t)
    return out


def run_repeats(study: Study, ostudy: optuna.Study, trials: list[FrozenTrial], seeds: int, *,
                address: str | None = None, log: Log = print) -> int:
    """Train repeats 1..`seeds` of each trial's architecture that are not stored yet, through Ray; return how many ran.

    Each result is stored as soon as it arrives, and the architecture's trials take the seed mean as their accuracy
    (`store_mean`: the value the dashboard plots). A repeat that fails is reported and left missing (run again to
    retry).
    """
    for h in {t.user_attrs["hash"] for t in trials}:  # repeats stored before the mean was: settle them now
        store_mean(ostudy, study, h)
    have = stored(ostudy)
    todo = [(t, k) for t in trials for k in range(1, seeds + 1) if k not in have.get(t.user_attrs["hash"], {})]
    if not todo:
        return 0
    log(f"repeats: training {len(todo)} more seed(s) of {len({t.number for t, _ in todo})} architecture(s) "
        f"({study.evaluator.describe_proxy()})")

    def keep(t: FrozenTrial, k: int, record: dict) -> None:
        ostudy.set_user_attr(f"{PREFIX}{t.user_attrs['hash']}:{k}", record)
        store_mean(ostudy, study, t.user_attrs["hash"])
        try:  # the dashboard notes of the architecture's trials show the new spread
            refresh_arch_notes(ostudy, study, t.user_attrs["hash"])
        except Exception as e:
            log(f"  #{t.number:<4d} cannot rewrite the dashboard note: {type(e).__name__}: {e}")
        log(f"  #{t.number:<4d} repeat {k}: accuracy {record['accuracy']:.4f} (seed {record['seed']}, "
            f"{record['seconds']:.1f} s)")

    return train_many(study, Job.from_study(study), todo, keep, address=address, log=log)


def train_many(study: Study, job: Any, todo: list[tuple[FrozenTrial, int]],
               keep: Callable[[FrozenTrial, int, dict], None], *, address: str | None = None,
               log: Log = print) -> int:
    """Train each (trial's architecture, repeat index) with `job` as Ray tasks placed like the search's trials.

    `keep` stores each result as it arrives (so an interrupted run loses nothing); a failed one is reported and
    left out. Returns how many were kept.
    """
    import ray

    done = 0
    with connect(address or study.address) as resources:
        study = with_gpu_share(study, resources)
        if "device" not in job.evaluator.train:  # `gpu: auto` is known only now: train where the trial reserves
            job = dataclasses.replace(job, device="cuda" if study.resources.gpu > 0 else "cpu")
        slots = study.concurrency or concurrency(study, resources)
        task = ray.remote(num_cpus=study.resources.cpu, num_gpus=study.resources.gpu)(repeat_accuracy)
        job_ref = ray.put(job)
        pending: dict[Any, tuple[FrozenTrial, int]] = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < slots:
                t, k = queue.pop(0)
                pending[task.remote(stored_arch(t), job_ref, k)] = (t, k)
            ready, _ = ray.wait(list(pending), num_returns=1)
            t, k = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as e:  # a failed run is reported, not stored: running again retries it
                log(f"  #{t.number:<4d} seed {k} failed: {type(e).__name__}: {' '.join(str(e).split())[-200:]}")
                continue
            record["trial"] = t.number
            weights = record.pop("weights", None)  # tensors: `keep` writes them where they belong
            record = json.loads(json.dumps(record))
            if weights is not None:
                record["weights"] = weights
            keep(t, k, record)
            done += 1
    return done
