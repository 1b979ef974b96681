"""The declarative search spaces: every shipped space samples valid, buildable points that round-trip."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import space
from space import Arch, NotInSpaceError, SpecError, create_model
from space.search_space import SPACE_DIR, Space

SPACES = sorted(SPACE_DIR.glob("*.yaml"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


class DrawTrial:
    """An Optuna-trial stand-in whose suggestions are drawn by hypothesis, so failures shrink to small points."""

    def __init__(self, data: st.DataObject):
        self.data = data
        self.params: dict = {}

    def suggest_categorical(self, name: str, choices: list) -> object:
        self.params[name] = self.data.draw(st.sampled_from(choices), label=name)
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.params[name] = low + step * self.data.draw(st.integers(0, (high - low) // step), label=name)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        self.params[name] = self.data.draw(st.floats(low, high), label=name)
        return self.params[name]


def small_input(arch: Arch) -> int:
    """A small square input the network can take: unpadded pools shrink maps by more than their stride."""
    return max(16, 4 * arch.total_stride)


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_file_is_valid_and_contains_its_declared_points(path: Path) -> None:
    sp = Space.load(path)
    for name in sp.contains:
        arch = space.get_arch(name)
        params = sp.encode(arch)
        assert sp.decode(params) == arch


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_points_build_run_and_round_trip(path: Path, data: st.DataObject) -> None:
    sp = Space.load(path)
    trial = DrawTrial(data)
    try:
        arch = sp.sample(trial)
    except SpecError as e:
        # Invalid combinations are rejected at validation, naming the key — never deep inside torch.
        assert "stages[" in str(e) or "stem" in str(e) or "head" in str(e), str(e)
        assume(False)
    assert sp.encode(arch) == trial.params
    assert sp.decode(trial.params) == arch
    assert Arch.from_yaml(arch.to_yaml()) == arch
    size = small_input(arch)
    assume(size <= 128 and sum(s.depth for s in arch.stages) <= 48)
    widest = max([arch.stem.width] + [s.width for s in arch.stages])
    model = create_model(arch, num_classes=5, width_mult=min(1.0, 32 / widest))
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()


def test_optuna_define_by_run_samples_the_same_point_as_decode() -> None:
    sp = Space.load("small")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        arch = sp(trial)
        assert sp.decode(trial.params) == arch
        assert sp.encode(arch) == trial.params
        study.tell(trial, 0.0)


def test_not_in_space_names_dimension_value_and_choices() -> None:
    sp = Space.load("small")
    with pytest.raises(NotInSpaceError, match=r"not in this space 'small': s0\.block = bottleneck|stem"):
        sp.encode(space.get_arch("resnet50"))
    arch = sp.decode(sp.encode(sp.sample(optuna.trial.FixedTrial(_fixed_params(sp)))))
    wide = Arch.from_dict({**arch.to_dict(), "stem": {**arch.to_dict()["stem"], "width": 40}})
    with pytest.raises(NotInSpaceError, match=r"stem\.width = 40 is not among \[16, 24, 32\]"):
        sp.encode(wide)


def _fixed_params(sp: Space) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sp(trial)
    return trial.params


def test_space_pickles_for_ray() -> None:
    import pickle

    sp = Space.load("small")
    again = pickle.loads(pickle.dumps(sp))
    trial = optuna.trial.FixedTrial(_fixed_params(sp))
    assert again(trial) == sp.decode(trial.params)


def test_conditional_parameter_only_sampled_when_it_applies() -> None:
    sp = Space.load("small")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_series = seen_other = False
    for _ in range(60):
        trial = study.ask()
        arch = sp(trial)
        for i, stage in enumerate(arch.stages):
            if stage.block != "basic":
                continue
            key = f"s{i}.basic.act_n"
            if stage.params.act == "series":
                seen_series = True
                assert key in trial.params
            else:
                seen_other = True
                assert key not in trial.params
        study.tell(trial, 0.0)
    assert seen_series and seen_other


def test_width_multiplier_keeps_group_constraints_valid() -> None:
    model = create_model("resnext50_32x4d", width_mult=0.1, num_classes=3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_full_space_declares_every_named_point() -> None:
    assert set(Space.load("full").contains) == set(space.list_models())
