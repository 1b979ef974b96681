"""The final stage, run: the target network of each chosen trial trained to convergence with `final.seeds` seeds.

`nas search` runs it after the search and the seed repeats when the study has a `final:` block; `nas final STUDY`
runs it on its own. The chosen trials are the front's `top` points, the named points and the random baselines
(`nas.record.final.choose`). Runs go through Ray like trials (`nas.run.repeats.train_many`: the study's per-trial
CPUs and GPUs, a cluster when given); each is stored the moment it ends, with its weights under
`<study dir>/<name>_final/`, so an interrupted stage (Ctrl-C, SIGKILL) resumes with the runs still missing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from safetensors.torch import save_file

from nas.record.final import SEED_OFFSET, FinalSetting, choose, run_key, setting_of, stored_runs, weights_dir
from nas.record.repeats import Spread, spread_of, stored
from nas.run.repeats import run_repeats, train_many
from nas.run.trial import Job
from nas.study import Network, Study
from nas.views.notes import write_final_notes
from space.errors import NasError

Log = Callable[[str], None]


def job_of(study: Study, setting: FinalSetting) -> Job:
    """The trial job whose trained network is the target at `setting` (every training image, the final recipe)."""
    ev = study.evaluator
    data = {**ev.data, "resolution": setting.resolution}
    data.pop("limit_train", None)
    train = {**ev.train, **dict(setting.train)}
    evaluator = dataclasses.replace(ev, proxy=Network("proxy", setting.width_mult, setting.resolution), data=data,
                                    train=train)
    return dataclasses.replace(Job.from_study(study), evaluator=evaluator, patience=setting.patience, weights=True)


def run_final(study: Study, ostudy: optuna.Study, *, seeds: int | None = None, address: str | None = None,
              log: Log = print) -> int:
    """Train the final runs not stored yet; return how many ran. A failed run is reported and left missing."""
    setting = setting_of(study)
    if setting is None:
        raise NasError(f"{study.source}: no `final:` block; add one (e.g. final: {{of: [front, named], seeds: 3, "
                       "train: {epochs: 30}}) to train the chosen networks to convergence")
    seeds = seeds or study.final.seeds
    chosen = choose(study, ostudy)
    if not chosen:
        log("final: no complete, feasible trial to train yet")
        return 0
    if study.repeats is not None:  # the table's proxy column has the seeds of the study's repeats for every row
        run_repeats(study, ostudy, [tr for tr, _ in chosen if tr.state == TrialState.COMPLETE
                                    and (spread_of(tr, stored(ostudy)) or Spread((0.0,))).n < study.repeats.seeds + 1],
                    study.repeats.seeds, address=address, log=log)
    have = stored_runs(ostudy, setting)
    todo = [(t, SEED_OFFSET + k) for t, _ in chosen for k in range(seeds)
            if k not in have.get(t.user_attrs["hash"], {})]
    roles = {t.number: role for t, role in chosen}
    if not todo:
        return 0
    log(f"final: training {len(todo)} run(s) of {len({t.number for t, _ in todo})} network(s) "
        f"({setting.describe()}; {seeds} seed(s) each)")
    folder = weights_dir(study)

    def keep(t: FrozenTrial, repeat: int, record: dict) -> None:
        k = repeat - SEED_OFFSET
        weights = record.pop("weights", None)
        if weights is not None:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{t.user_attrs['hash']}_{setting.key}_s{k}.safetensors"
            tmp = path.with_suffix(".partial")
            save_file(weights, str(tmp), metadata={"trial": str(t.number), "seed": str(record.get("seed"))})
            os.replace(tmp, path)
            record["weights"] = path.name
        record["role"] = roles.get(t.number, "")
        ostudy.set_user_attr(run_key(setting, t.user_attrs["hash"], k), record)
        log(f"  #{t.number:<4d} {t.user_attrs.get('named') or roles.get(t.number, '')} seed {k}: accuracy "
            f"{record['accuracy']:.4f} after {record['epochs']} epoch(s) ({record['seconds']:.1f} s)")

    ran = train_many(study, job_of(study, setting), todo, keep, address=address, log=log)
    try:  # the dashboard shows the paper table (study note) and each network's final runs (trial notes)
        write_final_notes(ostudy, study)
    except Exception as e:
        log(f"final: cannot rewrite the dashboard notes: {type(e).__name__}: {e}")
    return ran
