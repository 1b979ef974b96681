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
from nas.record import latency as lat
from nas.record.final import FinalRow
from nas.record.final import table as final_table
from nas.record.repeats import seed0_accuracy, spread_of, stored
from nas.record.trials import display_name, state_of, stored_arch
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
               final: list[FinalRow] | None = None, intervals: dict[str, lat.Interval] | None = None) -> str:
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
    interval = lat.interval_of(t, intervals or {})
    out += _figures(study, t, spread_of(t, repeats or {}) if repeats is not None else spread_of(t, {}), interval)
    history = t.system_attrs.get("history") or a.get("history")
    if isinstance(history, list) and history:
        out += ["Validation accuracy per epoch: " + ", ".join(f"{float(v):.4f}" for v in history), ""]
    out += _latency(study, a, interval)
    out += _seeds(t, repeats or {})
    out += _final(study, t, final or [])
    out += _architecture(stored_arch(t))
    return "\n".join(out).rstrip() + "\n"


def _figures(study: Study, t: FrozenTrial, spread: Any, interval: lat.Interval | None = None) -> list[str]:
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
                     + (f" (IQR {iqr:.3f} ms)" if isinstance(iqr, (int, float)) else "")
                     + (" — **noisy**" if a.get("latency_noisy") else "")])
        if interval is not None:
            rows.append(["latency re-measured at the end", f"{interval.text()}: {100 * interval.coverage:.0f} % "
                         "interval of the median, interleaved with the front and the named networks"])
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


def _latency(study: Study, a: dict, interval: lat.Interval | None = None) -> list[str]:
    if not isinstance(a.get("latency_ms"), (int, float)):
        return []
    settings = ", ".join(f"{k} {v}" for k, v in sorted(study.evaluator.latency.items()))
    out = ["### Latency", "", f"- settings: {settings}", f"- device fingerprint: `{a.get('fingerprint', '?')}`"
           + (f" on {a['host']}" if a.get("host") else "")]
    if a.get("latency_loaded"):
        out.append(f"- measured under load (load {a.get('latency_load', '?')}): treat it as an upper bound")
    if a.get("latency_cached"):
        out.append("- from the latency cache (same architecture, settings and device fingerprint)")
    if a.get("latency_remeasured") and isinstance(a.get("latency_first_ms"), (int, float)):
        out.append(f"- measured twice: first {a['latency_first_ms']:.3f} ms (IQR {a.get('latency_first_iqr_ms', 0):.3f}"
                   " ms), then again; the steadier is kept")
    if a.get("latency_noisy"):
        out.append(f"- **noisy**: IQR / median above {lat.NOISY_REL_IQR:g} even after a re-measurement, so its order "
                   "against networks within that spread is not established by this measurement")
    if interval is not None:
        out.append(f"- re-measured at the end of the search: {interval.text()}, the range of the round medians, "
                   f"holds the median with probability {100 * interval.coverage:.0f} %; a network whose interval "
                   "overlaps this one is not called faster or slower")
    return [*out, ""]


def _seeds(t: FrozenTrial, repeats: dict[str, dict[int, dict]]) -> list[str]:
    a = t.user_attrs
    if not isinstance(a.get("accuracy"), (int, float)) or not a.get("trained", True) or t.state != TrialState.COMPLETE:
        return []
    runs = [[0, a.get("seed", "not recorded"), f"{seed0_accuracy(t):.4f}", "the search"]]
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
                     repeats: dict[str, dict[int, dict]] | None = None, final: list[FinalRow] | None = None,
                     intervals: dict[str, lat.Interval] | None = None) -> None:
    """Write (or rewrite) trial `t`'s note."""
    save(ostudy, t._trial_id, trial_note(study, t, repeats, final, intervals))


