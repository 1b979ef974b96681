"""VanillaNet: deep training (λ), exact deploy at λ = 1, the VanillaNet-N generator and the vanilla space."""

from __future__ import annotations

import copy

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import space
from space import Arch, DeployError, count_params, create_model, list_models
from space.blocks.vanillanet import DeepTrainingConv, VanillaBlock, vanillanet
from space.layers import SeriesAct
from space.search_space import Space
from tests.conftest import load_golden, randomize_bn

NAMES = list_models("vanillanet")
GOLDEN = load_golden()
optuna.logging.set_verbosity(optuna.logging.WARNING)


def deploy_diff(model: nn.Module, size: int = 64, seed: int = 0) -> float:
    """max |Δlogit| between the eval-mode training form at λ = 1 and its deploy form, after randomize_bn.

    VanillaNet's small init (std 0.02) keeps logits around 1e-2, so an absolute bound alone is weak: this also
    asserts the difference is below 1e-5 of the logit scale (float32 rounding gives ~1e-7).
    """
    torch.manual_seed(seed)
    randomize_bn(model, seed)
    model.eval()
    space.set_lambda(model, 1.0)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))(x)
    diff, scale = (ref - dep).abs().max().item(), ref.abs().max().item()
    assert scale > 0 and diff <= 1e-5 * scale, f"|Δlogit| {diff:.3g} is not small next to the logits ({scale:.3g})"
    return diff


def tiny(name: str = "vanillanet_5", **kw: object) -> nn.Module:
    """A narrow copy of a named point (widths / 32)."""
    return create_model(name, num_classes=10, width_mult=1 / 32, **kw)


def test_all_members_are_registered() -> None:
    assert NAMES == sorted(f"vanillanet_{n}" for n in range(5, 14))


@pytest.mark.parametrize("name", NAMES)
def test_named_points_deploy_exactly(name: str) -> None:
    assert deploy_diff(create_model(name, num_classes=10, width_mult=1 / 16)) <= 1e-4


@pytest.mark.parametrize("n", [5, 6, 7, 8, 13])
def test_generator_layout(n: int) -> None:
    a = vanillanet(n)
    assert len(a.stages) == n - 2 and all(s.depth == 1 for s in a.stages)
    assert a.stem.width == 512 and a.total_stride == 32
    widths = [s.width for s in a.stages]
    assert widths[-1] == 4096 and widths.count(4096) == (1 if n == 5 else 2)
    if n >= 7:
        assert widths[:3] == [512, 1024, 2048] and widths.count(2048) == n - 6
    assert [s.stride for s in a.stages].count(2) == 3
    with pytest.raises(ValueError, match="N >= 5"):
        vanillanet(4)


def test_deep_training_structure_follows_the_official_code() -> None:
    model = create_model("vanillanet_7")
    stem_pair = model.stem[0]
    assert isinstance(stem_pair, DeepTrainingConv) and isinstance(model.stem[1], SeriesAct)
    conv = stem_pair.conv1
    assert conv.kernel_size == (4, 4) and conv.stride == (4, 4) and conv.bias is not None
    assert (stem_pair.conv1.out_channels, stem_pair.conv2.out_channels) == (512, 512)
    block = model.stages[1][0]
    assert isinstance(block, VanillaBlock) and isinstance(block.pool, nn.MaxPool2d)
    pair = block.conv
    assert (pair.conv1.in_channels, pair.conv1.out_channels, pair.conv2.out_channels) == (512, 512, 1024)
    assert pair.bn1.eps == pair.bn2.eps == block.act.bn.eps == 1e-6
    assert block.act.conv.kernel_size == (7, 7) and block.act.conv.groups == 1024
    fc = model.get_classifier()
    assert isinstance(fc, DeepTrainingConv) and isinstance(fc.bn2, nn.Identity)
    assert (fc.conv1.in_channels, fc.conv1.out_channels, fc.conv2.out_channels) == (4096, 1000, 1000)


def test_lambda_changes_the_function_and_is_reported() -> None:
    model = tiny().eval()
    randomize_bn(model)
    x = torch.randn(2, 3, 32, 32)
    assert space.set_lambda(model, 0.0) == 1 + 3 + 1  # stem, three blocks, head
    assert space.get_lambda(model) == 0.0 and all(m.lam == 0.0 for m in model.modules() if hasattr(m, "set_lambda"))
    with torch.no_grad():
        at0 = model(x)
        space.set_lambda(model, 1.0)
        at1 = model(x)
    assert (at0 - at1).abs().max().item() > 1e-3


