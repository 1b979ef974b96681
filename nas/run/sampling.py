"""The study's Optuna sampler: what to try next (seeded; reseeded on resume so a resumed search does not replay)."""

from __future__ import annotations

import warnings

import optuna

from nas.study import Study


def make_sampler(study: Study, offset: int) -> optuna.samplers.BaseSampler:
    """The study's sampler; `offset` (the number of trials already in the study) reseeds a resumed search."""
    spec = study.sampler
    seed = spec.seed + offset  # the same seed again would replay the proposals of the first run
    if spec.type == "tpe":
        # Trials run in parallel: constant_liar keeps concurrent asks from proposing the same point. Multivariate
        # TPE with groups models the parameters that occur together (a block family's) jointly; it reached a
        # higher hypervolume than independent TPE and random search in bench/search_quality.py.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup, constant_liar=True,
                                              multivariate=spec.multivariate, group=spec.multivariate)
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
