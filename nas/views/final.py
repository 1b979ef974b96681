"""The paper table of the final stage (`nas.record.final.table`) as cells, a caption and a plot.

One table, the same in the console, summary.md, the dashboard notes and every model card: network, target latency,
params, MACs, proxy accuracy ± spread, final accuracy ± spread (n), the mark, rank by proxy and rank by final. A
figure that is not a converged measurement is not shown as the network's accuracy: the cell says what it is.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from nas.format import human
from nas.record.final import MIXED, FinalRow, noise_of, setting_of
from nas.record.rank import band_pairs, kendall_pairs
from nas.record.training import CONVERGED, DID_NOT_TRAIN, NOT_CONVERGED
from nas.study import Study

HEADER = ["network", "trial", "role", "target latency", "params", "MACs", "proxy accuracy", "final accuracy",
          "mark", "rank (proxy)", "rank (final)"]


def final_cell(row: FinalRow) -> str:
    """The final accuracy as what it is: 'mean ± std (n)', or why it is not the network's accuracy."""
    s = row.final
    if s is None:
        return "pending"
    text = _spread(s)
    status = row.status
    if status == CONVERGED:
        return text
    if status == NOT_CONVERGED:
        return f"not converged: {text} when stopped"
    if status == DID_NOT_TRAIN:
        return f"did not train ({s.mean:.3f}, chance level)"
    if status == MIXED:
        bad = sum(not m.trained for m in row.marks)
        return f"did not train in {bad} of {len(row.marks)} seeds ({text})"
    return text


def cells(row: FinalRow) -> list[str]:
    """One table row of strings."""
    lat = "" if row.latency_ms is None else f"{row.latency_ms:.3f} ms" + (
        f" (IQR {row.latency_iqr_ms:.3f})" if row.latency_iqr_ms is not None else "")
    proxy = "" if row.proxy is None else _spread(row.proxy)
    if row.proxy is not None and not row.proxy_trained:
        proxy = f"did not train ({row.proxy.mean:.3f})"
    if row.proxy is None and row.stopped_at is not None:
        proxy = f"stopped by ASHA after {row.stopped_at} epoch(s)"
    mark = row.status if row.marks else "pending"
    why = "; ".join(sorted({m.why for m in row.marks if not m.trained or m.status == NOT_CONVERGED}))
    return [row.network, f"#{row.trial}", row.role, lat, human(row.params) if row.params is not None else "",
            human(row.macs) if row.macs is not None else "", proxy, final_cell(row),
            mark + (f" ({why})" if why else ""), _rank(row.rank_proxy), _rank(row.rank_final)]


def caption(study: Study, rows: list[FinalRow]) -> list[str]:
    """What each column is of, the seed noise, and how the proxy's ranking agrees with the final one."""
    setting = setting_of(study)
    noise = noise_of(rows)
    out = [f"- **final accuracy**: {setting.describe() if setting else '?'}; mean ± standard deviation over seeds "
           f"(n); validation split of {study.evaluator.data.get('name')}",
           f"- **proxy accuracy**: {study.evaluator.describe_proxy()}",
           f"- **target latency, params, MACs**: {study.evaluator.describe_target()}",
           "- **mark**: converged = validation accuracy flat over the last quarter of epochs (within seed noise); "
           "did not train = loss never clearly below ln C or accuracy within noise of chance (not a measurement "
           "of the architecture, never the loser of a comparison)",
           "- final seed noise: " + (f"{noise:.4f} (pooled std)" if noise is not None else "not measured (one seed)")]
    tau = agreement(rows)
    if tau is not None:
        out.append(f"- proxy vs final ranking among the {tau['n']} trained networks: Kendall tau {tau['all']:.2f} over "
                   f"all pairs; " + (f"{tau['band']:.2f} over the {tau['band_pairs']} pairs within 1.5x of each other's"
                                     " target latency" if tau["band_pairs"] else "no pair within 1.5x latency"))
    return out


def agreement(rows: list[FinalRow], ratio: float = 1.5) -> dict[str, Any] | None:
    """Kendall tau of proxy vs final mean accuracy over the trained rows: all pairs, and the latency band's."""
    ok = [r for r in rows if r.rank_final is not None and r.rank_proxy is not None and r.latency_ms is not None]
    if len(ok) < 2:
        return None
    proxy = [r.proxy.mean for r in ok]
    final = [r.final.mean for r in ok]
    lat = [r.latency_ms for r in ok]
    every = [(i, j) for i in range(len(ok)) for j in range(i + 1, len(ok))]
    band = band_pairs(lat, ratio)
    return {"n": len(ok), "all": kendall_pairs(proxy, final, every),
            "band": kendall_pairs(proxy, final, band) if band else float("nan"), "band_pairs": len(band)}


def plot(study: Study, rows: list[FinalRow]) -> Figure:
    """Final accuracy against target latency: seed spread as error bars, named networks labelled, untrained hollow."""
    fig = Figure(figsize=(8, 5.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    styles = {"front": ("o", "tab:blue", "front"), "named": ("s", "tab:red", "named"),
              "random": ("^", "tab:gray", "random baseline")}
    seen = set()
    for r in rows:
        if r.final is None or r.latency_ms is None:
            continue
        marker, color, label = styles.get(r.role, ("o", "k", r.role))
        measured = r.status == CONVERGED
        ax.errorbar(r.latency_ms, r.final.mean, yerr=r.final.std or 0.0,
                    xerr=(r.latency_iqr_ms or 0.0) / 2, fmt=marker, color=color, capsize=3,
                    mfc=color if measured else "white", label=label if label not in seen else None)
        seen.add(label)
        text = r.network if r.role == "named" else f"#{r.trial}"
        if not measured:
            text += f" ({r.status})"
        ax.annotate(text, (r.latency_ms, r.final.mean), textcoords="offset points", xytext=(6, 6), fontsize=8,
                    color=color)
    setting = setting_of(study)
    ax.set_xlabel(f"latency (ms) of the target: {study.evaluator.describe_target()}", fontsize=8)
    ax.set_ylabel("final validation accuracy (mean ± std over seeds)", fontsize=8)
    ax.set_title(f"{study.name}: final stage — {setting.describe() if setting else ''}\n"
                 "filled: converged; hollow: not converged or did not train; bars: seed std, latency IQR", fontsize=9)
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _spread(s: Any) -> str:
    """'0.9611 ± 0.0042 (n=3)' or '0.9611 (n=1)'."""
    return f"{s.mean:.4f}" + (f" ± {s.std:.4f}" if s.std is not None else "") + f" (n={s.n})"


def _rank(r: int | None) -> str:
    return "" if r is None else str(r)
