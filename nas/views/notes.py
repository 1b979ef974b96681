"""What optuna-dashboard shows for a trial: a Markdown note; and where the trial's architecture is stored.

Each finished trial gets a note (optuna-dashboard's notes: Markdown kept in the study's system attributes, rewritten
when something changes, e.g. when seed repeats are stored) with the architecture as a stage table, the figures with
their units and the network and fidelity they are of, the latency settings and device fingerprint, and the accuracy's
seed spread. The architecture itself (one line of YAML flow style, which `Arch.from_yaml` reads) is a trial *system*
attribute `arch`: as a user attribute, even one line wraps into rows hundreds of pixels tall in the dashboard's tables.
Read it with `stored_arch`.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.format import human, md_table
from nas.record.final import FinalRow
from nas.record.final import table as final_table
from nas.record.repeats import spread_of, stored
from nas.record.trials import state_of, stored_arch
from nas.study import Study
from nas.views import final as final_view
from space import Arch
from space.errors import SpecError

COST_UNITS = {"params": "parameters", "macs": "multiply-accumulates per image", "activations": "activations"}


def accuracy_step(val_images: Any) -> str:
    """'1 validation image = 0.279 %' — the smallest difference in accuracy the validation set can show."""
    if not isinstance(val_images, int) or val_images <= 0:
        return ""
    return f"1 validation image = {100 / val_images:.3g} %"


# -- the note ---------------------------------------------------------------------------------------------------------
def trial_note(study: Study, t: FrozenTrial, repeats: dict[str, dict[int, dict]] | None = None,
               final: list[FinalRow] | None = None) -> str:
    """The Markdown note of trial `t`: state, figures (units, network, fidelity), latency, seeds, architecture."""
    a = t.user_attrs
    state = state_of(t)
    title = a.get("named") or "sampled architecture"
    out = [f"## Trial {t.number}: {title}", ""]
    line = f"**{state}**"
    if a.get("duplicate_of") is not None:
        line += f" — the same architecture as trial {a['duplicate_of']}; its result is reused, not measured again"
    elif state == "infeasible":
        line += " — " + str(a.get("infeasible") or "violates a constraint")
    elif state == "pruned":
        line += f" — stopped early by ASHA after {a.get('epochs', '?')} of {a.get('planned_epochs', '?')} epochs"
    elif state in ("failed", "interrupted"):
        line += " — " + str(a.get("fail_reason", ""))
    out += [line + (f" · hash `{a['hash']}`" if a.get("hash") else ""), ""]
    if a.get("adapted"):
        out += [f"Adapted to the {study.evaluator.adapt_resolution}px input ({a['adapted']}): "
                f"{a.get('adaptation', '')}.", ""]
    out += _figures(study, t, spread_of(t, repeats or {}) if repeats is not None else spread_of(t, {}))
    history = t.system_attrs.get("history") or a.get("history")
    if isinstance(history, list) and history:
        out += ["Validation accuracy per epoch: " + ", ".join(f"{float(v):.4f}" for v in history), ""]
    out += _latency(study, a)
    out += _seeds(t, repeats or {})
    out += _final(study, t, final or [])
    out += _architecture(stored_arch(t))
    return "\n".join(out).rstrip() + "\n"


def _figures(study: Study, t: FrozenTrial, spread: Any) -> list[str]:
    """A two-column table (the label says which network each figure is of), then what those networks are."""
    a = t.user_attrs
    ev = study.evaluator
    rows, of = [], []
    trained = a.get("trained", True)
    acc = a.get("accuracy")
    label = study.metric_label("accuracy")
    if isinstance(acc, (int, float)) and trained and t.state == TrialState.PRUNED and a.get("status") == "pruned":
        rows.append(["accuracy when stopped", f"{acc:.4f} at epoch {a.get('epochs', '?')} (not a final accuracy)"])
    elif spread is not None:
        rows.append([label, spread.text()])
    elif isinstance(acc, (int, float)) and trained:
        rows.append([label, f"{acc:.4f}"])
    elif "accuracy" in study.metrics() and not trained:
        rows.append([label, "not measured (never trained)"])
    if rows:
        step = accuracy_step(a.get("val_images"))
        of.append(f"- accuracy is of the **proxy**: {ev.describe_proxy()}"
                  + (f"; {a['val_images']} validation images ({step})" if step else ""))
    costs = len(rows)
    if isinstance(a.get("latency_ms"), (int, float)):
        iqr = a.get("latency_iqr_ms")
        rows.append([study.metric_label("latency_ms"), f"{a['latency_ms']:.3f} ms per batch"
                     + (f" (IQR {iqr:.3f} ms)" if isinstance(iqr, (int, float)) else "")])
    for k, unit in COST_UNITS.items():
        if isinstance(a.get(k), (int, float)):
            rows.append([study.metric_label(k), f"{human(float(a[k]))} {unit}"])
    if len(rows) > costs:
        of.append(f"- latency, params and MACs are of the **target**: {ev.describe_target()}; deploy form")
    for k in ("synflow", "naswot", "snip"):
        if isinstance(a.get(k), (int, float)):
            rows.append([study.metric_label(k), f"{a[k]:.4g} (untrained proxy)"])
    if not rows:
        return []
    return ["### Figures", "", *md_table(["figure", "value"], rows), "", *of, ""]


def _latency(study: Study, a: dict) -> list[str]:
    if not isinstance(a.get("latency_ms"), (int, float)):
        return []
    settings = ", ".join(f"{k} {v}" for k, v in sorted(study.evaluator.latency.items()))
    out = ["### Latency", "", f"- settings: {settings}", f"- device fingerprint: `{a.get('fingerprint', '?')}`"
           + (f" on {a['host']}" if a.get("host") else "")]
    if a.get("latency_loaded"):
        out.append(f"- measured under load (load {a.get('latency_load', '?')}): treat it as an upper bound")
    if a.get("latency_cached"):
        out.append("- from the latency cache (same architecture, settings and device fingerprint)")
    return [*out, ""]


def _seeds(t: FrozenTrial, repeats: dict[str, dict[int, dict]]) -> list[str]:
    a = t.user_attrs
    if not isinstance(a.get("accuracy"), (int, float)) or not a.get("trained", True) or t.state != TrialState.COMPLETE:
        return []
    runs = [[0, a.get("seed", "not recorded"), f"{a['accuracy']:.4f}", "the search"]]
    more = repeats.get(a.get("hash", ""), {})
    runs += [[k, more[k].get("seed", "?"), f"{float(more[k]['accuracy']):.4f}", "`nas repeat`"]
             for k in sorted(more) if k > 0]
    out = ["### Seeds", "", *md_table(["repeat", "seed", "accuracy", "run by"], runs), ""]
    if len(runs) == 1:
        out += ["One seed: the accuracy's spread is not measured (`nas repeat` trains more).", ""]
    return out


def _final(study: Study, t: FrozenTrial, rows: list[FinalRow]) -> list[str]:
    """The trial's row of the paper table, its runs, and the caption."""
    mine = [r for r in rows if r.trial == t.number]
    if not mine:
        return []
    row = mine[0]
    out = ["### Final stage", "", *md_table(final_view.HEADER, [final_view.cells(row)]), ""]
    runs = [[k, r.get("seed", "?"), f"{float(r['accuracy']):.4f}", r.get("epochs", "?"), m.status, m.why]
            for k, (r, m) in enumerate(zip(row.runs, row.marks))]
    out += md_table(["seed index", "seed", "final accuracy", "epochs", "mark", "why"], runs)
    return [*out, "", *final_view.caption(study, rows), ""]


