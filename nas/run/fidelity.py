"""`nas fidelity`: how well a study's proxy ranks architectures like the training that will really be done.

Picks k finished trials (the front, named points, the rest spread over the proxy-accuracy range), trains each r times
at a higher fidelity — by default the study's target network (target width and resolution, every training image) for
more epochs — and compares the seed-mean accuracies with the proxy's (the proxy's extra seeds are the study's seed
repeats, `nas.run.repeats`). Every run goes through Ray like the search and is stored in the study as soon as it ends
(`fidelity:<setting>:<arch hash>:<seed>`), so an interrupted run continues where it stopped; the comparison
(`nas.record.rank.compare`: Kendall tau and Spearman rho with bootstrap intervals, seed noise at both fidelities, top-k
overlap, the verdict) is stored as `fidelity_summary:<setting>` and the setting last measured as `fidelity_latest`,
which `nas report` and exported model cards show.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.record import rank as stats
from nas.record.fidelity import LATEST, PREFIX, SUMMARY, HighFidelity, accuracy_of, pick_trials, stored_runs
from nas.record.final import setting_of
from nas.record.final import table as final_table
from nas.record.repeats import spread_of, stored
from nas.record.training import Mark, trained_mark
from nas.record.trials import front, proxy_mark
from nas.run.final import run_final
from nas.run.repeats import run_repeats, train_many
from nas.run.trial import Job
from nas.study import Network, Study
from space.errors import NasError

Log = Callable[[str], None]


def job_of(study: Study, hf: HighFidelity) -> Any:
    """The trial job whose 'proxy' is the high-fidelity network (what `repeat_accuracy` trains)."""
    ev = study.evaluator
    data = {**ev.data, "resolution": hf.resolution}
    data.pop("limit_train", None)
    evaluator = dataclasses.replace(ev, proxy=Network("proxy", hf.width_mult, hf.resolution), data=data,
                                    train={**ev.train, "epochs": hf.epochs})
    return dataclasses.replace(Job.from_study(study), evaluator=evaluator)


def measure(study: Study, ostudy: optuna.Study, *, k: int = 10, seeds: int = 2, hf: HighFidelity,
            numbers: list[int] | None = None, address: str | None = None, log: Log = print) -> dict:
    """Train what is missing (proxy seeds, high-fidelity runs), compare, store and return the summary."""
    trials = ostudy.get_trials(deepcopy=False)
    if numbers:
        by_number = {t.number: t for t in trials}
        picked = [by_number[n] for n in numbers if n in by_number and accuracy_of(by_number[n]) is not None]
        if len(picked) != len(set(numbers)):
            raise NasError(f"{study.source}: --trial names trials that are not complete, trained trials")
    else:
        picked = pick_trials(trials, k, front=[t.number for t in front(ostudy)])
    seen, unique = set(), []
    for t in picked:  # one trial per architecture
        if t.user_attrs["hash"] not in seen:
            seen.add(t.user_attrs["hash"])
            unique.append(t)
    if len(unique) < 2:
        raise NasError(f"{study.source}: study '{study.name}' has {len(unique)} complete trained architecture(s); "
                       "at least 2 are needed to measure how the proxy ranks them (search longer first)")
    log(f"fidelity: {len(unique)} architectures x {seeds} seed(s); proxy {study.evaluator.describe_proxy()}; "
        f"high fidelity {hf.describe()}")
    if seeds > 1:
        run_repeats(study, ostudy, unique, seeds - 1, address=address, log=log)
    have = stored_runs(ostudy, hf)
    todo = [(t, s) for t in unique for s in range(seeds) if s not in have.get(t.user_attrs["hash"], {})]
    if todo:
        log(f"fidelity: training {len(todo)} high-fidelity run(s) ({len(have)} architecture(s) partly done before)")

        def keep(t: FrozenTrial, s: int, record: dict) -> None:
            ostudy.set_user_attr(f"{PREFIX}{hf.key}:{t.user_attrs['hash']}:{s}", record)
            log(f"  #{t.number:<4d} high fidelity seed {s}: accuracy {record['accuracy']:.4f} "
                f"({record['seconds']:.1f} s)")

        train_many(study, job_of(study, hf), todo, keep, address=address, log=log)
    have, repeats = stored_runs(ostudy, hf), stored(ostudy)
    rows, excluded = [], []
    for t in unique:
        runs = have.get(t.user_attrs["hash"], {})
        proxy = spread_of(t, repeats)
        if proxy is None or proxy.n < seeds or any(s not in runs for s in range(seeds)):
            continue  # a failed run: measured again by the next `nas fidelity`
        high = [runs[s] for s in range(seeds)]
        untrained = proxy_mark(t) or next((m for m in (_mark(r) for r in high) if m is not None), None)
        if untrained is not None:  # easy to rank and telling nothing: left out of the comparison
            excluded.append([t.number, t.user_attrs.get("named", ""), untrained.why])
            continue
        rows.append((t, list(proxy.values[:seeds]), [float(r["accuracy"]) for r in high],
                     sum(float(r["seconds"]) for r in high)))
    return _summarize(study, ostudy, hf.key, hf.describe(), rows, excluded, seeds)


def measure_final(study: Study, ostudy: optuna.Study, *, address: str | None = None, log: Log = print) -> dict:
    """The proxy against the final stage (run first where runs are missing): the networks it trained to convergence
    whose proxy trained too, all pairs and the pairs of similar target latency."""
    setting = setting_of(study)
    run_final(study, ostudy, address=address, log=log)
    usable, excluded = [], []
    for r in final_table(study, ostudy):
        if not r.measured or r.proxy is None or not r.proxy_trained or r.latency_ms is None:
            why = (f"final: {r.status}" if not r.measured else "proxy did not train" if r.proxy is not None
                   else "no proxy accuracy")
            excluded.append([r.trial, r.network if r.role == "named" else "", why])
        else:
            usable.append(r)
    trials = {t.number: t for t in ostudy.get_trials(deepcopy=False)}
    # Each side keeps its seeds (for its seed noise) where every network has as many; else each network is one mean.
    same_p, same_f = len({r.proxy.n for r in usable}) == 1, len({r.final.n for r in usable}) == 1
    rows = [(trials[r.trial], list(r.proxy.values) if same_p else [r.proxy.mean],
             list(r.final.values) if same_f else [r.final.mean], sum(float(x.get("seconds") or 0) for x in r.runs))
            for r in usable]
    seeds = min((r.final.n for r in usable), default=1)
    return _summarize(study, ostudy, f"final-{setting.key}", f"the final stage: {setting.describe()}", rows, excluded,
                      seeds)


def _summarize(study: Study, ostudy: optuna.Study, key: str, describe: str, rows: list[tuple], excluded: list[list],
               seeds: int) -> dict:
    """Compare (all pairs and the latency band), store the summary under `key` and return it."""
    if len(rows) < 2:
        raise NasError(f"{study.source}: fewer than 2 architectures have every run and trained at both fidelities "
                       f"({len(excluded)} left out as untrained or unconverged); run 'nas fidelity' again or train "
                       "longer")
    latency = [float(r[0].user_attrs.get("latency_ms") or math.nan) for r in rows]
    band = latency if all(math.isfinite(v) and v > 0 for v in latency) else None
    result = stats.compare([r[1] for r in rows], [r[2] for r in rows], latency=band)
    summary = {
        "setting": key, "high_fidelity": describe, "proxy": study.evaluator.describe_proxy(),
        "k": result.k, "seeds": seeds, "verdict": result.verdict(), "reliable": result.reliable,
        "tau": [result.tau.value, result.tau.low, result.tau.high], "rho": [result.rho.value, result.rho.low,
                                                                              result.rho.high],
        "band_tau": None if result.band is None else [result.band.value, result.band.low, result.band.high],
        "band_pairs": result.band_pairs, "band_ratio": stats.BAND_RATIO,
        "level": result.tau.level, "top": result.top, "top_overlap": result.top_overlap,
        "proxy_noise": dataclasses.asdict(result.proxy_noise), "high_noise": dataclasses.asdict(result.target_noise),
        "trials": [r[0].number for r in rows], "names": [r[0].user_attrs.get("named", "") for r in rows],
        "proxy_acc": [r[1] for r in rows], "high_acc": [r[2] for r in rows], "latency_ms": latency,
        "excluded": excluded, "high_minutes": round(sum(r[3] for r in rows) / 60, 2),
        "measured": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    ostudy.set_user_attr(f"{SUMMARY}{key}", _plain(summary))
    ostudy.set_user_attr(LATEST, key)
    return summary


def _mark(run: dict) -> Mark | None:
    """A high-fidelity run's 'did not train' mark (None: it trained, or it predates the stored curves)."""
    if not run.get("history") or not run.get("classes"):
        return None
    return trained_mark(run["history"], run.get("losses"), int(run["classes"]), run.get("val_images"),
                        float(run.get("label_smoothing") or 0.0))


def _plain(value: Any) -> Any:
    """JSON-safe (NaN becomes None)."""

    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return json.loads(json.dumps(value))
