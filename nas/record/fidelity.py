"""Proxy fidelity in the record: the high-fidelity setting a study's proxy is judged against, its stored runs
(`fidelity:<setting>:<arch hash>:<seed>`), its stored comparison (`fidelity_summary:<setting>`, the setting last
measured in `fidelity_latest`), and which trials to re-train. `nas.run.fidelity` trains and compares;
`nas.record.rank` holds the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.record.repeats import runs_under
from nas.record.trials import proxy_mark
from nas.study import Study

PREFIX = "fidelity:"

SUMMARY = "fidelity_summary:"

LATEST = "fidelity_latest"



@dataclass(frozen=True)
class HighFidelity:
    """The setting trained instead of the proxy: network width and resolution, training images, epochs."""

    width_mult: float
    resolution: int
    epochs: int

    @property
    def key(self) -> str:
        """Identifies the setting in the storage."""
        return f"w{self.width_mult:g}-r{self.resolution}-e{self.epochs}"

    def describe(self) -> str:
        """'×1 @16px, all training images, 12 epochs'."""
        return f"×{self.width_mult:g} @{self.resolution}px, all training images, {self.epochs} epochs"


def high_fidelity(study: Study, *, epochs: int | None = None, width_mult: float | None = None,
                  resolution: int | None = None) -> HighFidelity:
    """The default high fidelity: the study's target network, trained 3x the proxy's epochs (each settable)."""
    t = study.evaluator.target
    return HighFidelity(width_mult=width_mult or t.width_mult, resolution=resolution or t.resolution,
                        epochs=epochs or 3 * study.evaluator.epochs)


def stored_runs(ostudy: optuna.Study, hf: HighFidelity) -> dict[str, dict[int, dict]]:
    """High-fidelity runs of setting `hf`: arch hash → seed index → record."""
    return runs_under(ostudy, f"{PREFIX}{hf.key}:")


def latest(ostudy: optuna.Study) -> dict | None:
    """The last stored comparison (see the module docstring), or None."""
    key = ostudy.user_attrs.get(LATEST)
    return ostudy.user_attrs.get(f"{SUMMARY}{key}") if key else None


def accuracy_of(t: FrozenTrial) -> float | None:
    """A trial's proxy accuracy, or None when it has none (not COMPLETE, or never trained, or not recorded)."""
    if t.state != TrialState.COMPLETE or t.user_attrs.get("trained") is False:
        return None
    acc = t.user_attrs.get("accuracy")
    return float(acc) if isinstance(acc, (int, float)) and math.isfinite(acc) else None


def pick_trials(trials: Iterable[FrozenTrial], k: int, *, front: Iterable[int] = ()) -> list[FrozenTrial]:
    """Up to k trials with an accuracy: the front (trial numbers), named points, then the rest spread over the range.

    The spread picks, for evenly spaced accuracies from the lowest to the highest, the nearest trial not yet picked;
    when the front and named points alone exceed k, they are themselves spread. Duplicates of a trial are skipped.
    The result is ordered by trial number.
    """
    if k < 2:
        raise ValueError(f"k must be >= 2 to rank anything, got {k}")
    pool = [t for t in trials if accuracy_of(t) is not None and "duplicate_of" not in t.user_attrs
            and proxy_mark(t) is None]  # a network that never left chance is easy to rank and tells nothing
    on_front = set(front)
    first = [t for t in pool if t.number in on_front or t.user_attrs.get("named")]
    rest = [t for t in pool if t.number not in {f.number for f in first}]
    chosen = _spread(first, k) if len(first) > k else first
    chosen += _spread(rest, k - len(chosen), within=pool)
    return sorted(chosen, key=lambda t: t.number)


def _spread(trials: list[FrozenTrial], m: int, within: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """m of `trials` nearest to m evenly spaced accuracies over the range of `within` (default: `trials`)."""
    if m <= 0 or not trials:
        return []
    accs = [accuracy_of(t) for t in (within or trials)]
    lo, hi = min(accs), max(accs)
    left = sorted(trials, key=lambda t: (accuracy_of(t), t.number))
    out = []
    for goal in np.linspace(lo, hi, m) if m > 1 else [hi]:
        if not left:
            break
        best = min(left, key=lambda t: (abs(accuracy_of(t) - goal), t.number))
        out.append(best)
        left.remove(best)
    return out
