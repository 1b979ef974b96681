"""The samplers that decide what the search tries next: `make_sampler` builds the one a study file names.

The default (`tpe`) is Optuna's multi-objective TPE (multivariate, grouped, constant liar) behind `NoRepeatSampler`,
which never proposes a parameter set that an earlier or running trial already has: TPE alone proposes about one
architecture in six a second time. `bench/sampler_quality.py` measures it against plain TPE, its variants, NSGA-II,
GP and random search on NAS-Bench-201 with measured device latencies.

Why "a parameter set already tried" can be decided before the trial runs: a define-by-run space asks its parameters
in an order that depends only on the values given so far, so a full assignment that agrees with an earlier trial on
every parameter that trial has walks exactly the same path and yields the same point. The guard therefore asks the
base sampler for a value of every parameter the study knows, and changes the proposal one parameter of the repeated
trial at a time until it repeats none.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from nas.study import SamplerSpec

__all__ = ["NoRepeatSampler", "make_sampler", "tpe"]

_SEEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
MAX_TRIES = 64  # changes tried before a proposal that repeats a known parameter set is given up to random


def make_sampler(spec: SamplerSpec, seed: int) -> BaseSampler:
    """The Optuna sampler a study's `sampler:` entry names, seeded with `seed`."""
    if spec.type == "tpe":
        # Trials run in parallel: constant_liar keeps concurrent asks from proposing the same point. Multivariate
        # TPE with groups models the parameters that occur together (a block family's) jointly.
        # NoRepeatSampler: TPE proposes about one architecture in six a second time; changing such a proposal
        # into a new one raised the hypervolume at equal evaluations (bench/sampler_quality.py).
        return NoRepeatSampler(tpe(spec, seed), seed=seed)
    if spec.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=spec.population)
    if spec.type == "qmc":
        # Sobol points over the parameters of the first trial's structure (the rest of a conditional space is drawn
        # at random); the sequence index comes from the trial count, so the seed stays the same on resume.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=spec.seed, qmc_type="sobol", scramble=True,
                                              warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


def tpe(spec: SamplerSpec, seed: int) -> optuna.samplers.TPESampler:
    """Optuna's multi-objective TPE as the study configures it (without the no-repeat guard)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup, constant_liar=True,
                                          multivariate=spec.multivariate, group=spec.multivariate)


# -- parameter sets -------------------------------------------------------------------------------------------------
def known_space(trials: Sequence[FrozenTrial]) -> dict[str, BaseDistribution]:
    """Every parameter the trials used, with its distribution (a name seen with two distributions is left out)."""
    space: dict[str, BaseDistribution] = {}
    clashing: set[str] = set()
    for t in trials:
        for name, dist in t.distributions.items():
            if space.setdefault(name, dist) != dist:
                clashing.add(name)
    return {k: v for k, v in space.items() if k not in clashing and not v.single()}


def repeats(candidate: dict[str, Any], trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The trial whose parameter set `candidate` would reproduce (it agrees on every parameter of it), or None."""
    for t in trials:
        if t.params and all(name in candidate and candidate[name] == v for name, v in t.params.items()):
            return t
    return None


def _changed(dist: BaseDistribution, value: Any, rng: np.random.RandomState) -> Any:
    """Another value of `dist` near `value`: any other choice, a neighbouring integer, a small float step."""
    if isinstance(dist, CategoricalDistribution):
        others = [c for c in dist.choices if c != value]
        return others[rng.randint(len(others))] if others else value
    if isinstance(dist, IntDistribution) and not dist.log:
        steps = [value + k * dist.step for k in (-2, -1, 1, 2) if dist.low <= value + k * dist.step <= dist.high]
        near = [v for v in steps if abs(v - value) == dist.step] or steps
        return int(near[rng.randint(len(near))]) if near else value
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.log:
        x = math.log(value) + rng.normal(0.0, 0.2 * (math.log(dist.high) - math.log(dist.low)))
        v = min(dist.high, max(dist.low, math.exp(x)))
        return int(round(v)) if isinstance(dist, IntDistribution) else float(v)
    assert isinstance(dist, FloatDistribution)
    v = min(dist.high, max(dist.low, value + rng.normal(0.0, 0.2 * (dist.high - dist.low))))
    if dist.step is not None:
        v = dist.low + round((v - dist.low) / dist.step) * dist.step
    return float(v)


def _perturb(params: dict[str, Any], active: dict[str, Any], space: dict[str, BaseDistribution], count: int,
             rng: np.random.RandomState) -> dict[str, Any]:
    """`params` with `count` of the parameters in `active` (the ones a trial actually used) changed."""
    names = sorted(k for k in active if k in space and not space[k].single())
    out = dict(params)
    for name in (rng.choice(names, size=min(count, len(names)), replace=False) if names else ()):
        out[name] = _changed(space[name], out[name], rng)
    return out


def _unique(candidate: dict[str, Any], seen: Sequence[FrozenTrial], space: dict[str, BaseDistribution],
            rng: np.random.RandomState) -> dict[str, Any]:
    """`candidate`, changed one parameter at a time until it repeats no trial in `seen` (random values at last)."""
    for attempt in range(MAX_TRIES):
        twin = repeats(candidate, seen)
        if twin is None:
            return candidate
        # Change a parameter the twin used: any other parameter would not change the walk.
        candidate = _perturb(candidate, twin.params, space, 1 + attempt // 16, rng)
    return {}  # nothing new nearby: the trial's parameters are drawn independently (at random)


class NoRepeatSampler(BaseSampler):
    """Any sampler, made to never propose a parameter set an earlier or running trial has (for comparisons).

    The base sampler proposes values for every parameter the study knows; a proposal that repeats a trial is changed
    one parameter at a time until it does not.
    """

    def __init__(self, base: BaseSampler, *, seed: int | None = None):
        self._base = base
        self._rng = np.random.RandomState(seed)

    def reseed_rng(self) -> None:
        """Reseed after a fork."""
        self._rng = np.random.RandomState()
        self._base.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Hand over to the base sampler."""
        self._base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Hand over to the base sampler."""
        self._base.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Every parameter an earlier trial used."""
        return known_space(study._get_trials(deepcopy=False, states=_SEEN, use_cache=True))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The base sampler's proposal for every known parameter, changed until it repeats no trial."""
        if not search_space:
            return {}
        own = self._base.infer_relative_search_space(study, trial)
        candidate = dict(self._base.sample_relative(study, trial, own)) if own else {}
        for name, dist in search_space.items():
            if name not in candidate:
                candidate[name] = self._base.sample_independent(study, trial, name, dist)
        trials = [t for t in study._get_trials(deepcopy=False, states=_SEEN, use_cache=True)
                  if t.number != trial.number]
        return _unique(candidate, trials, search_space, self._rng)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """A parameter no earlier trial used: the base sampler's value."""
        return self._base.sample_independent(study, trial, param_name, param_distribution)
