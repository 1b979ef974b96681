"""`nas report`: a study's trials table (CSV), Pareto-front plot (PNG) and Markdown summary, written next to it.

The report only reads the study's storage, so it can run while `nas search` is still adding trials (running and
queued trials are listed as such), and on a study with no completed trial (it says so). Files, in
`<study dir>/<study name>_report/`:

    trials.csv   one row per trial: state, named tag, objectives (accuracy: the mean over seeds, with their spread),
                 costs, the accuracy of a pruned trial when it was stopped (its own column), the latency's IQR and
                 noise flag and, for the front and the named points, the latency re-measured at the end with its
                 interval, feasibility, front, hash
    pareto.png   accuracy vs latency (or the study's first two objectives): the front highlighted, named points
                 labelled (labels placed so none overprints another), infeasible and pruned trials drawn apart,
                 the re-measured latency intervals as horizontal bars, and
                 under the title the conditions of each axis; the labels are also in the PNG's text chunks
    summary.md   the conditions (target, proxy, validation size and accuracy resolution), budget used, trials by
                 state, the front as a table, where each named point stands

The study file must still be the one the study was searched with (its settings' fingerprint): the constraint drawn
and the conditions stated are the study file's, so a report of an edited study file is refused, like `nas search`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox
from optuna.trial import FrozenTrial

from nas.fileio import atomic_write
from nas.format import human, md_table
from nas.record import latency as remeasure
from nas.record.fidelity import latest
from nas.record.final import table as final_table
from nas.record.repeats import seed_noise, spread_of, stored
from nas.record.standing import DOMINATED, named_standing
from nas.record.store import load_results
from nas.record.trials import counts_toward_budget, display_name, front, metric_value, state_of
from nas.study import METRICS, Study
from nas.views import final as final_view
from nas.views.fidelity import lines
from nas.views.notes import accuracy_step
from nas.views.standing import standing_text

STATES = ("complete", "infeasible", "pruned", "failed", "interrupted", "running", "waiting")
DUPLICATE = "duplicate"  # the summary's row for trials that reused an earlier trial's result
# Metrics recorded on trials besides the objectives, in table order.
EXTRA_METRICS = ("accuracy", "latency_ms", "params", "macs", "activations", "synflow", "naswot", "snip")
# The latency's spread (IQR), whether it stayed noisy, and the end-of-search re-measure: median and interval.
LATENCY_COLUMNS = ("latency_iqr_ms", "latency_noisy", "latency_remeasured_ms", "latency_low_ms", "latency_high_ms")
LABELS_KEY = "nas:labels"  # PNG text chunk: JSON list of the names labelled in the plot
AXIS_LABELS = {"accuracy": "validation top-1 accuracy",
               "latency_ms": "latency (ms per batch, deploy form)"}
LABEL_OFFSETS = [(r * dx, r * dy) for r in (7, 14, 24, 36, 50, 66, 84) for dx, dy in
                 ((1, -1), (1, 1), (-1, 1), (-1, -1), (1, 0), (0, 1), (-1, 0), (0, -1))]  # points, nearest first


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


def front_numbers(ostudy: optuna.Study) -> list[int]:
    """Numbers of the Pareto-front trials (complete, feasible, non-dominated, duplicates collapsed)."""
    return [t.number for t in front(ostudy)]


# -- the table --------------------------------------------------------------------------------------------------------
def trials_table(study: Study, ostudy: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, named tag, objectives, other metrics, feasibility, front, epochs, hash, reason.

    `accuracy` is a final accuracy only: the mean over the architecture's seeds where repeats exist (`accuracy_std`,
    `seeds`); a trial stopped early by ASHA has its accuracy at that epoch in `accuracy_at_stop` instead.
    """
    names = study.metric_names
    on_front = set(front_numbers(ostudy))
    metrics = [*names, *(m for m in EXTRA_METRICS if m not in names)]
    trials = ostudy.get_trials(deepcopy=False)
    repeats, intervals = stored(ostudy), remeasure.stored(ostudy)
    spreads = {t.user_attrs.get("hash"): spread_of(t, repeats) for t in trials
               if "duplicate_of" not in t.user_attrs and spread_of(t, repeats) is not None}
    rows = []
    for t in trials:
        a = t.user_attrs
        state = state_of(t)
        row: dict[str, Any] = {"trial": t.number, "state": state, "named": a.get("named", ""),
                               "adapted": a.get("adapted", "")}
        row.update({m: metric_value(t, m, names) for m in metrics})
        row["accuracy_at_stop"] = row.pop("accuracy") if state == "pruned" else None
        spread = spreads.get(a.get("hash")) if row.get("accuracy") is not None else None
        if spread is not None and spread.n > 1:
            row.update(accuracy=spread.mean, accuracy_std=spread.std, seeds=spread.n)
        if row.get("latency_ms") is not None:
            row.update(latency_iqr_ms=a.get("latency_iqr_ms"), latency_noisy=bool(a.get("latency_noisy")))
        interval = remeasure.interval_of(t, intervals) if row.get("latency_ms") is not None else None
        if interval is not None:
            row.update(latency_remeasured_ms=interval.median_ms, latency_low_ms=interval.low_ms,
                       latency_high_ms=interval.high_ms)
        row.update(feasible=a.get("feasible", state == "complete") if state in ("complete", "infeasible") else None,
                   pareto=t.number in on_front, epochs=a.get("epochs"), planned_epochs=a.get("planned_epochs"),
                   seconds=a.get("seconds"), val_images=a.get("val_images"), fingerprint=a.get("fingerprint"),
                   hash=a.get("hash", ""),
                   duplicate_of=a.get("duplicate_of"),
                   reason=a.get("fail_reason") or a.get("infeasible") or "",
                   started=_iso(t.datetime_start), finished=_iso(t.datetime_complete))
        rows.append(row)
    columns = ["trial", "state", "named", "adapted", *metrics, "accuracy_std", "seeds", "accuracy_at_stop",
               *LATENCY_COLUMNS, "feasible", "pareto", "epochs", "planned_epochs", "seconds", "val_images",
               "fingerprint", "hash", "duplicate_of", "reason", "started", "finished"]
    df = pd.DataFrame(rows, columns=columns)
    for col in ("epochs", "planned_epochs", "duplicate_of", "params", "macs", "activations", "seeds", "val_images"):
        df[col] = df[col].astype("Int64")  # counts stay integers next to the blanks of unfinished trials
    for col in ("accuracy_std", "accuracy_at_stop", "latency_iqr_ms", "latency_remeasured_ms", "latency_low_ms",
                "latency_high_ms"):
        df[col] = df[col].astype(float)
    df["latency_noisy"] = df["latency_noisy"].astype("boolean")
    # Metrics no trial has (zero-cost scores of a study that does not use them) are left out, and so are the seed and
    # stop columns of a study without repeats or pruning, and the latency columns of a study without latency.
    optional = [m for m in metrics if m not in names] + ["accuracy_std", "seeds", "accuracy_at_stop",
                                                         *LATENCY_COLUMNS]
    return df.drop(columns=[m for m in optional if df[m].isna().all()])


