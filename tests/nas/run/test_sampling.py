"""The default sampler on the conditional spaces of this repo, through the searcher's path (ask, Space.sample, tell)."""

from __future__ import annotations

from collections import deque

import optuna
import pytest
import yaml

from nas.run.sampling import make_sampler, tpe
from nas.study import SamplerSpec
from space import Arch
from space.search_space import Space

# 144 points: one or two stages, each a basic block (kernel 3 or 5) or an inverted bottleneck (expansion 2 or 4), so
# which parameters a trial has depends on its earlier choices, and 60 trials would repeat points by chance.
TINY = """
name: tiny
stem: {type: conv, width: [16, 32], conv: {kernel: 3, stride: 1}}
stages:
  count: {int: [1, 2]}
  block: [basic, mbconv]
  depth: 1
  width: [16, 32]
  stride: 1
  basic: {kernel: [3, 5]}
  mbconv: {expansion: [2.0, 4.0]}
head: {type: classifier}
"""


def objectives(arch: Arch) -> list[float]:
    """Two conflicting figures of an architecture: the summed widths (up) and the summed kernel x expansion (down)."""
    d = arch.to_dict(full=True)
    widths = d["stem"]["width"] + sum(s["width"] for s in d["stages"])
    cost = sum(s.get("kernel", 3) * s.get("expansion", 1.0) for s in d["stages"]) + widths / 32
    return [float(widths), float(cost)]


def search(space: Space, sampler: optuna.samplers.BaseSampler, trials: int, in_flight: int) -> list[optuna.Trial]:
    """Ask/tell like the searcher's sampling copy: `in_flight` trials out at once, the oldest told first."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler,
                                storage=optuna.storages.InMemoryStorage())
    asked, live = [], deque()
    for _ in range(trials):
        trial = study.ask()
        arch = space.sample(trial)
        asked.append((trial, arch))
        live.append((trial, arch))
        if len(live) == in_flight:
            t, a = live.popleft()
            study.tell(t, objectives(a))
    for t, a in live:
        study.tell(t, objectives(a))
    return asked


@pytest.mark.parametrize("in_flight", [1, 4])
def test_default_proposes_valid_new_points_on_a_conditional_space(in_flight: int) -> None:
    space = Space(yaml.safe_load(TINY))
    asked = search(space, make_sampler(SamplerSpec(), seed=0), 60, in_flight)
    hashes = [arch.hash for _, arch in asked]
    assert all(space.contains_arch(arch)[0] for _, arch in asked)
    assert len(set(hashes)) == len(hashes)
    assert len({json_params(t) for t, _ in asked}) == len(asked)
    counts = {len(arch.stages) for _, arch in asked}
    families = {s.block for _, arch in asked for s in arch.stages}
    assert counts == {1, 2} and families == {"basic", "mbconv"}  # both branches of every condition were taken


def test_plain_tpe_repeats_points_there() -> None:
    """The check above can fail: TPE without the guard proposes points again on the same space."""
    space = Space(yaml.safe_load(TINY))
    asked = search(space, tpe(SamplerSpec(), seed=0), 60, 1)
    assert len({arch.hash for _, arch in asked}) < len(asked)


def test_default_on_the_small_space() -> None:
    space = Space.load("small")
    asked = search(space, make_sampler(SamplerSpec(), seed=1), 30, 2)
    assert all(space.contains_arch(arch)[0] for _, arch in asked)
    assert len({arch.hash for _, arch in asked}) == len(asked)
    assert len({len(arch.stages) for _, arch in asked}) > 1


def json_params(trial: optuna.Trial) -> str:
    """A trial's parameters as one comparable string."""
    return yaml.safe_dump(trial.params, sort_keys=True)


def test_the_sampler_copy_of_a_pruned_trial_has_no_learning_curve() -> None:
    """Multi-objective TPE cannot rank pruned trials by their intermediate values (it asks for a single direction):
    the searcher hands its sampler each trial without them, so the default sampler works after ASHA stops trials."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from nas.run.searcher import for_sampler
    from nas.study import Study

    study = Study.from_dict({"space": "small", "budget": {"trials": 1}}, source="s.yaml")
    dist = {"x": CategoricalDistribution([0, 1, 2, 3])}
    sampling = optuna.create_study(directions=study.directions, sampler=make_sampler(SamplerSpec(startup=2), 0))
    for i in range(6):
        pruned = i % 2 == 0
        t = create_trial(state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                         values=None if pruned else [0.5 + i / 100, 1.0 + i], params={"x": i % 4},
                         distributions=dist, intermediate_values={1: 0.3, 2: 0.4} if pruned else {1: 0.5})
        copy = for_sampler(t, study)
        assert copy.intermediate_values == {} and copy.state == t.state and copy.values == t.values
        sampling.add_trial(copy)
    trial = sampling.ask()
    assert trial.suggest_categorical("x", [0, 1, 2, 3]) in (0, 1, 2, 3)
