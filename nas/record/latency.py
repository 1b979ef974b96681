"""Latency noise in the record: when a trial's measurement is too noisy to order it, and the interval of the front's
and the named networks' latency re-measured at the end of the search.

A trial's latency is the median of timed blocks, with their IQR (`latency_iqr_ms`). When the IQR is more than
`NOISY_REL_IQR` of the median, the middle half of the blocks spans a quarter of the value: two networks whose medians
differ by less than that cannot be ordered from one measurement each. The trial re-measures it then (`nas.run.trial`)
and, when it stays that noisy, stores `latency_noisy: true`.

At the end of the search (`nas.run.latency`), the target networks of the front and the named points are timed again
on the driver's machine, round-robin over `rounds` rounds, so drift over that time (clock, thermal, other load) hits
all of them alike. Each architecture's round medians are stored as a study user attribute `latency:<arch hash>`;
`interval_of` reads them as the median over the rounds with the interval [lowest, highest round median]. For n
independent rounds that interval holds the true median with probability 1 - 2 * 0.5**n (94 % for 5 rounds), with
no assumption on the distribution of the noise.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

PREFIX = "latency:"
SUMMARY = "latency_remeasure"  # study user attribute: when, how many rounds, on which device (see nas.run.latency)
NOISY_REL_IQR = 0.25  # IQR / median above which a measurement cannot order networks closer than a quarter apart


def rel_iqr(attrs: dict[str, Any]) -> float | None:
    """IQR / median of a trial's latency measurement (None when it has none)."""
    median, iqr = attrs.get("latency_ms"), attrs.get("latency_iqr_ms")
    if not isinstance(median, (int, float)) or not isinstance(iqr, (int, float)) or median <= 0:
        return None
    return float(iqr) / float(median)


def is_noisy(rel: float | None) -> bool:
    """Whether a measurement with this IQR / median is too noisy to order networks by (see NOISY_REL_IQR)."""
    return rel is not None and rel > NOISY_REL_IQR


def coverage(rounds: int) -> float:
    """Probability that [lowest, highest] of `rounds` independent round medians holds the true median."""
    return 1.0 - 2.0 * 0.5 ** rounds


@dataclass(frozen=True)
class Interval:
    """An architecture's target latency over interleaved rounds: median and [low, high] of the round medians (ms)."""

    rounds: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        """The median over the rounds."""
        return statistics.median(self.rounds)

    @property
    def low_ms(self) -> float:
        """The lowest round median."""
        return min(self.rounds)

    @property
    def high_ms(self) -> float:
        """The highest round median."""
        return max(self.rounds)

    @property
    def coverage(self) -> float:
        """How likely the interval holds the true median (distribution-free, see the module docstring)."""
        return coverage(len(self.rounds))

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a value: then neither network is established as the faster."""
        return self.low_ms <= other.high_ms and other.low_ms <= self.high_ms

    def text(self) -> str:
        """'1.123 ms [1.050, 1.310] (5 rounds)'."""
        return f"{self.median_ms:.3f} ms [{self.low_ms:.3f}, {self.high_ms:.3f}] ({len(self.rounds)} rounds)"

    def short(self) -> str:
        """'[1.050, 1.310]'."""
        return f"[{self.low_ms:.3f}, {self.high_ms:.3f}]"


def stored(ostudy: optuna.Study) -> dict[str, Interval]:
    """Every re-measured architecture: arch hash → its interval."""
    out = {}
    for key, value in ostudy.user_attrs.items():
        if key.startswith(PREFIX) and isinstance(value, dict) and value.get("rounds"):
            out[key[len(PREFIX):]] = Interval(tuple(float(v) for v in value["rounds"]))
    return out


def interval_of(t: FrozenTrial, intervals: dict[str, Interval]) -> Interval | None:
    """Trial `t`'s re-measured latency interval, or None when its architecture was not re-measured."""
    return intervals.get(t.user_attrs.get("hash", ""))


def summary(ostudy: optuna.Study) -> dict | None:
    """How the last re-measurement ran (rounds, networks, device fingerprint, when), or None."""
    return ostudy.user_attrs.get(SUMMARY)
