"""Whether a training run is a measurement: did it train at all, and had it converged when it stopped?

A run that never learned says something about the recipe, not the architecture, so it is marked and kept out of
comparisons. Both rules read only what a run stores (per-epoch validation accuracy and mean training loss, the number
of classes and validation images, the label smoothing of its recipe):

- **did not train**: its training loss never fell clearly below the loss of predicting the class prior (ln C for
  balanced classes; label smoothing raises the lowest reachable loss, not this one), or its accuracy is within noise
  of chance (two binomial standard errors of an accuracy of 1/C on its validation images). "Clearly below": by at
  least `LOSS_DROP` (5 %) of the way from ln C down to the lowest loss the smoothed targets allow.
- **not converged**: its validation accuracy still rises over the last quarter of its epochs (a least-squares slope
  times the window's length) by more than the noise (seed noise when measured, else two binomial standard errors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LOSS_DROP = 0.05  # a run must remove at least this fraction of the removable loss to count as trained
CONVERGED = "converged"
NOT_CONVERGED = "not converged"
DID_NOT_TRAIN = "did not train"


def prior_loss(classes: int) -> float:
    """Cross-entropy of predicting the (balanced) class prior: ln C, whatever the label smoothing."""
    return math.log(classes)


def floor_loss(classes: int, smoothing: float = 0.0) -> float:
    """The lowest cross-entropy reachable with label-smoothed targets: their entropy (0 without smoothing)."""
    if smoothing <= 0:
        return 0.0
    hit = 1.0 - smoothing + smoothing / classes
    miss = smoothing / classes
    return -(hit * math.log(hit) + (classes - 1) * miss * math.log(miss))


def chance_band(classes: int, val_images: int | None) -> float:
    """Accuracies at or below this are within noise of chance (1/C plus two binomial standard errors)."""
    p = 1.0 / classes
    n = val_images if isinstance(val_images, int) and val_images > 0 else 0
    return p + (2.0 * math.sqrt(p * (1.0 - p) / n) if n else 0.02)


@dataclass(frozen=True)
class Mark:
    """What a run is: `status` (converged | not converged | did not train) and why, in words."""

    status: str
    why: str

    @property
    def trained(self) -> bool:
        """Whether the run is a measurement of the architecture (it left chance)."""
        return self.status != DID_NOT_TRAIN


def trained_mark(history: Sequence[float], losses: Sequence[float] | None, classes: int, val_images: int | None,
                 smoothing: float = 0.0) -> Mark | None:
    """A 'did not train' mark when the run never left chance or never lowered its loss; None when it trained."""
    if not history:
        return Mark(DID_NOT_TRAIN, "no epoch finished")
    band = chance_band(classes, val_images)
    if max(history) <= band:
        return Mark(DID_NOT_TRAIN, f"accuracy never above {band:.3f}, within noise of chance (1/{classes})")
    if losses:
        top, floor = prior_loss(classes), floor_loss(classes, smoothing)
        need = top - LOSS_DROP * (top - floor)
        if min(losses) > need:
            return Mark(DID_NOT_TRAIN, f"training loss never below {need:.3f} (ln {classes} = {top:.3f})")
    return None


def convergence_mark(history: Sequence[float], noise: float | None, val_images: int | None,
                     stopped_early: bool = False) -> Mark:
    """'converged' or 'not converged' from the last quarter of the validation curve (a patience stop is converged)."""
    if stopped_early:
        return Mark(CONVERGED, "stopped by patience: no improvement")
    n = len(history)
    if n < 4:
        return Mark(NOT_CONVERGED, f"only {n} epoch(s): too few to see a plateau")
    window = [float(v) for v in history[n - max(2, math.ceil(n / 4)):]]
    k = len(window)
    mean_x, mean_y = (k - 1) / 2, sum(window) / k
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(window)) / sum((i - mean_x) ** 2 for i in range(k))
    rise = slope * (k - 1)
    level = mean_y
    if noise is None:
        noise = 2.0 * math.sqrt(max(level * (1 - level), 1e-6) / val_images) if val_images else 0.01
    if rise > noise:
        return Mark(NOT_CONVERGED, f"still rising by {rise:.3f} over its last {k} epochs (noise {noise:.3f})")
    return Mark(CONVERGED, f"last {k} epochs flat within noise (change {rise:+.3f}, noise {noise:.3f})")


def run_mark(history: Sequence[float], losses: Sequence[float] | None, classes: int, val_images: int | None, *,
             smoothing: float = 0.0, noise: float | None = None, stopped_early: bool = False) -> Mark:
    """The mark of one run: did not train, else converged or not."""
    return (trained_mark(history, losses, classes, val_images, smoothing)
            or convergence_mark(history, noise, val_images, stopped_early))