def write_final_notes(ostudy: optuna.Study, study: Study) -> int:
    """After the final stage: rewrite the notes of its trials (their final runs) and the study's (the paper table)."""
    rows = final_table(study, ostudy)
    repeats, intervals = stored(ostudy), lat.stored(ostudy)
    numbers = {r.trial for r in rows}
    done = 0
    for t in ostudy.get_trials(deepcopy=False):
        if t.number in numbers:
            write_trial_note(ostudy, study, t, repeats, rows, intervals)
            done += 1
    write_study_note(ostudy, study, rows)
    return done


def refresh_arch_notes(ostudy: optuna.Study, study: Study, arch_hash: str) -> int:
    """Rewrite the notes of every finished trial of one architecture (after a seed repeat); return how many."""
    return refresh_notes(ostudy, study, {arch_hash})


def refresh_latency_notes(ostudy: optuna.Study, study: Study, hashes: set[str]) -> int:
    """After the end-of-search latency re-measurement: rewrite its trials' notes and the study's; return how many."""
    done = refresh_notes(ostudy, study, hashes)
    write_study_note(ostudy, study)
    return done


def refresh_notes(ostudy: optuna.Study, study: Study, hashes: set[str]) -> int:
    """Rewrite the notes of every finished trial of these architectures; return how many."""
    repeats, intervals = stored(ostudy), lat.stored(ostudy)
    rows = final_table(study, ostudy)
    done = 0
    for t in ostudy.get_trials(deepcopy=False):
        if t.user_attrs.get("hash") in hashes and t.state.is_finished():
            write_trial_note(ostudy, study, t, repeats, rows, intervals)
            done += 1
    return done


def write_study_note(ostudy: optuna.Study, study: Study, final: list[FinalRow] | None = None) -> None:
    """The study's note: what its figures are of (target, proxy, validation data), what it optimizes, what the
    dashboard's states and values mean in it (with counts), and the re-measured latency."""
    ev = study.evaluator
    trials = ostudy.get_trials(deepcopy=False)
    out = [f"## {study.name}", ""]
    if study.description:
        out += [study.description, ""]
    out += [f"- **target** (deployed; latency, params and MACs are of it): {ev.describe_target()}",
            f"- **proxy** (trained; accuracy is of it): {ev.describe_proxy()}",
            "- objectives: " + ", ".join(f"{study.metric_label(o.metric)} ({o.direction})" for o in study.objectives),
            f"- constraints: {', '.join(c.describe() for c in study.constraints) or 'none'}",
            f"- study file: `{study.source}`", "", *_reading(study, trials), "",
            "Each trial's note has its architecture, figures, latency settings and seed spread."]
    out += _remeasured(ostudy, trials)
    if final is None:
        final = final_table(study, ostudy)
    if final:
        table = md_table(final_view.HEADER, [final_view.cells(r) for r in final])
        out += ["", "### Final stage (the paper table)", "", *table, "", *final_view.caption(study, final)]
    save(ostudy, None, "\n".join(out) + "\n")


def _reading(study: Study, trials: list[FrozenTrial]) -> list[str]:
    """How to read the dashboard for this study: the states (with counts), the plotted value, the named networks."""
    status = [t.user_attrs.get("status") for t in trials if t.state == TrialState.PRUNED]
    asha, untrained, duplicate = (status.count(k) for k in ("pruned", "infeasible", "duplicate"))
    pruned = len(status)
    out = ["### Reading the dashboard", "",
           f"- **PRUNED** ({pruned} trial(s)): {asha} stopped early by ASHA (their value is empty; the note gives the "
           f"accuracy when stopped, not a final accuracy), {untrained} infeasible and never trained (a constraint "
           f"failed before training; no accuracy is invented), {duplicate} duplicate(s) of an architecture already "
           "evaluated (its result reused; stored PRUNED so the best trials list each architecture once)."]
    if "accuracy" in study.metric_names:
        means = sum(1 for t in trials if t.user_attrs.get("seeds", 1) > 1 and t.state == TrialState.COMPLETE)
        out.append(f"- **Value** (the Pareto plot, Best Trials): the accuracy is the mean over the architecture's "
                   f"seeds where seed repeats ran ({means} trial(s); the search's own seed is the user attribute "
                   "`accuracy_seed0`), else the one seed the search trained — the same figure the note, `nas report` "
                   "and the model card give.")
        out.append("- **Intermediate values**: validation accuracy per epoch (the proxy's learning curve); the "
                   "*learning curves* graph on this page draws them for every trial.")
    named = sorted({str(t.user_attrs["named"]) for t in trials if t.user_attrs.get("named")})
    if named:
        out.append("- **Named networks** carry a parameter `named:<name>` (shown on hover in the plots and in the "
                   "trial's parameters) and the user attribute `named`: " + ", ".join(f"`{n}`" for n in named) + ".")
    return out