def test_pair_is_relu_at_zero_and_linear_at_one() -> None:
    torch.manual_seed(0)
    pair = randomize_bn(DeepTrainingConv(6, 6, 9)).eval()
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        hidden = pair.bn1(pair.conv1(x))
        pair.set_lambda(0.0)
        assert torch.allclose(pair(x), pair.bn2(pair.conv2(F.relu(hidden))))
        pair.set_lambda(1.0)
        ref = pair(x)
        assert torch.allclose(ref, pair.bn2(pair.conv2(hidden)))
        pair.reparameterize()
        assert (pair(x) - ref).abs().max().item() <= 1e-5
    assert isinstance(pair.merged, nn.Conv2d) and pair.merged.weight.shape == (9, 6, 1, 1)


def test_patchify_pair_merges_exactly() -> None:
    torch.manual_seed(0)
    pair = randomize_bn(DeepTrainingConv(3, 8, 8, kernel=4, stride=4)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = pair(x)
        pair.reparameterize()
        assert (pair(x) - ref).abs().max().item() <= 1e-5
    assert pair.merged.weight.shape == (8, 3, 4, 4)


def test_deploy_below_lambda_one_is_refused() -> None:
    model = tiny()
    space.set_lambda(model, 0.5)
    with pytest.raises(DeployError, match=r"lambda is 0\.5.*set_lambda"):
        space.deploy(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # untouched
    with pytest.raises(DeployError, match="lambda"):
        model.stem[0].reparameterize()


def test_create_model_deploy_gives_the_deploy_form() -> None:
    model = create_model("vanillanet_5", deploy=True)
    assert model.deployed
    assert count_params(model) == GOLDEN["vanillanet_5"]["params_deploy"] == 15_523_304
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.merged is not None for m in model.modules() if isinstance(m, DeepTrainingConv))


def test_head_interface() -> None:
    model = tiny()
    space.set_lambda(model, 0.25)
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.head.num_features)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.get_classifier().lam == 0.25
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head.num_features)


@pytest.mark.parametrize("params", [
    {"stem": {"deep": False}, "stage": {"deep": False}, "head": {"deep": False}},
    {"stage": {"pool": "avg", "act_n": 1}},
    {"stage": {"act": "relu"}, "stem": {"act": "gelu"}},
])
def test_family_variants_deploy_exactly(params: dict) -> None:
    stages = [{"block": "vanilla", "depth": d, "width": w, "stride": s, **params.get("stage", {})}
              for d, w, s in ((1, 16, 1), (2, 32, 2), (1, 64, 2))]
    a = Arch.from_dict({"stem": {"type": "vanilla", "width": 16, **params.get("stem", {})}, "stages": stages,
                        "head": {"type": "vanilla", **params.get("head", {})}})
    assert deploy_diff(create_model(a, num_classes=5), size=32) <= 1e-4


def test_without_deep_training_the_deploy_form_is_the_same() -> None:
    a = space.get_arch("vanillanet_6")
    plain = Arch.from_dict({
        "stem": {**a.stem.to_dict(), "deep": False},
        "stages": [{**s.to_dict(), "deep": False} for s in a.stages],
        "head": {"type": "vanilla", "deep": False},
    })
    deep_model, plain_model = create_model(a, width_mult=1 / 16), create_model(plain, width_mult=1 / 16)
    assert space.get_lambda(plain_model) is None
    assert count_params(plain_model) < count_params(deep_model)
    assert count_params(space.deploy(plain_model)) == count_params(space.deploy(deep_model))


def random_space_points(count: int, seed: int = 0, max_stride: int = 128) -> list[Arch]:
    """`count` points of space/vanilla.yaml from a seeded random Optuna study (skipping huge total strides)."""
    sp = Space.load("vanilla")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points: list[Arch] = []
    while len(points) < count:
        trial = study.ask()
        a = sp.sample(trial)
        study.tell(trial, 0.0)
        if a.total_stride <= max_stride:
            points.append(a)
    return points


def test_vanilla_space_contains_the_named_points() -> None:
    sp = Space.load("vanilla")
    assert set(sp.contains) == set(NAMES)
    for name in NAMES:
        assert sp.contains_arch(space.get_arch(name))[0]


@pytest.mark.parametrize("i", range(10))
def test_random_space_points_deploy_exactly(i: int) -> None:
    a = random_space_points(10)[i]
    widest = max([a.stem.width] + [s.width for s in a.stages])
    model = create_model(a, num_classes=10, width_mult=64 / widest)
    assert deploy_diff(model, size=max(32, a.total_stride), seed=i) <= 1e-4