def is_duplicate(t: FrozenTrial) -> bool:
    """Whether `t` reused the result of an earlier trial of the same architecture."""
    return "duplicate_of" in t.user_attrs


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


def validation_images(df: pd.DataFrame) -> int | None:
    """The validation set size the trials' accuracies were measured on (the most common, if they differ)."""
    if "val_images" not in df or not df["val_images"].notna().any():
        return None
    return int(df["val_images"].dropna().mode().iloc[0])


def conditions(study: Study, df: pd.DataFrame) -> dict[str, str]:
    """What each figure is of: {'accuracy': proxy, fidelity, validation size and resolution, 'cost': target, timing}."""
    ev = study.evaluator
    val = validation_images(df)
    acc = f"accuracy of the proxy — {ev.describe_proxy()}"
    if val:
        acc += f"; {val} validation images, so {accuracy_step(val)} ({1 / val:.4f} in accuracy)"
    timing = ", ".join(f"{k} {v}" for k, v in sorted(ev.latency.items())
                       if k not in ("device", "batch_size", "threads", "backend"))
    cost = (f"latency, params and MACs of the target — {ev.describe_target()}, deploy form"
            + (f" ({timing})" if timing else ""))
    if "latency_low_ms" in df and df["latency_low_ms"].notna().any():
        cost += ("; green bars: the latency interval re-measured at the end (interleaved rounds; ticks: its median) — "
                 "networks whose bars overlap are not established as faster or slower")
    return {"accuracy": acc, "cost": cost}