def _remeasured(ostudy: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """The end-of-search latency re-measurement as a table (nothing before it ran)."""
    meta, intervals = lat.summary(ostudy), lat.stored(ostudy)
    if not meta or not intervals:
        return []
    rows = []
    for t in trials:
        iv = lat.interval_of(t, intervals)
        if iv is not None and "duplicate_of" not in t.user_attrs and t.state == TrialState.COMPLETE:
            rows.append([f"#{t.number}", display_name(t), f"{float(t.user_attrs.get('latency_ms', 0)):.3f} ms",
                         f"{iv.median_ms:.3f} ms", iv.short()])
    return ["", "### Latency re-measured at the end", "",
            f"The front's and the named networks' targets, timed again in {meta['rounds']} interleaved rounds on "
            f"`{meta.get('host', '?')}` (fingerprint `{meta.get('fingerprint', '?')}`): median and [lowest, highest] "
            f"round median, a {100 * float(meta.get('coverage', 0)):.0f} % interval. Overlapping intervals: neither "
            "network is called faster.", "",
            *md_table(["trial", "network", "search", "re-measured", "interval (ms)"], rows)]


def write_learning_curves(ostudy: optuna.Study) -> None:
    """A 'learning curves' graph on the study's dashboard page: each trained trial's validation accuracy per epoch.

    optuna-dashboard 0.21 draws the intermediate values itself only for single-objective studies; this graph (a
    Plotly figure stored with its `save_plotly_graph_object`) draws them for every study.
    """
    from optuna_dashboard import save_plotly_graph_object

    traces = []
    for t in ostudy.get_trials(deepcopy=False):
        history = t.system_attrs.get("history") or t.user_attrs.get("history")
        if not isinstance(history, list) or not history or "duplicate_of" in t.user_attrs:
            continue
        name = display_name(t)
        pruned = t.state == TrialState.PRUNED
        traces.append({"type": "scatter", "mode": "lines+markers", "x": list(range(1, len(history) + 1)),
                       "y": [float(v) for v in history],
                       "name": f"#{t.number}" + (f" {name}" if name else "") + (" (ASHA stop)" if pruned else ""),
                       "line": {"dash": "dot" if pruned else "solid", "width": 2.5 if name else 1.2},
                       "hovertemplate": f"trial #{t.number}" + (f" ({name})" if name else "")
                       + (" — stopped by ASHA" if pruned else "") + "<br>epoch %{x}: %{y:.4f}<extra></extra>"})
    layout = {"title": {"text": "Learning curves"},
              "xaxis": {"title": {"text": "epoch"}, "dtick": 1},
              "yaxis": {"title": {"text": "validation accuracy (proxy)"}},
              "showlegend": len(traces) <= 30}
    save_plotly_graph_object(ostudy, _Figure({"data": traces, "layout": layout}), graph_object_id="learning-curves")


class _Figure:
    """What `save_plotly_graph_object` needs of a Plotly figure (its JSON), without depending on Plotly."""

    def __init__(self, spec: dict):
        self.spec = spec

    def to_json(self) -> str:
        """The figure as Plotly's JSON."""
        return json.dumps(self.spec)
