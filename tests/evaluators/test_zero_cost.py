"""Zero-cost proxies on real data: finite, seeded, side-effect free, with their cost reported."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import space
from evaluators.data import Data, DataConfig, load_data
from evaluators.zero_cost import PROXIES, score
from space import UnknownNameError, create_model


@pytest.fixture(scope="module")
def digits() -> Data:
    return load_data(DataConfig(resolution=16, limit_train=256, limit_val=32))


def net(width: float = 0.25, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet18", num_classes=10, in_chans=1, width_mult=width)


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_proxy_is_finite_seeded_and_side_effect_free(name: str, digits: Data) -> None:
    model = net()
    before = copy.deepcopy(model.state_dict())
    value, seconds = score(name, model, digits, batch_size=32, seed=0)
    assert math.isfinite(value) and seconds > 0
    assert score(name, model, digits, batch_size=32, seed=0)[0] == value
    for (k, a), b in zip(before.items(), model.state_dict().values()):
        assert torch.equal(a, b), k  # weights and BatchNorm statistics untouched
    assert all(p.grad is None for p in model.parameters())


def test_synflow_grows_with_width(digits: Data) -> None:
    assert score("synflow", net(0.5), digits)[0] > score("synflow", net(0.25), digits)[0] > 0


def test_naswot_depends_on_the_batch_and_the_network(digits: Data) -> None:
    a = score("naswot", net(), digits, seed=0)[0]
    assert score("naswot", net(), digits, seed=1)[0] != a
    assert score("naswot", net(0.5), digits, seed=0)[0] != a
    # log|det K| of a 64x64 kernel whose diagonal is the number of coded units: bounded by 64 * log(units)
    assert 0 < a < 64 * math.log(1e7)


def test_deep_training_and_deployed_models(digits: Data) -> None:
    if "vanillanet_5" not in space.MODELS:
        pytest.skip("vanillanet_5 is not registered")
    data = load_data(DataConfig(resolution=32, limit_train=64, limit_val=8))
    model = create_model("vanillanet_5", num_classes=10, in_chans=1, width_mult=1 / 32)
    for name in PROXIES:
        assert math.isfinite(score(name, model, data, batch_size=16)[0])
    deployed = space.deploy(create_model("resnet18", num_classes=10, in_chans=1, width_mult=0.25))
    assert math.isfinite(score("naswot", deployed, digits)[0])


def test_unknown_proxy(digits: Data) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'synflow'"):
        score("synflo", net(), digits)
