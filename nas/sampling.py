"""The samplers that decide what the search tries next: `make_sampler` builds the one a study file names.

The default, `front`, is a sampler of our own: a local search around the current Pareto front. After a few random
trials it takes a non-dominated trial, changes one of its parameters (sometimes two) and proposes the result; it
never proposes a parameter set that an earlier or running trial already has. It works on define-by-run conditional
spaces: a parameter that a change activates (a new block family's kernel, a fourth stage) gets a value another trial
used for it, or a random one. `bench/sampler_quality.py` measures it against TPE, NSGA-II, GP and random search on
NAS-Bench-201 with measured device latencies.

Why "a parameter set already tried" can be decided before the trial runs: a define-by-run space asks its parameters
in an order that depends only on the values given so far, so a full assignment that agrees with an earlier trial on
every parameter that trial has walks exactly the same path and yields the same point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.study import SamplerSpec

__all__ = ["FrontSampler", "NoRepeatSampler", "make_sampler"]

_SEEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
_CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute: a trial is feasible when every value is <= 0
MAX_TRIES = 64  # changes tried before a proposal that repeats a known parameter set is given up to random


def make_sampler(spec: SamplerSpec, seed: int) -> BaseSampler:
    """The Optuna sampler a study's `sampler:` entry names, seeded with `seed`."""
    if spec.type == "front":
        return FrontSampler(seed=seed, n_startup_trials=spec.startup)
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


def _random_value(dist: BaseDistribution, rng: np.random.RandomState) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.randint(len(dist.choices))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            return int(min(dist.high, max(dist.low, round(math.exp(rng.uniform(math.log(dist.low),
                                                                                 math.log(dist.high + 1)))))))
        return int(dist.low + dist.step * rng.randint((dist.high - dist.low) // dist.step + 1))
    assert isinstance(dist, FloatDistribution)
    if dist.log:
        return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
    if dist.step is not None:
        return float(dist.low + dist.step * rng.randint(round((dist.high - dist.low) / dist.step) + 1))
    return float(rng.uniform(dist.low, dist.high))


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


def _mutable(dist: BaseDistribution) -> bool:
    return not dist.single()


def _perturb(params: dict[str, Any], active: dict[str, Any], space: dict[str, BaseDistribution], count: int,
             rng: np.random.RandomState) -> dict[str, Any]:
    """`params` with `count` of the parameters in `active` (the ones a trial actually used) changed."""
    names = sorted(k for k in active if k in space and _mutable(space[k]))
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


# -- the front sampler ----------------------------------------------------------------------------------------------
def _signed(study_directions: Sequence[StudyDirection], values: Sequence[float]) -> np.ndarray:
    return np.array([v if d == StudyDirection.MINIMIZE else -v for d, v in zip(study_directions, values)])


def _feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.system_attrs.get(_CONSTRAINTS_KEY, ()))


def nondominated(points: np.ndarray) -> np.ndarray:
    """Indices of the rows of `points` (every column minimized) that no other row dominates."""
    keep = []
    for i, p in enumerate(points):
        dominated = np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1))
        if not dominated:
            keep.append(i)
    return np.array(keep, dtype=int)


class FrontSampler(BaseSampler):
    """Local search around the Pareto front, for define-by-run conditional spaces; never repeats a parameter set.

    Each proposal: a parent drawn from the non-dominated complete trials (feasible ones first), one of its parameters
    changed (two with probability `p_two`), parameters the change activates taken from a random earlier trial that
    used them (random values for ones no trial has used). Concurrent asks see the running trials and avoid them.
    """

    def __init__(self, *, seed: int | None = None, n_startup_trials: int = 10, p_two: float = 0.25):
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self._startup = n_startup_trials
        self._p_two = p_two

    def reseed_rng(self) -> None:
        """Reseed after a fork (Optuna calls this in worker processes)."""
        self._rng = np.random.RandomState()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Every parameter an earlier trial used: the proposal assigns all of them at once."""
        return known_space(study._get_trials(deepcopy=False, states=_SEEN, use_cache=True))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """A change of a front member that no trial has yet; random (but new) during start-up."""
        if not search_space:
            return {}
        trials = [t for t in study._get_trials(deepcopy=False, states=_SEEN, use_cache=True)
                  if t.number != trial.number]
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        donors = [t for t in trials if t.params]
        candidate = {name: _random_value(dist, self._rng) for name, dist in search_space.items()}
        if len(complete) >= self._startup and complete:
            feasible = [t for t in complete if _feasible(t)] or complete
            points = np.stack([_signed(study.directions, t.values) for t in feasible])
            front = [feasible[i] for i in nondominated(points)]
            parent = front[self._rng.randint(len(front))]
            # Parameters the parent never used come from one donor trial, so a switched branch (a block family, a
            # stage count) gets a set of values that occurred together rather than independent random ones.
            donor = donors[self._rng.randint(len(donors))]
            candidate.update({k: v for k, v in donor.params.items() if k in search_space})
            candidate.update({k: v for k, v in parent.params.items() if k in search_space})
            count = 2 if self._rng.uniform() < self._p_two else 1
            candidate = _perturb(candidate, parent.params, search_space, count, self._rng)
        return _unique(candidate, trials, search_space, self._rng)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """A parameter no earlier trial used: a random value."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)


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