def _architecture(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    try:
        arch = Arch.from_yaml(text)
    except SpecError:
        return ["### Architecture", "", "```", text, "```", ""]
    d = arch.to_dict()
    out = ["### Architecture", "", f"stem: {_params(d['stem'])}", ""]
    rows = [[i, s.pop("block"), s.pop("depth"), s.pop("width"), s.pop("stride"), _params(s)]
            for i, s in enumerate(d["stages"], 1)]
    out += md_table(["stage", "block", "depth", "width", "stride", "block settings"], rows)
    return [*out, "", f"head: {_params(d['head'])}", ""]


def _params(d: dict) -> str:
    return ", ".join(f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in d.items()) or "-"


# -- writing ----------------------------------------------------------------------------------------------------------
def save(ostudy: optuna.Study, trial_id: int | None, body: str) -> None:
    """Store `body` as the note of the trial with storage id `trial_id` (None: the study's own note)."""
    from optuna_dashboard import save_note

    # save_note takes a live optuna.Trial, whose constructor calls the sampler; it only reads these three attributes.
    save_note(SimpleNamespace(storage=ostudy._storage, study=ostudy, _trial_id=trial_id), body)


def write_trial_note(ostudy: optuna.Study, study: Study, t: FrozenTrial,
                     repeats: dict[str, dict[int, dict]] | None = None, final: list[FinalRow] | None = None) -> None:
    """Write (or rewrite) trial `t`'s note."""
    save(ostudy, t._trial_id, trial_note(study, t, repeats, final))


def write_final_notes(ostudy: optuna.Study, study: Study) -> int:
    """After the final stage: rewrite the notes of its trials (their final runs) and the study's (the paper table)."""
    rows = final_table(study, ostudy)
    repeats = stored(ostudy)
    numbers = {r.trial for r in rows}
    done = 0
    for t in ostudy.get_trials(deepcopy=False):
        if t.number in numbers:
            write_trial_note(ostudy, study, t, repeats, rows)
            done += 1
    write_study_note(ostudy, study, rows)
    return done


def refresh_arch_notes(ostudy: optuna.Study, study: Study, arch_hash: str) -> int:
    """Rewrite the notes of every finished trial of one architecture (after a seed repeat); return how many."""
    repeats = stored(ostudy)
    done = 0
    for t in ostudy.get_trials(deepcopy=False):
        if t.user_attrs.get("hash") == arch_hash and t.state.is_finished():
            write_trial_note(ostudy, study, t, repeats)
            done += 1
    return done


def write_study_note(ostudy: optuna.Study, study: Study, final: list[FinalRow] | None = None) -> None:
    """The study's note: what its figures are of (target, proxy, validation data) and what it optimizes."""
    ev = study.evaluator
    out = [f"## {study.name}", ""]
    if study.description:
        out += [study.description, ""]
    out += [f"- **target** (deployed; latency, params and MACs are of it): {ev.describe_target()}",
            f"- **proxy** (trained; accuracy is of it): {ev.describe_proxy()}",
            "- objectives: " + ", ".join(f"{study.metric_label(o.metric)} ({o.direction})" for o in study.objectives),
            f"- constraints: {', '.join(c.describe() for c in study.constraints) or 'none'}",
            f"- study file: `{study.source}`", "",
            "Each trial's note has its architecture, figures, latency settings and seed spread. Untrained "
            "(infeasible) trials and repeats of an architecture already evaluated are stored PRUNED, so the best "
            "trials list each measured architecture once."]
    if final:
        table = md_table(final_view.HEADER, [final_view.cells(r) for r in final])
        out += ["", "### Final stage (the paper table)", "", *table, "", *final_view.caption(study, final)]
    save(ostudy, None, "\n".join(out) + "\n")
