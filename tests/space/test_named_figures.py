"""The recorded figures of the named points (space/named_figures.yaml) are what the builder and evaluators.cost say."""

from __future__ import annotations

import pytest

from evaluators.cost import count_macs, measure_cost
from space import MODELS, count_params, create_model
from space.zoo import recorded_figures

NAMES = MODELS.names()


@pytest.mark.parametrize("name", NAMES)
def test_recorded_figures_are_current(name: str) -> None:
    rec = recorded_figures(name)
    assert rec is not None, f"{name}: not recorded or changed since; run python scripts/named_figures.py"
    point = MODELS.get(name)
    assert rec["input"] == point.default_input
    cost = measure_cost(name, input_size=point.default_input, deploy=False)
    assert (rec["params"], rec["macs"]) == (cost.params, cost.macs)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "repvgg_a0"])
def test_recorded_figures_match_a_real_build(name: str) -> None:
    rec = recorded_figures(name)
    model = create_model(name)
    assert rec is not None and count_params(model) == rec["params"]
    assert count_macs(model, rec["input"]) == rec["macs"]
