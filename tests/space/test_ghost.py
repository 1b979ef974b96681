"""GhostNet (C-Ghost) and G-Ghost RegNetX: ghost modules, the ghost ratio, the G-Ghost mix, widths, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import space
from space import Arch, NasError, SpecError, count_params, create_model
from space.blocks.gghost import GGhostStage
from space.blocks.ghost import GHOSTNET_BLOCKS, GhostModule
from space.blocks.resnet import ResidualBlock
from space.layers import DropPath
from tests.conftest import randomize_bn

GGHOST_NAMES = space.list_models("gghost")
GHOST_NAMES = space.list_models("ghostnet")


def arch(stages: list[dict], stem: int = 16) -> Arch:
    """A small network around `stages`."""
    return Arch.from_dict({"stem": {"type": "conv", "width": stem}, "stages": stages, "head": {"type": "classifier"}})


def gghost_stage(model: nn.Module) -> GGhostStage:
    """The first G-Ghost stage of `model`."""
    return next(m for m in model.modules() if isinstance(m, GGhostStage))


# -- ghost module ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [2, 3, 4])
@pytest.mark.parametrize("w_out", [7, 13, 16, 33])
def test_ghost_module_widths_and_cut(w_out: int, ratio: int) -> None:
    torch.manual_seed(0)
    mod = GhostModule(5, w_out, ratio=ratio, dw_kernel=3).eval()
    primary = math.ceil(w_out / ratio)
    assert mod.primary.conv.out_channels == primary
    assert mod.cheap.conv.out_channels == primary * (ratio - 1)
    assert mod.cheap.conv.groups == primary
    x = torch.randn(2, 5, 8, 8)
    out = mod(x)
    assert out.shape == (2, w_out, 8, 8)
    # The cut drops only surplus ghost channels: the primary features come first and are kept whole.
    assert torch.equal(out[:, :primary], mod.primary(x))
    assert torch.equal(out[:, primary:], mod.cheap(mod.primary(x))[:, :w_out - primary])


def test_ghost_ratio_is_a_dimension() -> None:
    sizes = []
    for ratio in (2, 3, 4, 5):
        a = arch([{"block": "ghost", "depth": 2, "width": 64, "stride": 2, "hidden": 192, "ratio": ratio,
                   "dw_kernel": 5}])
        assert Arch.from_yaml(a.to_yaml()) == a
        model = space.build(a, num_classes=3)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
        sizes.append(count_params(model))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)  # a larger ratio is cheaper


def test_ghostnet_hidden_widths_are_exact() -> None:
    hidden = [s.params.mid(0) for s in space.get_arch("ghostnet_100").stages for _ in range(s.depth)]
    assert hidden == [row[1] for row in GHOSTNET_BLOCKS]
    assert hidden == [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960]


def test_expansion_is_relative_to_the_block_input() -> None:
    a = arch([{"block": "ghost", "depth": 2, "width": 80, "stride": 1, "expansion": 2.3}], stem=80)
    model = space.build(a)
    mids = [m.branch[0].w_out for m in model.modules() if isinstance(m, ResidualBlock)]
    assert mids == [184, 184]


def test_ghost_se_uses_a_hard_sigmoid_and_a_width_rounded_to_4() -> None:
    a = arch([{"block": "ghost", "depth": 1, "width": 40, "stride": 2, "hidden": 72, "kernel": 5, "se": 0.25}])
    se = next(m for m in space.build(a).modules() if type(m).__name__ == "SqueezeExcite")
    assert se.fc1.out_channels == 20 and isinstance(se.gate, nn.Hardsigmoid)


def test_ghost_variants_deploy_exactly() -> None:
    a = arch([{"block": "ghost", "depth": 2, "width": 24, "stride": 2, "expansion": 2.5, "ratio": 3, "dw_kernel": 5,
               "primary_kernel": 3, "se": 0.25, "act": "silu"},
              {"block": "ghost", "depth": 1, "width": 32, "stride": 2, "hidden": 48, "shortcut": "projection"}])
    model = randomize_bn(space.build(a, num_classes=5)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))
        assert not any(isinstance(m, nn.BatchNorm2d) for m in dep.modules())
        assert (dep(x) - ref).abs().max().item() <= 1e-5


# -- G-Ghost stage --------------------------------------------------------------------------------------------------
SMALL_GGHOST = {"block": "gghost", "depth": 4, "width": 32, "stride": 2, "group_width": 8}


def test_gghost_split_and_mix_widths() -> None:
    stage = gghost_stage(space.build(arch([SMALL_GGHOST])))
    raw, cheap = 12, 20  # raw group width int(8 * 0.75) = 6; raw = int(32 * 0.5 / 6) * 6
    assert stage.raw_width == raw and len(stage.raw) == 2
    assert stage.cheap.conv.in_channels == stage.cheap.conv.out_channels == cheap
    assert stage.mix[1].conv.in_channels == 32 + 2 * raw  # base output and every intermediate output
    assert stage.mix[2].conv.out_channels == cheap
    assert stage.raw[0].branch[1].conv.groups == raw // 6


def test_gghost_mix_adds_a_per_channel_bias_from_intermediate_features() -> None:
    torch.manual_seed(0)
    model = randomize_bn(space.build(arch([SMALL_GGHOST]), num_classes=3)).eval()
    stage = gghost_stage(model)
    seen: dict[str, torch.Tensor] = {}
    stage.base.register_forward_hook(lambda m, i, o: seen.__setitem__("base", o.clone()))
    stage.mix.register_forward_hook(lambda m, i, o: seen.__setitem__("mix", o.clone()))
    stage.end.register_forward_hook(lambda m, i, o: seen.__setitem__("end_in", i[0].clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        before = dict(seen)
        assert before["mix"].shape == (2, 20, 1, 1)  # one value per sample and cheap channel
        cheap_in = before["base"][:, stage.raw_width:]
        expected = torch.relu(stage.cheap(cheap_in) + before["mix"])
        assert torch.allclose(before["end_in"][:, stage.raw_width:], expected)
        # Perturb an intermediate (not the last) raw block: the base output is unchanged, the cheap path is not.
        for p in stage.raw[0].parameters():
            p.add_(torch.randn_like(p) * 0.5)
        model(x)
    assert torch.equal(seen["base"], before["base"])
    assert not torch.allclose(seen["end_in"][:, stage.raw_width:], before["end_in"][:, stage.raw_width:])
    delta = seen["end_in"][:, stage.raw_width:] - before["end_in"][:, stage.raw_width:]
    pre_delta = (seen["mix"] - before["mix"]).expand_as(delta)
    live = (seen["end_in"][:, stage.raw_width:] > 0) & (before["end_in"][:, stage.raw_width:] > 0)
    assert live.any() and torch.allclose(delta[live], pre_delta[live], atol=1e-5)  # a bias, constant over space


def test_shallow_gghost_stage_is_a_plain_x_stage() -> None:
    x_stage = {"depth": 2, "width": 32, "stride": 2, "group_width": 8}
    gg = space.build(arch([{"block": "gghost", **x_stage}]))
    plain = space.build(arch([{"block": "bottleneck", "bot_mul": 1.0, **x_stage}]))
    assert not any(isinstance(m, GGhostStage) for m in gg.modules())
    assert count_params(gg) == count_params(plain)


def test_gghost_drop_path_follows_the_global_block_index() -> None:
    model = space.build(arch([{"block": "basic", "depth": 1, "width": 16, "stride": 1}, SMALL_GGHOST]),
                        drop_path_rate=0.4)
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_gghost_variants_deploy_exactly() -> None:
    a = arch([{**SMALL_GGHOST, "act": "silu", "se": 0.25, "cheap_ratio": 0.25, "raw_group_mul": 0.5},
              {"block": "gghost", "depth": 3, "width": 48, "stride": 2, "group_width": 8, "bot_mul": 0.5}])
    model = randomize_bn(space.build(a, num_classes=5)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        assert (space.deploy(copy.deepcopy(model))(x) - ref).abs().max().item() <= 1e-5


# -- width multipliers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mult", [0.1, 0.25, 0.5, 0.75, 1.5])
def test_width_multipliers_give_valid_archs(mult: float) -> None:
    for name in GHOST_NAMES + GGHOST_NAMES:
        scaled = space.get_arch(name).scaled(mult)
        assert Arch.from_yaml(scaled.to_yaml()) == scaled


@pytest.mark.parametrize("name", ["ghostnet_100", "g_ghost_regnetx_004", "g_ghost_regnetx_032"])
@pytest.mark.parametrize("mult", [0.1, 0.35])
def test_width_multiplied_nets_run(name: str, mult: float) -> None:
    model = create_model(name, num_classes=4, width_mult=mult)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_fit_rescues_a_split_without_raw_channels() -> None:
    # Width 32 with group width 32: raw group width 24 > 32 x 0.5, so there are no raw channels until fit shrinks it.
    stage = {"block": "gghost", "depth": 3, "width": 64, "stride": 2, "group_width": 32}
    small = arch([stage]).scaled(0.5)
    assert small.stages[0].width == 32 and small.stages[0].params.group_width == 16
    assert space.build(small)(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


# -- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, key, message", [
    ({"ratio": 1}, "ratio", "below the minimum 2"),
    ({"dw_kernel": 4}, "dw_kernel", "4 is not allowed"),
    ({"hidden": 64, "expansion": 2.0}, "expansion", "only applies when hidden is one of [0]"),
    ({"se_gate": "relu"}, "se_gate", "'relu' is not allowed"),
    ({"shortcut": "avgpool"}, "shortcut", "'avgpool' is not allowed"),
])
def test_invalid_ghost_params(extra: dict, key: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        arch([{"block": "ghost", "depth": 1, "width": 16, "stride": 1, **extra}])
    assert err.value.key == f"stages[0].{key}" and message in str(err.value)


@pytest.mark.parametrize("extra, key, message", [
    ({"width": 100}, "group_width", "mid width 100 (width 100 x bot_mul 1.0) is not divisible by group_width 8"),
    ({"width": 32, "group_width": 32}, "cheap_ratio", "no raw channels"),
    ({"cheap_ratio": 0.9}, "cheap_ratio", "above the maximum 0.75"),
    ({"group_width": 0}, "group_width", "below the minimum 1"),
    ({"bot_mul": 0.75, "width": 64, "group_width": 16}, "bot_mul", "raw mid width 18"),
])
def test_invalid_gghost_params(extra: dict, key: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        arch([{**SMALL_GGHOST, **extra}])
    assert err.value.key == f"stages[0].{key}" and message in str(err.value)


def test_impossible_width_multiplier_is_a_clear_error() -> None:
    with pytest.raises(NasError, match="width multiplier"):
        arch([{**SMALL_GGHOST, "group_width": 1, "bot_mul": 0.0625}]).scaled(0.25)
