"""`nas report`: a study's trials table (CSV), Pareto-front plot (PNG) and Markdown summary, written next to it.

The report only reads the study's storage, so it can run while `nas search` is still adding trials (running and
queued trials are listed as such), and on a study with no completed trial (it says so). Files, in
`<study dir>/<study name>_report/`:

    trials.csv   one row per trial: state, named tag, objectives, costs, feasibility, front membership, hash
    pareto.png   accuracy vs latency (or the study's first two objectives): the front highlighted, named points
                 labelled, infeasible and pruned trials drawn apart; the labels are also in the PNG's text chunks
    summary.md   budget used, trials by state, the front as a table, where each named point stands
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.transforms import offset_copy
from optuna.trial import FrozenTrial, TrialState

from nas.fileio import atomic_write
from nas.format import human
from nas.study import METRICS, Study
from space.errors import NasError

STATES = ("complete", "infeasible", "pruned", "failed", "interrupted", "running", "waiting")
# Metrics recorded on trials besides the objectives, in table order.
EXTRA_METRICS = ("accuracy", "latency_ms", "params", "macs", "activations", "synflow", "naswot", "snip")
LABELS_KEY = "nas:labels"  # PNG text chunk: JSON list of the names labelled in the plot
AXIS_LABELS = {"accuracy": "validation top-1 accuracy",
               "latency_ms": "latency (ms per batch, deploy form)"}


@dataclass
class Report:
    """What `write_report` produced: the files, the table behind them and the figure (for inspection)."""

    directory: Path
    csv: Path
    png: Path
    summary: Path
    table: pd.DataFrame
    figure: Figure
    front: list[int]
    running: bool


# -- reading the storage ----------------------------------------------------------------------------------------------
def load_results(study: Study) -> optuna.Study:
    """The study's Optuna record, opened for reading; a study never searched is a one-line error."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hint = f"run 'nas search {study.source}' first"
    if study.storage.startswith("sqlite:///") and not Path(study.storage[len("sqlite:///"):]).is_file():
        raise NasError(f"{study.source}: no results yet (no database {study.storage[len('sqlite:///'):]}); {hint}")
    from nas.search import storage_of

    storage = storage_of(study)
    try:
        names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception as e:  # SQLAlchemy raises many types for an unreachable server or a file that is not a DB
        raise NasError(f"{study.source}: storage {study.storage}: cannot read it ({type(e).__name__}: {e})") from None
    if study.name not in names:
        raise NasError(f"{study.source}: no study '{study.name}' in {study.storage} (it holds "
                       f"{', '.join(sorted(names)) or 'none'}); {hint}")
    return optuna.load_study(study_name=study.name, storage=storage)