def plot_front(study: Study, df: pd.DataFrame) -> Figure:
    """The Pareto plot: front highlighted, named points labelled, infeasible and pruned trials drawn apart.

    Every legend count is the number of such trials in the summary's tables (duplicates, which repeat an earlier
    trial's point, are left out of both); trials that lack a plotted figure are counted as 'not plotted'.
    """
    x, y = plot_axes(study, df)
    fig = Figure(figsize=(10, 6.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    rows = df[df["duplicate_of"].isna()].astype({x: float, y: float})
    has_xy = rows[x].notna() & rows[y].notna()
    complete_all = rows[rows["state"] == "complete"]
    complete = complete_all[has_xy[complete_all.index]]
    front = complete[complete["pareto"]].sort_values(x)
    others_all = complete_all[~complete_all["pareto"]]
    others = others_all[has_xy[others_all.index]]
    stop_y = "accuracy_at_stop" if y == "accuracy" and "accuracy_at_stop" in rows else y
    pruned_all = rows[rows["state"] == "pruned"].astype({stop_y: float})
    pruned = pruned_all[pruned_all[x].notna() & pruned_all[stop_y].notna()]
    infeasible = rows[rows["state"] == "infeasible"]
    measured_bad = infeasible[infeasible[x].notna() & infeasible[y].notna()]
    untrained = infeasible[infeasible[x].notna() & infeasible[y].isna()]
    spread = y == "accuracy" and "accuracy_std" in rows
    ax.errorbar(others[x], others[y], yerr=others["accuracy_std"].fillna(0.0) if spread else None, fmt="o", ms=4.5,
                color="tab:blue", alpha=0.7, elinewidth=0.8, zorder=3,
                label=_legend("complete, not on the front", others, len(others_all)))
    ax.scatter(pruned[x], pruned[stop_y], s=26, facecolors="none", edgecolors="tab:gray",
               label=_legend("pruned: accuracy when stopped", pruned, len(pruned_all)), zorder=2)
    ax.scatter(measured_bad[x], measured_bad[y], s=30, marker="x", color="tab:red", alpha=0.8,
               label=_legend("infeasible, trained", measured_bad, len(infeasible) - len(untrained)), zorder=2)
    if len(untrained):
        # Untrained infeasible trials have no accuracy: a rug along the bottom shows where they fell on x.
        ax.scatter(untrained[x], [0.0] * len(untrained), marker="|", s=160, color="tab:red",
                   transform=ax.get_xaxis_transform(), clip_on=False,
                   label=_legend("infeasible, not trained", untrained, len(untrained)), zorder=2)
        ax.dataLim.update_from_data_x(untrained[x].to_numpy(dtype=float), ignore=False)
        ax.autoscale_view()
    if len(front):
        ax.step(front[x], front[y], where="post" if _maximize(study, y) != _maximize(study, x) else "pre",
                color="tab:orange", linewidth=1.5, zorder=4)
        if spread:
            ax.errorbar(front[x], front[y], yerr=front["accuracy_std"].fillna(0.0), fmt="none", ecolor="tab:orange",
                        elinewidth=1.0, zorder=4)
        ax.scatter(front[x], front[y], s=70, color="tab:orange", edgecolors="black", linewidths=0.6,
                   label=_legend("Pareto front", front, int(complete_all["pareto"].sum())), zorder=5)
    for c in study.constraints:
        for bound in (c.max, c.min):
            if bound is not None and c.metric in (x, y):
                line = ax.axvline if c.metric == x else ax.axhline
                line(bound, color="tab:red", linestyle="--", linewidth=1, label=f"constraint {c.describe()}")
    if x == "latency_ms" and "latency_low_ms" in rows:
        _latency_intervals(ax, rows[has_xy & rows["latency_low_ms"].notna()], y)
    named = rows[has_xy & (rows["named"] != "")]
    if len(named):
        ax.scatter(named[x], named[y], s=90, marker="*", color="black", label="named architecture", zorder=6)
    total = len(df)
    if not len(complete) and not len(pruned) and not len(measured_bad):
        ax.text(0.5, 0.5, f"no completed trial yet ({total} trial(s) in the study)", ha="center", va="center",
                transform=ax.transAxes, color="tab:gray")
    else:
        _log_scale_if_spread(ax, rows[x].dropna(), "x")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.85, borderaxespad=0.0)
    ax.set_xlabel(axis_label(study, x))
    ax.set_ylabel(axis_label(study, y))
    running = int((df["state"] == "running").sum())
    duplicates = int(df["duplicate_of"].notna().sum())
    fig.suptitle(f"{study.name}: {total} trials, {len(front)} on the Pareto front"
                 + (f", {duplicates} duplicate(s) not drawn" if duplicates else "")
                 + (f" — search running ({running} trial(s) in progress)" if running else ""), fontsize=10)
    cond = conditions(study, df)
    ax.set_title(fill(cond["accuracy"], 140) + "\n" + fill(cond["cost"], 140), fontsize=7, loc="left", color="0.25")
    ax.grid(True, alpha=0.3)
    labels = [(row[x], row[y], f"#{int(row['trial'])}", "front") for _, row in front.iterrows()]
    labels += [(row[x], row[y], str(row["named"]) + (f" ({row['adapted']})" if row["adapted"] else ""), "named")
               for _, row in named.iterrows()]
    place_labels(fig, ax, labels)
    return fig


def _latency_intervals(ax: Any, rows: pd.DataFrame, y: str) -> None:
    """The re-measured latency of each point: a horizontal bar over its interval, a tick at its median."""
    if not len(rows):
        return
    ax.hlines(rows[y], rows["latency_low_ms"], rows["latency_high_ms"], color="tab:green", linewidth=2.2, alpha=0.75,
              zorder=4.5, label=f"latency re-measured at the end: interval ({len(rows)})")
    ax.scatter(rows["latency_remeasured_ms"], rows[y], marker="|", s=140, color="tab:green", linewidths=1.6,
               zorder=4.6, label="_re-measured median")
    ax.dataLim.update_from_data_x(rows[["latency_low_ms", "latency_high_ms"]].to_numpy(dtype=float).ravel(),
                                  ignore=False)
    ax.autoscale_view()


def fill(text: str, width: int) -> str:
    """`text` wrapped at `width` characters."""
    return "\n".join(textwrap.wrap(text, width))


def place_labels(fig: Figure, ax: Any, labels: list[tuple[float, float, str, str]]) -> None:
    """Annotate points so that no label overprints another label, another labelled point or the axes' edge.

    Greedy: each label (front trial numbers first, then named points) takes the nearest of rings of offsets whose box
    lies inside the axes and overlaps nothing placed; a label set apart from its point gets a leader line. The layout
    is computed first and then frozen, so the boxes measured here are the boxes drawn.
    """
    fig.draw_without_rendering()  # constrained layout settles the axes before label boxes are measured
    fig.set_layout_engine("none")
    renderer = fig._get_renderer()
    inside = ax.get_window_extent(renderer)
    centres = [ax.transData.transform((px, py)) for px, py, _, _ in labels]
    half = 7 * fig.dpi / 72  # a marker's half width (front points and stars are about 14 points wide)
    points = [Bbox.from_bounds(cx - half, cy - half, 2 * half, 2 * half) for cx, cy in centres]
    placed: list[Bbox] = []
    for i, (px, py, text, kind) in enumerate(labels):
        style = {"fontsize": 7, "color": "tab:orange"} if kind == "front" else {"fontsize": 8}
        others = [p for j, p in enumerate(points) if j != i]
        chosen = None
        for strict in (True, False):  # no free spot near the point: anywhere on the rings apart from other labels
            for dx, dy in LABEL_OFFSETS:
                ann = _annotation(ax, px, py, text, kind, dx, dy, style)
                box = _text_box(ann, renderer)
                free = not any(box.overlaps(b) for b in placed)
                if free and (not strict or (_within(box, inside) and not any(box.overlaps(p) for p in others))):
                    chosen = box
                    break
                ann.remove()
            if chosen is not None:
                placed.append(chosen)
                break


def _text_box(ann: Annotation, renderer: Any) -> Bbox:
    """The box of a label's text (an annotation's own extent includes its leader line, which may cross points)."""
    ann.get_window_extent(renderer)  # places the text (update_positions) with this renderer
    return Text.get_window_extent(ann, renderer)


def _within(box: Bbox, outer: Bbox) -> bool:
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1


def _annotation(ax: Any, px: float, py: float, text: str, kind: str, dx: float, dy: float, style: dict) -> Annotation:
    """A label at (dx, dy) points from its point, aligned away from it; a leader line when it is set apart."""
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    near = max(abs(dx), abs(dy)) <= LABEL_OFFSETS[0][0]
    arrow = None if near else {"arrowstyle": "-", "color": "0.5", "linewidth": 0.6}
    return ax.annotate(text, (px, py), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, gid=kind,
                       arrowprops=arrow, annotation_clip=False, zorder=7,
                       bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
                       **style)


def figure_labels(fig: Figure, kind: str = "named") -> list[str]:
    """The labels of the plot's points of `kind` ('named' architectures or 'front' trial numbers), in order."""
    return [t.get_text() for ax in fig.axes for t in ax.texts if isinstance(t, Annotation) and t.get_gid() == kind]


def label_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every point label of the plot with its box on the canvas (pixels), to check that none overprints another."""
    fig.draw_without_rendering()
    renderer = fig._get_renderer()
    return [(t.get_text(), _text_box(t, renderer)) for ax in fig.axes for t in ax.texts
            if isinstance(t, Annotation) and t.get_gid() in ("named", "front")]


def _legend(label: str, plotted: pd.DataFrame, total: int) -> str:
    """'label (n)', or 'label (n, k not plotted)' when some lack a figure; empty groups stay out of the legend."""
    if not total:
        return f"_{label}"
    missing = total - len(plotted)
    return f"{label} ({total}" + (f", {missing} not plotted" if missing else "") + ")"


def _maximize(study: Study, metric: str) -> bool:
    for o in study.objectives:
        if o.metric == metric:
            return o.direction == "maximize"
    return METRICS[metric].direction == "maximize" if metric in METRICS else False


def _log_scale_if_spread(ax: Any, values: pd.Series, axis: str) -> None:
    positive = values[values > 0]
    if len(positive) > 1 and len(positive) == len(values) and positive.max() / positive.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


# -- the summary ------------------------------------------------------------------------------------------------------
def summary(study: Study, ostudy: optuna.Study, df: pd.DataFrame) -> str:
    """Markdown: budget used, trials by state, the front, and where each named point stands."""
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
    out += conditions_section(study, df)
    out += ["## Budget", ""]
    b = study.budget
    out.append(f"- trials: {counted}" + (f" of {b.trials} ({100 * counted / b.trials:.0f}%)" if b.trials else "")
               + " finished (interrupted trials are re-run and not counted)")
    minutes = seconds / 60
    out.append(f"- search time: {minutes:.1f} min"
               + (f" of {b.minutes:g} min ({100 * minutes / b.minutes:.0f}%)" if b.minutes else ""))
    out += ["", "## Trials by state", ""]
    out += md_table(["state", "trials", "in the plot"], state_rows(df))
    duplicates = int(df["duplicate_of"].notna().sum())
    if duplicates:
        out += ["", f"{duplicates} trial(s) proposed an architecture already evaluated; its result was reused (they "
                "are counted once, as `duplicate`, and stored PRUNED so the dashboard lists each point once)."]
    complete = int((df["state"] == "complete").sum())
    out += ["", "## Pareto front", ""]
    front = df[df["pareto"]]
    if not complete:
        out.append(f"No completed trial yet ({len(df)} trial(s) in the study): the front is empty."
                   + (" The search is still running; report again later." if running else ""))
    elif not len(front):
        out.append("No feasible complete trial: every complete trial violates a constraint.")
    else:
        remeasured = "latency_low_ms" in df and front["latency_low_ms"].notna().any()
        cols = ["trial", "named", *names, *(["latency re-measured"] if remeasured else []),
                *(m for m in ("params", "macs") if m not in names and m in df), "hash"]
        front = front.sort_values(names[0], ascending=not _maximize(study, names[0]))
        out += md_table(cols, [[_row_cell(c, r) for c in cols] for _, r in front.iterrows()])
        out += latency_order(front)
        out += ["", f"Export one with `nas export {study.source} --trial N --name NAME`, or all of them with "
                f"`--pareto`."]
    standing = named_standing(ostudy, study)
    out += ["", "## Named architectures", ""]
    if not standing:
        out.append("No named architecture was seeded (add `named: [...]` to the study file to compare with them).")
    else:
        by_number = {int(r["trial"]): r for _, r in df.iterrows()}
        remeasured_any = "latency_low_ms" in df and df["latency_low_ms"].notna().any()
        rows, dominated = [], []
        finals = {r.trial: r for r in final_table(study, ostudy)}

        def name_of(n: int) -> str:
            if finals and n in finals and finals[n].final is not None:  # a final-stage claim names final figures
                r = finals[n]
                lat = f", {r.latency_ms:.3f} ms" if r.latency_ms is not None else ""
                return f"#{n} ({r.final.mean:.4f}{lat})"
            return _describe(by_number[n], names) if n in by_number else f"#{n}"

        for s in standing:
            if s["standing"] == DOMINATED:
                dominated.append(s["network"])
            row = by_number.get(int(s["trial"]))
            interval = [_row_cell("latency re-measured", row) if row is not None else ""] if remeasured_any else []
            rows.append([s["network"], s["trial"], *(_cell(n, s.get(n)) for n in names), *interval,
                         standing_text(s, name_of)])
        out += md_table(["named", "trial", *names, *(["latency re-measured"] if remeasured_any else []), "standing"],
                        rows)
        if dominated:
            out += ["", f"{len(dominated)} named architecture(s) dominated by a found network: "
                    + ", ".join(f"`{n}`" for n in dominated) + "."]
        out += gap_lines(study, ostudy)
    out += final_section(study, ostudy)
    out += ["", "## Proxy fidelity", ""]
    fidelity = latest_fidelity(ostudy)
    if fidelity is None:
        out.append(f"Not measured: how well the proxy ranks architectures like real training is unknown. Run "
                   f"`nas fidelity {study.source}` to measure it.")
    else:
        out += [f"- {line}" for line in lines(fidelity)]
        out += ["", "![proxy vs high-fidelity accuracy](fidelity.png)", ""]
        rows = [[n, name, " / ".join(f"{a:.4f}" for a in pa), " / ".join(f"{a:.4f}" for a in ha)]
                for n, name, pa, ha in zip(fidelity["trials"], fidelity["names"], fidelity["proxy_acc"],
                                           fidelity["high_acc"])]
        out += md_table(["trial", "named", "proxy accuracy (seeds)", "high-fidelity accuracy (seeds)"], rows)
    return "\n".join(out) + "\n"


def final_section(study: Study, ostudy: optuna.Study) -> list[str]:
    """'## Final stage': the paper table, what its columns are of, and the plot (or how to run the stage)."""
    out = ["", "## Final stage", ""]
    rows = final_table(study, ostudy)
    if not rows:
        if study.final is None:
            return out + ["No final stage: every accuracy above is the proxy's. Add a `final:` block to the study to "
                          "train the front, the named networks and random baselines to convergence."]
        return out + [f"Not run yet: run `nas final {study.source}` (or `nas search` again) to train the chosen "
                      "networks to convergence."]
    out += ["The networks the search chose, the named networks and random draws of the space, each trained again as "
            "the *target* with a recipe meant to converge. Every dominance statement above is about these final "
            "accuracies.", ""]
    out += md_table(final_view.HEADER, [final_view.cells(r) for r in rows])
    out += ["", *final_view.caption(study, rows), "", "![final accuracy vs target latency](final.png)"]
    return out


def gap_lines(study: Study, ostudy: optuna.Study) -> list[str]:
    """Why each trained named point is behind the best found network: the gap, the noise, and its training curve.

    A curve still rising in the last epoch says the proxy's budget, not only the architecture, explains the gap.
    """
    if "accuracy" not in study.metric_names:
        return []
    repeats, noise = stored(ostudy), seed_noise(ostudy)
    found = [t for t in front(ostudy) if not t.user_attrs.get("named") and spread_of(t, repeats) is not None]
    if not found:
        return []
    best = max(found, key=lambda t: spread_of(t, repeats).mean)
    top = spread_of(best, repeats)
    out = ["", f"Proxy accuracy against the most accurate found network of the front, #{best.number} ({top.text()}"
           + (f"; seed noise {noise[0]:.4f}" if noise else "; seed noise not measured") + "):", ""]
    for t in ostudy.get_trials(deepcopy=False):
        a = t.user_attrs
        s = spread_of(t, repeats)
        if not a.get("named") or "duplicate_of" in a or s is None:
            continue
        history = [float(v) for v in (t.system_attrs.get("history") or a.get("history") or [])]
        gap = top.mean - s.mean
        line = f"- `{display_name(t) or f'#{t.number}'}`: {s.text()}, {100 * gap:.1f} points behind"
        if history:
            line += "; per epoch " + " → ".join(f"{v:.3f}" for v in history)
            last = history[-1] - history[-2] if len(history) > 1 else 0.0
            if last > (noise[0] if noise else 0.0):
                line += (f" — still rising by {100 * last:.1f} points in the last epoch: the proxy's "
                         f"{study.evaluator.epochs}-epoch budget explains part of the gap")
            else:
                line += " — flat at the end: the gap is the architecture's at this budget"
        if isinstance(a.get("params"), (int, float)):
            line += f" (target: {human(a['params'])} params, {human(a.get('macs', 0))} MACs)"
        out.append(line)
    return out


def latest_fidelity(ostudy: optuna.Study) -> dict | None:
    """The study's last `nas fidelity` summary, or None."""
    return latest(ostudy)


def plot_fidelity(fidelity: dict) -> Figure:
    """Proxy vs high-fidelity accuracy (seed means, bars: seed range) and the two rankings against the diagonal."""
    import numpy as np

    fig = Figure(figsize=(10, 4.6), dpi=110)
    ax, rk = fig.subplots(1, 2)
    p, h = np.array(fidelity["proxy_acc"], dtype=float), np.array(fidelity["high_acc"], dtype=float)
    pm, hm = p.mean(axis=1), h.mean(axis=1)
    ax.errorbar(pm, hm, xerr=[pm - p.min(axis=1), p.max(axis=1) - pm], yerr=[hm - h.min(axis=1), h.max(axis=1) - hm],
                fmt="o", color="tab:blue", ecolor="tab:gray", capsize=2)
    ax.set_xlabel(f"proxy accuracy ({fidelity['proxy']})", fontsize=8)
    ax.set_ylabel(f"high-fidelity accuracy ({fidelity['high_fidelity']})", fontsize=8)
    ax.grid(True, alpha=0.3)
    order_p, order_h = pm.argsort().argsort() + 1, hm.argsort().argsort() + 1
    rk.scatter(order_p, order_h, color="tab:blue")
    k = len(pm)
    rk.plot([1, k], [1, k], color="tab:red", linestyle="--", linewidth=1, label="same order")
    rk.set_xlabel("rank by proxy (1 = worst)", fontsize=8)
    rk.set_ylabel("rank by high fidelity", fontsize=8)
    rk.legend(fontsize=8, loc="upper left")
    rk.grid(True, alpha=0.3)
    rk.set_xticks(range(1, k + 1))
    rk.set_yticks(range(1, k + 1))
    fig.suptitle(f"{fidelity['verdict']}\n{fidelity['seeds']} seed(s) per architecture (points: seed means; bars: "
                 "seed range)", fontsize=9)
    fig.tight_layout()
    place_labels(fig, ax, [(float(x), float(y), f"#{n}" + (f" {name}" if name else ""), "named")
                           for x, y, n, name in zip(pm, hm, fidelity["trials"], fidelity["names"])])
    return fig


def conditions_section(study: Study, df: pd.DataFrame) -> list[str]:
    """'## Conditions': what each figure is of (target or proxy, width, resolution, timing, validation size)."""
    ev = study.evaluator
    lat = ev.latency
    val = validation_images(df)
    out = ["## Conditions", "",
           f"- **accuracy** is of the *proxy* (the trained copy): {ev.describe_proxy()}; "
           f"width ×{ev.proxy.width_mult:g}, {ev.proxy.resolution}px input",
           f"- **latency, params, MACs** are of the *target* (the deployed network, deploy form): width "
           f"×{ev.target.width_mult:g}, {ev.target.resolution}px input; latency per batch of "
           f"{lat.get('batch_size', 1)} on {lat.get('device', 'cpu')}, {lat.get('threads', 1)} thread(s), "
           f"{study.evaluator.latency_backend} backend",
           "- latency settings: " + ", ".join(f"{k} {v}" for k, v in sorted(lat.items()))]
    if "latency_noisy" in df and df["latency_noisy"].notna().any():
        noisy = int(df["latency_noisy"].fillna(False).sum())
        out.append(f"- latency noise: a measurement with IQR / median above {remeasure.NOISY_REL_IQR:g} is measured "
                   f"again; {noisy} trial(s) stayed that noisy (**noisy** in the tables, `latency_noisy` in "
                   "trials.csv)")
    if "latency_low_ms" in df and df["latency_low_ms"].notna().any():
        out.append("- latency re-measured at the end: the front's and the named networks' targets timed again in "
                   "interleaved rounds on one machine; median and [lowest, highest] round median "
                   "(`latency_remeasured_ms`, `latency_low_ms`, `latency_high_ms`); a network is called faster only "
                   "when the intervals do not overlap")
    fingerprints = sorted({str(f) for f in df.get("fingerprint", pd.Series(dtype=str)).dropna()})
    if fingerprints:
        out.append("- device fingerprint(s): " + ", ".join(f"`{f}`" for f in fingerprints))
    if val:
        out.append(f"- validation set: {val} images, so accuracy moves in steps of {1 / val:.4f} "
                   f"({accuracy_step(val)}): front points closer than a few steps differ by a few images")
    else:
        out.append("- validation set: no trained trial yet")
    if "seeds" in df and df["seeds"].notna().any():
        out.append("- accuracy of an architecture trained with several seeds: mean ± standard deviation over its seeds")
    else:
        out.append("- accuracy: one seed per architecture (run `nas repeat` to measure the seed-to-seed spread)")
    return [*out, ""]


def state_rows(df: pd.DataFrame) -> list[list[Any]]:
    """Rows of the trials-by-state table: each state (duplicates apart), how the plot shows it, and the total."""
    own = df[df["duplicate_of"].isna()]
    counts = own["state"].value_counts()
    front = int(own["pareto"].sum())
    shown = {"complete": f"{front} on the Pareto front, {int(counts.get('complete', 0)) - front} not",
             "pruned": "hollow grey, at the accuracy when stopped", "running": "not drawn", "waiting": "not drawn",
             "failed": "not drawn", "interrupted": "not drawn (re-queued)"}
    infeasible = own[own["state"] == "infeasible"]
    untrained = int(infeasible["accuracy"].isna().sum()) if "accuracy" in infeasible else len(infeasible)
    shown["infeasible"] = f"{len(infeasible) - untrained} trained (red x), {untrained} not trained (red rug)"
    rows = [[s, int(counts.get(s, 0)), shown.get(s, "")] for s in STATES if counts.get(s, 0)]
    duplicates = len(df) - len(own)
    if duplicates:
        rows.append([DUPLICATE, duplicates, "not drawn (the point of the trial it repeats)"])
    return [*rows, ["total", len(df), ""]]


def _row_cell(column: str, row: pd.Series) -> str:
    """A cell of a trial's row: accuracy as 'mean ± std (n seeds)' where repeats exist, latency with its IQR (and
    'noisy' when it stayed so), the re-measured latency as 'median [low, high]'."""
    if column == "accuracy" and pd.notna(row.get("accuracy_std")):
        return f"{row['accuracy']:.4f} ± {row['accuracy_std']:.4f} ({int(row['seeds'])} seeds)"
    if column == "latency_ms" and pd.notna(row.get("latency_ms")) and pd.notna(row.get("latency_iqr_ms")):
        return (f"{row['latency_ms']:.3f} ms (IQR {row['latency_iqr_ms']:.3f})"
                + (" **noisy**" if row.get("latency_noisy") is True else ""))
    if column == "latency re-measured":
        if pd.isna(row.get("latency_low_ms")):
            return ""
        return f"{row['latency_remeasured_ms']:.3f} ms [{row['latency_low_ms']:.3f}, {row['latency_high_ms']:.3f}]"
    return _cell(column, row.get(column))


def latency_order(front: pd.DataFrame) -> list[str]:
    """Which front networks' re-measured latency intervals overlap: their latency order is not established."""
    if "latency_low_ms" not in front:
        return []
    done = front[front["latency_low_ms"].notna()].sort_values("latency_remeasured_ms")
    if len(done) < 2:
        return []
    pairs = [(int(a["trial"]), int(b["trial"])) for i, (_, a) in enumerate(done.iterrows())
             for _, b in list(done.iterrows())[i + 1:]
             if a["latency_low_ms"] <= b["latency_high_ms"] and b["latency_low_ms"] <= a["latency_high_ms"]]
    order = " < ".join(f"#{int(r['trial'])}" for _, r in done.iterrows())
    out = ["", f"Latency re-measured at the end (median, [lowest, highest] of the interleaved rounds): by median "
           f"{order}."]
    if pairs:
        out.append("Not established as faster or slower (their intervals overlap): "
                   + ", ".join(f"#{a} and #{b}" for a, b in pairs) + ".")
    else:
        out.append("No two intervals overlap: that order is established.")
    return out


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
    rows = final_table(study, ostudy)
    if rows:
        final_fig = final_view.plot(study, rows)
        atomic_write(directory / "final.png", lambda p: final_fig.savefig(p, format="png"))
    fidelity = latest_fidelity(ostudy)
    if fidelity is not None:
        ffig = plot_fidelity(fidelity)
        atomic_write(directory / "fidelity.png", lambda p: ffig.savefig(p, format="png"))
    return Report(directory=directory, csv=csv, png=png, summary=md, table=df, figure=fig,
                  front=[int(n) for n in df.loc[df["pareto"], "trial"]], running=bool((df["state"] == "running").any()))


