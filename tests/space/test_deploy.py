"""Deploy forms compute the training form's function (eval mode, randomized BN statistics)."""

from __future__ import annotations

import copy

import pytest
import torch

import space
from space import MODELS, create_model, list_models
from tests.conftest import load_golden, randomize_bn

REPARAM = [n for n, g in load_golden().items() if "params_deploy" in g and n in list_models()]
ALL = list_models()


def max_logit_diff(model: torch.nn.Module, size: int = 64, seed: int = 0) -> float:
    """max |Δlogit| between the eval-mode training form and its deploy form, in float64.

    Randomized BN statistics make deep plain nets (RepVGG-B0: logits of several hundred) exceed 1e-4 from float32
    rounding alone; in float64 any difference left is a real fusion error.
    """
    torch.manual_seed(seed)
    randomize_bn(model, seed)
    model.eval().double()
    space.set_lambda(model, 1.0)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))(x)
    return (ref - dep).abs().max().item()


@pytest.mark.parametrize("name", REPARAM)
def test_reparameterized_named_points_are_exact(name: str) -> None:
    model = create_model(name, num_classes=10, width_mult=0.25)
    assert max_logit_diff(model) <= 1e-4


@pytest.mark.parametrize("name", ALL)
def test_every_named_point_deploys_to_the_same_function(name: str) -> None:
    model = create_model(name, num_classes=10, width_mult=0.25)
    assert max_logit_diff(model, size=64 if MODELS.get(name).default_input <= 224 else 96) <= 1e-4


def test_create_model_deploy_builds_the_deploy_form() -> None:
    model = create_model("resnet18", deploy=True, num_classes=10, width_mult=0.25)
    assert model.deployed
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def _precision() -> tuple:
    b = torch.backends
    return (torch.get_float32_matmul_precision(), b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision,
            b.cudnn.rnn.fp32_precision, b.cudnn.benchmark)


@pytest.mark.parametrize("before", ["default", "legacy_tf32_on", "per_op_conv_ieee"])
def test_exact_float32_turns_tf32_off_and_restores(before: str) -> None:
    """Whichever interface set the flags before, they read full precision within and their old values after."""
    b = torch.backends
    saved = _precision()
    try:
        if before == "legacy_tf32_on":
            b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32 = True, True
        elif before == "per_op_conv_ieee":
            b.cudnn.conv.fp32_precision = "ieee"
        b.cudnn.benchmark = True
        outside = _precision()
        with space.exact_float32():
            assert _precision() == ("highest", "ieee", "ieee", "ieee", False)
            assert not b.cuda.matmul.allow_tf32
        assert _precision() == outside
    finally:
        torch.set_float32_matmul_precision(saved[0])
        b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision = saved[1:4]
        b.cudnn.benchmark = saved[4]


def test_exact_float32_restores_after_an_error() -> None:
    before = _precision()
    with pytest.raises(ValueError), space.exact_float32():
        raise ValueError("inside")
    assert _precision() == before


@pytest.mark.parametrize("name", ["repvgg_a0", "vanillanet_5", "parnet_s", "googlenet"])
def test_deploy_difference_in_float32(name: str) -> None:
    """The issue's four networks: train vs deploy form within 1e-5 relative in float32 (what gpu_check runs on CUDA)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, width_mult=0.25)
    randomize_bn(model, 0)
    space.set_lambda(model, 1.0)
    x = torch.randn(2, 3, 64, 64)
    assert space.deploy_difference(model, x) <= 1e-5
    assert model.training and not getattr(model, "deployed", False)  # left as it was
