"""RepVGG: the three-branch block merges exactly into one k×k conv, for the stem, every stage and every named point."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import space
from space import Arch, SpecError, count_params, create_model, list_models
from space.blocks.repvgg import RepVGGBlock
from tests.conftest import load_golden, randomize_bn

NAMES = list_models("repvgg")
GOLDEN = load_golden()


def deploy_diff(model: nn.Module, size: int = 64, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """(max |Δlogit| between the eval-mode training form and its deploy form, max |logit|) after randomize_bn."""
    torch.manual_seed(0)
    randomize_bn(model, 0)
    model = model.eval().to(dtype)
    x = torch.randn(2, 3, size, size, dtype=dtype)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))(x)
    return (ref - dep).abs().max().item(), ref.abs().max().item()


def arch(stage: dict, stem: dict | None = None, depth: int = 3) -> Arch:
    """A two-stage RepVGG network with the given stage parameters."""
    stages = [{"block": "repvgg", "depth": depth, "width": w, "stride": 2, **stage} for w in (16, 32)]
    return Arch.from_dict({"stem": {"type": "repvgg", "width": 16, **(stem or {})}, "stages": stages,
                           "head": {"type": "classifier"}})


def test_named_points_are_registered() -> None:
    assert {"repvgg_a0", "repvgg_a1", "repvgg_b0"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_named_points_deploy_exactly(name: str) -> None:
    # Randomized BN statistics make deep plain stacks grow (logits ~1e2-1e3 at B depth), so float32 rounding alone
    # differs by ~1e-4 there; float64 shows the merge itself is exact, float32 agrees to its relative precision.
    diff64, scale = deploy_diff(create_model(name, num_classes=10, width_mult=0.25), dtype=torch.float64)
    assert diff64 <= 1e-10 * max(1.0, scale)
    diff32, scale = deploy_diff(create_model(name, num_classes=10, width_mult=0.25))
    assert diff32 <= 1e-4 * max(1.0, scale / 100)


@pytest.mark.parametrize(("w_in", "w_out", "stride", "kernel", "groups"), [
    (8, 8, 1, 3, 1), (8, 16, 2, 3, 1), (8, 8, 2, 3, 1), (16, 16, 1, 3, 4), (16, 32, 1, 5, 2), (12, 12, 1, 7, 12),
])
def test_block_merges_into_one_conv(w_in: int, w_out: int, stride: int, kernel: int, groups: int) -> None:
    torch.manual_seed(1)
    block = randomize_bn(RepVGGBlock(w_in, w_out, stride, kernel=kernel, groups=groups), 1).eval()
    x = torch.randn(2, w_in, 15, 15)
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        out = block(x)
    assert isinstance(block.fused, nn.Conv2d) and block.fused.groups == groups
    assert not hasattr(block, "conv_kxk") and not hasattr(block, "identity")
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-5


def test_identity_branch_only_when_shapes_match() -> None:
    assert isinstance(RepVGGBlock(8, 8, 1).identity, nn.BatchNorm2d)
    assert RepVGGBlock(8, 16, 1).identity is None
    assert RepVGGBlock(8, 8, 2).identity is None
    assert RepVGGBlock(8, 8, 1, identity=False).identity is None


def test_a0_layout_matches_the_paper() -> None:
    a0 = space.get_arch("repvgg_a0")
    assert (a0.stem.type, a0.stem.width, a0.total_stride) == ("repvgg", 48, 32)
    assert [(s.depth, s.width, s.stride) for s in a0.stages] == [(2, 48, 2), (4, 96, 2), (14, 192, 2), (1, 1280, 2)]
    model = create_model("repvgg_a0")
    assert isinstance(model.stem, RepVGGBlock) and model.stem.identity is None
    assert model.stem.conv_kxk.conv.stride == (2, 2)
    first, second = model.stages[0][0], model.stages[0][1]
    assert first.identity is None and isinstance(second.identity, nn.BatchNorm2d)


def test_create_model_deploy_gives_the_deploy_form() -> None:
    model = create_model("repvgg_a0", deploy=True)
    assert model.deployed
    assert count_params(model) == GOLDEN["repvgg_a0"]["params_deploy"] == 8_309_384
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(isinstance(m.fused, nn.Conv2d) for m in model.modules() if isinstance(m, RepVGGBlock))


def test_alternate_groups_follow_timm_g4_layout() -> None:
    model = create_model("repvgg_b1g4", width_mult=0.25)
    for stage in model.stages:
        assert [b.conv_kxk.conv.groups for b in stage] == [4 if i % 2 else 1 for i in range(len(stage))]


@pytest.mark.parametrize("params", [
    {"kernel": 5}, {"groups": 4}, {"groups": 2, "alt_groups": True}, {"identity": False}, {"se": 0.25},
    {"act": "series", "act_n": 2}, {"act": "silu"},
])
def test_family_variants_deploy_exactly(params: dict) -> None:
    model = create_model(arch(params, stem={"act": params.get("act", "relu")}), num_classes=5)
    diff, _ = deploy_diff(model, size=32)
    assert diff <= 1e-4


def test_series_stem_folds_its_activation() -> None:
    model = space.deploy(create_model(arch({}, stem={"act": "series", "act_n": 1}), num_classes=5))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_groups_must_divide_the_widths() -> None:
    with pytest.raises(SpecError, match="groups"):
        arch({"groups": 3})


def test_width_scaling_keeps_groups_valid() -> None:
    small = space.get_arch("repvgg_b1g4").scaled(0.05)
    for st in small.stages:
        assert st.width % st.params.groups == 0
    diff, _ = deploy_diff(create_model(small, num_classes=5), size=32, dtype=torch.float64)
    assert diff <= 1e-10


def test_drop_path_only_on_identity_blocks() -> None:
    model = create_model("repvgg_a0", width_mult=0.25, drop_path_rate=0.1)
    blocks = [b for st in model.stages for b in st]
    assert all(isinstance(b.drop_path, nn.Identity) for b in blocks if b.identity is None)
    assert any(not isinstance(b.drop_path, nn.Identity) for b in blocks)
