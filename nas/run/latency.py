"""The end-of-search latency re-measurement: the front's and the named networks' targets timed again on this machine,
interleaved, so the latency order the report states is established with an interval (`nas.record.latency`).

Each trial's latency was measured once, on whichever node ran it, at whatever moment, with training on other cores;
two front networks may be ordered by that noise alone. Here every chosen target is built once and timed `rounds`
times, round-robin (each round starts one network later), under the device lock and with no trial running: drift
over the minutes it takes (CPU clocks, heat, other load) falls on every network alike. Each round is one
measurement with the study's latency settings, capped at `ROUND_SECONDS`: the spread over rounds, not one long
measurement, is what the interval is made of.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.record.latency import PREFIX, SUMMARY, coverage
from nas.record.trials import front, stored_arch
from nas.study import Study
from nas.views.notes import refresh_latency_notes
from space import Arch

Log = Callable[[str], None]
ROUNDS = 5  # [lowest, highest] of 5 round medians holds the median with probability 94 % (nas.record.latency)
ROUND_SECONDS = 1.0  # the most one round may time one network (the study's max_seconds when lower)


def choose(ostudy: optuna.Study) -> list[FrozenTrial]:
    """The trials whose latency is re-measured: the front, then the complete named points; one per architecture."""
    named = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if t.user_attrs.get("named") and "duplicate_of" not in t.user_attrs]
    out, seen = [], set()
    for t in [*front(ostudy), *named]:
        h = t.user_attrs.get("hash")
        if h and h not in seen and isinstance(t.user_attrs.get("latency_ms"), (int, float)) and stored_arch(t):
            seen.add(h)
            out.append(t)
    return out


def remeasure_latency(study: Study, ostudy: optuna.Study, *, rounds: int = ROUNDS, log: Log = print) -> int:
    """Time the chosen trials' targets `rounds` times, interleaved; store each one's round medians; return how many."""
    from evaluators import DataConfig, LatencyConfig, load_data
    from evaluators.latency import (
        default_cache_dir,
        device_fingerprint,
        device_lock,
        open_cache,
        time_model,
        timed_model,
    )

    if "latency_ms" not in study.metrics():
        return 0
    trials = choose(ostudy)
    if not trials:
        return 0
    ev = study.evaluator
    cfg = LatencyConfig(**ev.latency)
    cfg = dataclasses.replace(cfg, max_seconds=min(cfg.max_seconds, ROUND_SECONDS),
                              min_seconds=min(cfg.min_seconds, ROUND_SECONDS), max_attempts=1)
    data = load_data(DataConfig(**ev.data))
    log(f"latency: re-measuring the targets of {len(trials)} network(s) (the front and the named points), "
        f"{rounds} interleaved rounds, {ev.describe_target()}")
    models = [timed_model(Arch.from_yaml(stored_arch(t), source=f"trial {t.number}").scaled(ev.target.width_mult),
                          cfg, num_classes=data.num_classes, in_chans=data.in_chans) for t in trials]
    results: list[list] = [[] for _ in trials]
    store = open_cache(None if ev.latency_cache == "none" else ev.latency_cache)
    with device_lock(cfg.device, store.path.parent if store is not None else default_cache_dir()):
        for r in range(rounds):
            for i in [(r + k) % len(trials) for k in range(len(trials))]:  # each round starts one network later
                results[i].append(time_model(models[i], cfg, in_chans=data.in_chans))
    fingerprint = device_fingerprint(cfg.device, cfg.threads, cfg.backend)
    for t, rs in zip(trials, results):
        record = {"rounds": [round(x.median_ms, 6) for x in rs], "iqr_ms": [round(x.iqr_ms, 6) for x in rs],
                  "loaded": [bool(x.loaded) for x in rs], "trial": t.number, "fingerprint": fingerprint}
        ostudy.set_user_attr(f"{PREFIX}{t.user_attrs['hash']}", record)
        low, high = min(record["rounds"]), max(record["rounds"])
        log(f"  #{t.number:<4d} {sorted(record['rounds'])[len(rs) // 2]:.3f} ms [{low:.3f}, {high:.3f}]"
            f" (search: {float(t.user_attrs['latency_ms']):.3f} ms)"
            + (f" [{t.user_attrs['named']}]" if t.user_attrs.get("named") else ""))
    ostudy.set_user_attr(SUMMARY, {"rounds": rounds, "networks": len(trials), "fingerprint": fingerprint,
                                   "host": socket.gethostname(), "coverage": round(coverage(rounds), 4),
                                   "round_seconds": cfg.max_seconds,
                                   "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    try:
        refresh_latency_notes(ostudy, study, {t.user_attrs["hash"] for t in trials})
    except Exception as e:  # the dashboard notes are a courtesy, never a reason to lose the measurements
        log(f"  cannot rewrite the dashboard notes: {type(e).__name__}: {e}")
    return len(trials)
