"""A stored proxy-fidelity comparison as text lines (CLI, report, model card)."""

from __future__ import annotations


def lines(summary: dict) -> list[str]:
    """The summary as text lines (CLI and report)."""
    def iv(v: list) -> str:
        return f"{_f(v[0])} [{_f(v[1])}, {_f(v[2])}]"

    pn, hn = summary["proxy_noise"], summary["high_noise"]
    return [
        f"verdict: {summary['verdict']}",
        f"proxy: {summary['proxy']}; high fidelity: {summary['high_fidelity']}; {summary['seeds']} seed(s) each",
        f"Kendall tau {iv(summary['tau'])}, Spearman rho {iv(summary['rho'])} ({int(summary['level'] * 100)} % "
        "bootstrap intervals over architectures)",
        *([f"within the latency band (pairs within {summary.get('band_ratio', 1.5):g}x of each other's target "
           f"latency, {summary['band_pairs']} pairs): Kendall tau {iv(summary['band_tau'])}"]
          if summary.get("band_tau") else []),
        *(["left out (did not train or did not converge): "
           + ", ".join(f"#{n}{' ' + name if name else ''} ({why})" for n, name, why in summary["excluded"])]
          if summary.get("excluded") else []),
        f"seed noise: proxy mean |seed difference| {_f(pn['mean_abs_diff'], 4)} (seed-to-seed tau {_f(pn['tau'])}), "
        f"high fidelity {_f(hn['mean_abs_diff'], 4)} (tau {_f(hn['tau'])})",
        f"top-{summary['top']} overlap {summary['top_overlap']:.2f}; high-fidelity training "
        f"{summary['high_minutes']:.1f} CPU/GPU-minutes",
    ]


def _f(v: float | None, digits: int = 2) -> str:
    return "nan" if v is None else f"{v:.{digits}f}"