def state_of(t: FrozenTrial) -> str:
    """complete | infeasible | pruned | failed | interrupted | running | waiting."""
    if t.state == TrialState.COMPLETE:
        return "complete" if t.user_attrs.get("feasible", True) else "infeasible"
    if t.state == TrialState.FAIL:
        return "interrupted" if t.user_attrs.get("interrupted") else "failed"
    if t.state == TrialState.PRUNED and t.user_attrs.get("status") == "infeasible":
        return "infeasible"  # stopped before training by a constraint (stored PRUNED, no invented accuracy)
    return {TrialState.PRUNED: "pruned", TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[t.state]


def metric_value(t: FrozenTrial, metric: str, names: list[str]) -> float | None:
    """What was measured for `metric` on trial `t` (None when it was not: e.g. the accuracy of an untrained trial)."""
    v = t.user_attrs.get(metric)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if t.state == TrialState.COMPLETE and t.values and metric in names and t.user_attrs.get("trained", True):
        return float(t.values[names.index(metric)])
    return None


def front_numbers(ostudy: optuna.Study) -> list[int]:
    """Numbers of the Pareto-front trials (complete, feasible, non-dominated, duplicates collapsed)."""
    from nas.search import front

    return [t.number for t in front(ostudy)]


# -- the table --------------------------------------------------------------------------------------------------------
def trials_table(study: Study, ostudy: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, named tag, objectives, other metrics, feasibility, front, epochs, hash, reason."""
    names = study.metric_names
    on_front = set(front_numbers(ostudy))
    metrics = [*names, *(m for m in EXTRA_METRICS if m not in names)]
    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        a = t.user_attrs
        row: dict[str, Any] = {"trial": t.number, "state": state_of(t), "named": a.get("named", "")}
        row.update({m: metric_value(t, m, names) for m in metrics})
        row.update(feasible=a.get("feasible") if t.state == TrialState.COMPLETE else None,
                   pareto=t.number in on_front, epochs=a.get("epochs"), planned_epochs=a.get("planned_epochs"),
                   seconds=a.get("seconds"), hash=a.get("hash", ""), duplicate_of=a.get("duplicate_of"),
                   reason=a.get("fail_reason") or a.get("infeasible") or "",
                   started=_iso(t.datetime_start), finished=_iso(t.datetime_complete))
        rows.append(row)
    columns = ["trial", "state", "named", *metrics, "feasible", "pareto", "epochs", "planned_epochs", "seconds",
               "hash", "duplicate_of", "reason", "started", "finished"]
    df = pd.DataFrame(rows, columns=columns)
    for col in ("epochs", "planned_epochs", "duplicate_of", "params", "macs", "activations"):
        df[col] = df[col].astype("Int64")  # counts stay integers next to the blanks of unfinished trials
    # Metrics no trial has (zero-cost scores of a study that does not use them) are left out.
    return df.drop(columns=[m for m in metrics if m not in names and df[m].isna().all()])


def _iso(when: dt.datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else ""


# -- the plot ---------------------------------------------------------------------------------------------------------
def axis_label(study: Study, metric: str) -> str:
    """'validation top-1 accuracy — accuracy (proxy ×0.5 @16px, 4 ep)': what the axis is, and of which network."""
    base = AXIS_LABELS.get(metric)
    label = study.metric_label(metric) if metric in METRICS else metric
    return f"{base} — {label}" if base else label


def plot_axes(study: Study, df: pd.DataFrame) -> tuple[str, str]:
    """(x, y) metrics of the plot: latency and accuracy when measured, else the study's objectives."""
    names = study.metric_names
    have = [m for m in df.columns if m in METRICS and df[m].notna().any()]
    y = "accuracy" if "accuracy" in have else names[0]
    rest = [m for m in [*names, *have] if m != y]
    x = "latency_ms" if "latency_ms" in have and y != "latency_ms" else (rest[0] if rest else y)
    return x, y


def plot_front(study: Study, df: pd.DataFrame) -> Figure:
    """The Pareto plot: front highlighted, named points labelled, infeasible and pruned trials drawn apart."""
    x, y = plot_axes(study, df)
    fig = Figure(figsize=(8, 5.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    rows = df[df["duplicate_of"].isna()].astype({x: float, y: float})  # a duplicate repeats its original's point
    has_xy = rows[x].notna() & rows[y].notna()
    complete = rows[(rows["state"] == "complete") & has_xy]
    front = complete[complete["pareto"]].sort_values(x)
    others = complete[~complete["pareto"]]
    pruned = rows[(rows["state"] == "pruned") & has_xy]
    infeasible = rows[rows["state"] == "infeasible"]
    measured_bad, untrained = infeasible[infeasible[x].notna() & infeasible[y].notna()], infeasible[
        infeasible[x].notna() & infeasible[y].isna()]
    ax.scatter(others[x], others[y], s=22, color="tab:blue", alpha=0.7, label=_legend("complete", others), zorder=3)
    ax.scatter(pruned[x], pruned[y], s=26, facecolors="none", edgecolors="tab:gray",
               label=_legend("pruned: accuracy when stopped", pruned), zorder=2)
    ax.scatter(measured_bad[x], measured_bad[y], s=30, marker="x", color="tab:red", alpha=0.8,
               label=_legend("infeasible", measured_bad), zorder=2)
    if len(untrained):
        # Untrained infeasible trials have no accuracy: a rug along the bottom shows where they fell on x.
        ax.scatter(untrained[x], [0.0] * len(untrained), marker="|", s=160, color="tab:red",
                   transform=ax.get_xaxis_transform(), clip_on=False,
                   label=_legend("infeasible, not trained", untrained), zorder=2)
        ax.dataLim.update_from_data_x(untrained[x].to_numpy(dtype=float), ignore=False)
        ax.autoscale_view()
    if len(front):
        ax.step(front[x], front[y], where="post" if _maximize(study, y) != _maximize(study, x) else "pre",
                color="tab:orange", linewidth=1.5, zorder=4)
        ax.scatter(front[x], front[y], s=70, color="tab:orange", edgecolors="black", linewidths=0.6,
                   label=_legend("Pareto front", front), zorder=5)
        beside = offset_copy(ax.transData, fig=fig, x=5, y=-5, units="points")
        for _, row in front.iterrows():  # trial numbers, for `nas export --trial N`
            ax.text(row[x], row[y], f"#{int(row['trial'])}", fontsize=7, color="tab:orange", ha="left", va="top",
                    transform=beside, zorder=5)
    for c in study.constraints:
        for bound in (c.max, c.min):
            if bound is not None and c.metric in (x, y):
                line = ax.axvline if c.metric == x else ax.axhline
                line(bound, color="tab:red", linestyle="--", linewidth=1, label=f"constraint {c.describe()}")
    _label_named(ax, rows[has_xy & (rows["named"] != "")], x, y)
    total = len(df)
    if not len(complete) and not len(pruned) and not len(measured_bad):
        ax.text(0.5, 0.5, f"no completed trial yet ({total} trial(s) in the study)", ha="center", va="center",
                transform=ax.transAxes, color="tab:gray")
    else:
        _log_scale_if_spread(ax, rows[x].dropna(), "x")
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.set_xlabel(axis_label(study, x))
    ax.set_ylabel(axis_label(study, y))
    running = int((df["state"] == "running").sum())
    ax.set_title(f"{study.name}: {total} trials, {len(front)} on the Pareto front"
                 + (f" — search running ({running} trial(s) in progress)" if running else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig


def figure_labels(fig: Figure) -> list[str]:
    """The names the plot labels (its annotations), in order."""
    return [t.get_text() for ax in fig.axes for t in ax.texts if isinstance(t, Annotation)]


def _legend(label: str, rows: pd.DataFrame) -> str:
    """'label (n)'; empty groups stay out of the legend."""
    return f"{label} ({len(rows)})" if len(rows) else f"_{label}"


def _maximize(study: Study, metric: str) -> bool:
    for o in study.objectives:
        if o.metric == metric:
            return o.direction == "maximize"
    return METRICS[metric].direction == "maximize" if metric in METRICS else False


def _label_named(ax: Any, named: pd.DataFrame, x: str, y: str) -> None:
    """Mark each named point with a star and annotate it with its name (alternating offsets keep neighbours apart)."""
    if len(named):
        ax.scatter(named[x], named[y], s=90, marker="*", color="black", label="named architecture", zorder=6)
    for i, (_, row) in enumerate(named.iterrows()):
        ax.annotate(str(row["named"]), (row[x], row[y]), xytext=(6, 12 if i % 2 == 0 else -16),
                    textcoords="offset points", fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.6}, zorder=7)


def _log_scale_if_spread(ax: Any, values: pd.Series, axis: str) -> None:
    positive = values[values > 0]
    if len(positive) > 1 and len(positive) == len(values) and positive.max() / positive.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


# -- the summary ------------------------------------------------------------------------------------------------------
def summary(study: Study, ostudy: optuna.Study, df: pd.DataFrame) -> str:
    """Markdown: budget used, trials by state, the front, and where each named point stands."""
    from nas.search import counts_toward_budget, named_standing

    names = study.metric_names
    trials = ostudy.get_trials(deepcopy=False)
    counted = sum(counts_toward_budget(t) for t in trials)
    seconds = float(ostudy.user_attrs.get("search_seconds", 0.0))
    running = int((df["state"] == "running").sum())
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    out = [f"# Study `{study.name}`", ""]
    if study.description:
        out += [study.description, ""]
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in study.objectives)
    out += [f"- study file: `{study.source}`", f"- storage: `{study.storage}`", f"- space: `{study.space.name}`",
            f"- objectives: {objectives}",
            f"- constraints: {', '.join(c.describe() for c in study.constraints) or 'none'}",
            f"- reported: {now}" + (f" — **the search is still running** ({running} trial(s) in progress)"
                                     if running else ""), ""]
    out += ["## Budget", ""]
    b = study.budget
    out.append(f"- trials: {counted}" + (f" of {b.trials} ({100 * counted / b.trials:.0f}%)" if b.trials else "")
               + " finished (interrupted trials are re-run and not counted)")
    minutes = seconds / 60
    out.append(f"- search time: {minutes:.1f} min"
               + (f" of {b.minutes:g} min ({100 * minutes / b.minutes:.0f}%)" if b.minutes else ""))
    out += ["", "## Trials by state", ""]
    counts = df["state"].value_counts()
    out += md_table(["state", "trials"], [[s, int(counts.get(s, 0))] for s in STATES if counts.get(s, 0)]
                    + [["total", len(df)]])
    duplicates = int(df["duplicate_of"].notna().sum()) if "duplicate_of" in df else 0
    if duplicates:
        out += ["", f"{duplicates} trial(s) proposed an architecture already evaluated; its result was reused."]
    complete = int((df["state"] == "complete").sum())
    out += ["", "## Pareto front", ""]
    front = df[df["pareto"]]
    if not complete:
        out.append(f"No completed trial yet ({len(df)} trial(s) in the study): the front is empty."
                   + (" The search is still running; report again later." if running else ""))
    elif not len(front):
        out.append("No feasible complete trial: every complete trial violates a constraint.")
    else:
        cols = ["trial", "named", *names, *(m for m in ("params", "macs") if m not in names and m in df), "hash"]
        front = front.sort_values(names[0], ascending=not _maximize(study, names[0]))
        out += md_table(cols, [[_cell(c, r[c]) for c in cols] for _, r in front.iterrows()])
        out += ["", f"Export one with `nas export {study.source} --trial N --name NAME`, or all of them with "
                f"`--pareto`."]
    standing = named_standing(ostudy, study)
    out += ["", "## Named architectures", ""]
    if not standing:
        out.append("No named architecture was seeded (add `named: [...]` to the study file to compare with them).")
    else:
        by_number = {int(r["trial"]): r for _, r in df.iterrows()}
        rows, dominated = [], []
        for s in standing:
            text = str(s["standing"])
            m = re.match(r"dominated by #(\d+)", text)
            if m:
                dominated.append(s["network"])
                if int(m.group(1)) in by_number:
                    text = "dominated by " + _describe(by_number[int(m.group(1))], names) + text[m.end():]
            rows.append([s["network"], s["trial"], *(_cell(n, s.get(n)) for n in names), text])
        out += md_table(["named", "trial", *names, "standing"], rows)
        if dominated:
            out += ["", f"{len(dominated)} named architecture(s) dominated by a found network: "
                    + ", ".join(f"`{n}`" for n in dominated) + "."]
    return "\n".join(out) + "\n"


def _describe(row: pd.Series, names: list[str]) -> str:
    """'#12 (hash, acc 0.91, 0.42 ms)' — a found network in one cell."""
    parts = [_cell(n, row.get(n)) + ("" if n in ("accuracy", "latency_ms") else f" {n}") for n in names]
    tag = f" `{row['named']}`" if row.get("named") else ""
    return f"#{int(row['trial'])}{tag} (hash {row['hash']}: {', '.join(parts)})"


def _cell(column: str, v: Any) -> str:
    """A table cell: metrics rounded the way people read them."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if column == "accuracy":
        return f"{v:.4f}"
    if column == "latency_ms":
        return f"{v:.3f} ms"
    if column in ("params", "macs", "activations"):
        return human(float(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def md_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """Lines of a GitHub-flavoured Markdown table."""
    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return lines


# -- writing ----------------------------------------------------------------------------------------------------------
def report_dir(study: Study) -> Path:
    """`<study dir>/<name>_report/`."""
    return Path(study.source).parent / f"{study.name}_report"


def write_report(study: Study, out: str | Path | None = None) -> Report:
    """Read the study's storage and write trials.csv, pareto.png and summary.md (each replaced atomically)."""
    ostudy = load_results(study)
    df = trials_table(study, ostudy)
    directory = Path(out) if out is not None else report_dir(study)
    directory.mkdir(parents=True, exist_ok=True)
    csv, png, md = directory / "trials.csv", directory / "pareto.png", directory / "summary.md"
    atomic_write(csv, lambda p: df.to_csv(p, index=False))
    fig = plot_front(study, df)
    meta = {"Title": f"nas report: {study.name}", "Software": "nas report", LABELS_KEY: json.dumps(figure_labels(fig))}
    atomic_write(png, lambda p: fig.savefig(p, format="png", metadata=meta))
    text = summary(study, ostudy, df)
    atomic_write(md, lambda p: p.write_text(text))
    return Report(directory=directory, csv=csv, png=png, summary=md, table=df, figure=fig,
                  front=[int(n) for n in df.loc[df["pareto"], "trial"]], running=bool((df["state"] == "running").any()))


