"""Which trial becomes an entry and what network it holds: picking trials (by number, the front, the best under a
latency), entry names, and the exported architecture (the trial's target, or its proxy) with the trial's seed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import space
from nas.record.trials import front, state_of, stored_arch, trial_seed
from nas.study import Study
from nas.zoo import ZooError
from space import Arch
from space.errors import NasError, SpecError

Log = Callable[[str], None]


NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


@dataclass(frozen=True)
class ExportOptions:
    """Where entries go and how they are made."""

    root: Path = Path("zoo")
    epochs: int | None = None  # train for this many epochs; None: export untrained
    network: str = "target"  # target (the deployed network of the front) | proxy (the copy the search trained)
    width_mult: float | None = None  # None: the chosen network's width
    force: bool = False  # replace existing entries
    restart: bool = False  # discard a training checkpoint instead of resuming it
    latency: bool = True  # measure the exported network's latency with the study's settings
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads of training (None: torch's default)


def parse_latency(text: str) -> float:
    """'5ms', '250us', '0.005s' or '5' (ms) → milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise NasError(f"--best-under-latency '{text}': expected a positive duration like 5ms, 250us or 0.01s")
    return float(m.group(1)) * UNITS_MS[m.group(2) or "ms"]


def get_trial(study: Study, ostudy: optuna.Study, number: int) -> FrozenTrial:
    """Trial `number`, which must be complete: failed, pruned, running and unknown trials are one-line errors."""
    trials = ostudy.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    where = f"{study.source}: study '{study.name}'"
    if not found:
        have = f"trials 0-{trials[-1].number}" if trials else "no trials"
        raise NasError(f"{where} has no trial {number} ({have}); see 'nas report {study.source}'")
    t = found[0]
    state = state_of(t)
    if t.state == TrialState.FAIL:
        reason = t.user_attrs.get("fail_reason", "no reason recorded")
        raise NasError(f"{where}: trial {number} {state} ({reason}); only complete trials can be exported")
    # An infeasible one is exported with a warning; a duplicate (stored PRUNED) stands for its complete original.
    if t.state == TrialState.PRUNED and state not in ("infeasible", "complete"):
        raise NasError(f"{where}: trial {number} was pruned (stopped early after {t.user_attrs.get('epochs', '?')} of "
                       f"{t.user_attrs.get('planned_epochs', '?')} epochs); only complete trials can be exported")
    if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        raise NasError(f"{where}: trial {number} is {state}, not finished; wait for it or pick a complete trial")
    if stored_arch(t) is None:
        raise NasError(f"{where}: trial {number} has no stored architecture (not made by 'nas search')")
    return t


def pareto_trials(study: Study, ostudy: optuna.Study) -> list[FrozenTrial]:
    """The front's trials (complete, feasible, non-dominated), by trial number."""
    best = sorted(front(ostudy), key=lambda t: t.number)
    if not best:
        raise NasError(f"{study.source}: study '{study.name}' has no complete feasible trial yet: the front is empty")
    return best


def best_under_latency(study: Study, ostudy: optuna.Study, limit_ms: float) -> FrozenTrial:
    """The most accurate complete, feasible, trained trial whose latency is at most `limit_ms` (ties: the faster)."""
    where = f"{study.source}: study '{study.name}'"
    if "latency_ms" not in study.metrics() or "accuracy" not in study.metrics():
        raise NasError(f"{where} does not measure both accuracy and latency_ms; use --trial N or --pareto")
    ok = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if t.user_attrs.get("feasible", True) and t.user_attrs.get("trained", True) and stored_arch(t) is not None
          and isinstance(t.user_attrs.get("latency_ms"), (int, float)) and "accuracy" in t.user_attrs]
    under = [t for t in ok if t.user_attrs["latency_ms"] <= limit_ms]
    if not under:
        fastest = min(ok, key=lambda t: t.user_attrs["latency_ms"], default=None)
        hint = (f"the fastest is #{fastest.number} at {fastest.user_attrs['latency_ms']:.3f} ms" if fastest
                else "no complete feasible trial yet")
        raise NasError(f"{where}: no complete feasible trial runs in {limit_ms:g} ms or less ({hint})")
    return max(under, key=lambda t: (t.user_attrs["accuracy"], -t.user_attrs["latency_ms"]))


def entry_name(study: Study, t: FrozenTrial, name: str | None, *, several: bool) -> str:
    """NAME; with several trials (or no NAME) each gets `<NAME or study>_t<N>`."""
    base = name or study.name
    out = f"{base}_t{t.number}" if several or not name else name
    if not NAME.match(out):
        raise NasError(f"entry name '{out}': use letters, digits, '_', '-' and '.', starting with a letter or '_'")
    if out in space.MODELS:
        raise ZooError(f"'{out}' is a built-in named point; choose another --name")
    return out


def trial_arch(t: FrozenTrial) -> Arch:
    """The architecture the trial sampled (its named tag kept), from the YAML the engine stored on it."""
    try:
        return Arch.from_yaml(stored_arch(t), source=f"trial {t.number}")
    except SpecError as e:
        raise NasError(f"trial {t.number}: its stored architecture no longer builds ({e})") from None


def network_of(study: Study, network: str) -> Any:
    """The study's target or proxy `Network` (width multiplier, resolution)."""
    return study.evaluator.target if network == "target" else study.evaluator.proxy


def exported_arch(study: Study, t: FrozenTrial, width_mult: float | None = None, network: str = "target") -> Arch:
    """What an export of `t` holds: the trial's target (or proxy) network, or the architecture at `width_mult`."""
    mult = network_of(study, network).width_mult if width_mult is None else width_mult
    arch = trial_arch(t).scaled(mult)
    return Arch(arch.stem, arch.stages, arch.head)  # the entry names it


def trial_seed_of(study: Study, t: FrozenTrial) -> int:
    """The seed the trial trained its proxy with (recorded; derived again for trials that predate the record)."""
    seed = t.user_attrs.get("seed")
    return int(seed) if isinstance(seed, int) else trial_seed(study.seed, t.user_attrs.get("hash", ""), 0)


def trial_model(study: Study, t: FrozenTrial, *, num_classes: int, in_chans: int) -> nn.Module:
    """The proxy the trial trained, initialised as the trial initialised it (its seed, the proxy width)."""
    torch.manual_seed(trial_seed_of(study, t))
    return space.create_model(trial_arch(t), num_classes=num_classes, in_chans=in_chans,
                              width_mult=study.evaluator.proxy.width_mult,
                              drop_path_rate=float(study.evaluator.train.get("drop_path_rate", 0.0)))
