"""Family-specific facts of the classic families (plain, mbconv, RegNet, ConvNeXt) beyond the generic named tests."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import space
from space import Arch, SpecError, create_model, get_arch
from space.blocks.convnext import ConvNeXtBlock, Downsample
from space.blocks.mbconv import InvertedResidual
from space.blocks.regnet import RegNetStage, regnet_stages
from space.layers import ConvNormAct, DropPath, LayerNorm2d, SqueezeExcite
from tests.conftest import randomize_bn


def arch(stages: list[dict], stem: dict | None = None, head: dict | None = None) -> Arch:
    """A small architecture around `stages` (conv stem of 16 channels, classifier head by default)."""
    return Arch.from_dict({"stem": stem or {"type": "conv", "width": 16}, "stages": stages,
                           "head": head or {"type": "classifier"}})


def spec_error(stages: list[dict], **kw: dict) -> SpecError:
    """The SpecError raised when validating an architecture with these stages."""
    with pytest.raises(SpecError) as info:
        arch(stages, **kw)
    return info.value


def same_function(model: nn.Module, size: int = 32) -> float:
    """max |Δ| between a model (eval, randomized BN) and its deploy form."""
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return (model(x) - space.deploy(copy.deepcopy(model))(x)).abs().max().item()


# -- plain ----------------------------------------------------------------------------------------------------------
def test_vgg_stages_end_in_a_2x2_max_pool() -> None:
    model = create_model("vgg16", width_mult=0.25)
    for stage, depth in zip(model.stages, (2, 2, 3, 3, 3)):
        assert [type(m) for m in stage] == [ConvNormAct] * depth + [nn.MaxPool2d]
        assert (stage[-1].kernel_size, stage[-1].stride, stage[-1].padding) == (2, 2, 0)
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 128, 2, 2)


def test_vgg_bn_keeps_the_conv_bias_and_plain_vgg_has_no_norm() -> None:
    bn, plain = create_model("vgg11_bn", width_mult=0.25), create_model("vgg11", width_mult=0.25)
    convs = [m for m in bn.stages.modules() if isinstance(m, ConvNormAct)]
    assert all(c.conv.bias is not None and isinstance(c.bn, nn.BatchNorm2d) for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_vgg_width_multiplier_leaves_the_image_channels_alone() -> None:
    scaled = get_arch("vgg16").scaled(0.25)
    assert scaled.stem.width == 3 and scaled.stages[0].width == 16


def test_alexnet_pools_3_2_after_the_stem_and_after_pooled_stages_only() -> None:
    model = create_model("alexnet")
    stem_pool = model.stem[-1]
    assert (stem_pool.kernel_size, stem_pool.stride, stem_pool.padding) == (3, 2, 0)
    pools = [[m for m in st if isinstance(m, nn.MaxPool2d)] for st in model.stages]
    assert [len(p) for p in pools] == [1, 0, 1]
    assert all((p[0].kernel_size, p[0].stride) == (3, 2) for p in pools if p)
    assert model.stem[0].conv.padding == (2, 2) and model.stages[0][0].conv.kernel_size == (5, 5)
    assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 6, 6)


def test_plain_conv_downsampling_strides_the_first_conv_and_has_no_pool() -> None:
    model = space.build(arch([{"block": "plain", "depth": 2, "width": 8, "stride": 2, "down": "conv"}]))
    stage = model.stages[0]
    assert [type(m) for m in stage] == [ConvNormAct, ConvNormAct]
    assert stage[0].conv.stride == (2, 2) and stage[1].conv.stride == (1, 1)


def test_plain_avgpool_and_series_activation_build_and_deploy() -> None:
    a = arch([{"block": "plain", "depth": 2, "width": 8, "stride": 2, "down": "avgpool", "act": "series",
               "act_n": 2}])
    model = space.build(a, num_classes=5)
    assert isinstance(model.stages[0][-1], nn.AvgPool2d)
    assert same_function(model) <= 1e-4


def test_plain_rejects_a_pool_smaller_than_its_stride() -> None:
    e = spec_error([{"block": "plain", "depth": 1, "width": 8, "stride": 3, "pool_kernel": 2}])
    assert e.key == "stages[0].pool_kernel" and "smaller than the stage stride 3" in str(e)


def test_plain_rejects_a_pool_kernel_with_conv_downsampling() -> None:
    e = spec_error([{"block": "plain", "depth": 1, "width": 8, "stride": 2, "down": "conv", "pool_kernel": 3}])
    assert e.key == "stages[0].pool_kernel" and "only applies when down" in str(e)


def test_plain_rejects_an_unknown_downsampling_style() -> None:
    e = spec_error([{"block": "plain", "depth": 1, "width": 8, "stride": 2, "down": "maxpol"}])
    assert e.key == "stages[0].down" and "did you mean 'maxpool'" in str(e)


def test_plain_bias_is_only_a_choice_with_a_norm() -> None:
    e = spec_error([{"block": "plain", "depth": 1, "width": 8, "stride": 2, "norm": "none", "bias": True}])
    assert e.key == "stages[0].bias" and "only applies when norm" in str(e)


def test_conv_stem_rejects_a_pool_padding_above_half_the_kernel() -> None:
    e = spec_error([{"block": "plain", "depth": 1, "width": 8, "stride": 1}],
                   stem={"type": "conv", "width": 8, "pool": "max", "pool_kernel": 3, "pool_padding": 2})
    assert e.key == "stem.pool_padding"


# -- mbconv ---------------------------------------------------------------------------------------------------------
def test_mobilenet_v2_identity_shortcut_only_where_the_shape_is_kept() -> None:
    model = create_model("mobilenet_v2", width_mult=0.5)
    blocks = [b for st in model.stages for b in st]
    assert all(isinstance(b, InvertedResidual) for b in blocks) and len(blocks) == 17
    # at 0.5 the third row's first block keeps the width (16 → 16) but has stride 2: no shortcut there either
    assert [b.residual for b in blocks] == [False, False, True, False, True, True, False, True, True, True,
                                            False, True, True, False, True, True, False]
    x = model.stem(torch.randn(1, 3, 64, 64))
    for b in blocks:
        y = b(x)
        assert b.residual == (y.shape == x.shape)
        x = y


def test_mbconv_expansion_is_relative_to_the_block_input_and_absent_at_1() -> None:
    model = create_model("mobilenet_v2")
    first = model.stages[0][0].branch
    assert len(first) == 2 and first[0].conv.groups == 32  # dw 3x3 on the 32-channel stem output, then project
    second = model.stages[1][0].branch  # 16 → 24 with t = 6: mid is 6 × 16, not 6 × 24
    assert second[0].conv.out_channels == 96 and second[1].conv.groups == 96
    project = second[-1]
    assert isinstance(project.act, nn.Identity) and project.conv.bias is None


def test_mbconv_residual_adds_the_input() -> None:
    model = space.build(arch([{"block": "mbconv", "depth": 1, "width": 16, "stride": 1}])).eval()
    block = model.stages[0][0]
    with torch.no_grad():
        block.branch[-1].bn.weight.zero_()
        block.branch[-1].bn.bias.zero_()
        x = torch.randn(2, 16, 8, 8)
        assert torch.equal(block(x), x)


def test_mbconv_without_shortcut_and_with_se() -> None:
    a = arch([{"block": "mbconv", "depth": 2, "width": 16, "stride": 1, "shortcut": False, "se": 0.25,
               "se_gate": "hardsigmoid", "kernel": 5}])
    model = space.build(a, num_classes=4)
    assert not any(b.residual for b in model.stages[0])
    se = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(se) == 2 and se[0].fc1.out_channels == 4 and isinstance(se[0].gate, nn.Hardsigmoid)
    assert same_function(model) <= 1e-4


def test_mbconv_drop_path_only_on_residual_blocks() -> None:
    model = create_model("mobilenet_v2", width_mult=0.25, drop_path_rate=0.2)
    blocks = [b for st in model.stages for b in st]
    assert blocks[0].residual  # at 0.25 the first block is 8 → 8, stride 1; its drop rate is 0
    assert [isinstance(b.drop_path, DropPath) for b in blocks] == [b.residual and k > 0 for k, b in enumerate(blocks)]


@pytest.mark.parametrize("key, value, message", [
    ("expansion", 0.5, "below the minimum"),
    ("kernel", 4, "not allowed"),
    ("se_gate", "relu", "not allowed"),
    ("act_n", 2, "only applies when act"),
])
def test_mbconv_rejects_invalid_params(key: str, value: object, message: str) -> None:
    e = spec_error([{"block": "mbconv", "depth": 1, "width": 16, "stride": 1, key: value}])
    assert e.key == f"stages[0].{key}" and message in str(e)


# -- RegNet ---------------------------------------------------------------------------------------------------------
# torchvision's BlockParams.from_init_params for every RegNet it ships: (depth, w_0, w_a, w_m, group_width) →
# per-stage (depth, width, group width), recorded with torchvision 0.29.
TORCHVISION_REGNETS = {
    "regnet_x_400mf": ((22, 24, 24.48, 2.54, 16), ((1, 32, 16), (2, 64, 16), (7, 160, 16), (12, 400, 16))),
    "regnet_x_800mf": ((16, 56, 35.73, 2.28, 16), ((1, 64, 16), (3, 128, 16), (7, 288, 16), (5, 672, 16))),
    "regnet_x_1_6gf": ((18, 80, 34.01, 2.25, 24), ((2, 72, 24), (4, 168, 24), (10, 408, 24), (2, 912, 24))),
    "regnet_x_3_2gf": ((25, 88, 26.31, 2.25, 48), ((2, 96, 48), (6, 192, 48), (15, 432, 48), (2, 1008, 48))),
    "regnet_x_8gf": ((23, 80, 49.56, 2.88, 120), ((2, 80, 80), (5, 240, 120), (15, 720, 120), (1, 1920, 120))),
    "regnet_x_16gf": ((22, 216, 55.59, 2.1, 128), ((2, 256, 128), (6, 512, 128), (13, 896, 128), (1, 2048, 128))),
    "regnet_x_32gf": ((23, 320, 69.86, 2.0, 168), ((2, 336, 168), (7, 672, 168), (13, 1344, 168), (1, 2520, 168))),
    "regnet_y_400mf": ((16, 48, 27.89, 2.09, 8), ((1, 48, 8), (3, 104, 8), (6, 208, 8), (6, 440, 8))),
    "regnet_y_800mf": ((14, 56, 38.84, 2.4, 16), ((1, 64, 16), (3, 144, 16), (8, 320, 16), (2, 784, 16))),
    "regnet_y_1_6gf": ((27, 48, 20.71, 2.65, 24), ((2, 48, 24), (6, 120, 24), (17, 336, 24), (2, 888, 24))),
    "regnet_y_3_2gf": ((21, 80, 42.63, 2.66, 24), ((2, 72, 24), (5, 216, 24), (13, 576, 24), (1, 1512, 24))),
    "regnet_y_8gf": ((17, 192, 76.82, 2.19, 56), ((2, 224, 56), (4, 448, 56), (10, 896, 56), (1, 2016, 56))),
    "regnet_y_16gf": ((18, 200, 106.23, 2.48, 112), ((2, 224, 112), (4, 448, 112), (11, 1232, 112),
                                                      (1, 3024, 112))),
    "regnet_y_32gf": ((20, 232, 115.89, 2.53, 232), ((2, 232, 232), (5, 696, 232), (12, 1392, 232),
                                                      (1, 3712, 232))),
    "regnet_y_128gf": ((27, 456, 160.83, 2.52, 264), ((2, 528, 264), (7, 1056, 264), (17, 2904, 264),
                                                       (1, 7392, 264))),
}


@pytest.mark.parametrize("name", TORCHVISION_REGNETS)
def test_regnet_generator_reproduces_torchvision(name: str) -> None:
    (depth, w_0, w_a, w_m, group_w), expected = TORCHVISION_REGNETS[name]
    got = regnet_stages(w_a=w_a, w_0=w_0, w_m=w_m, depth=depth, group_w=group_w)
    assert got == tuple(RegNetStage(*s) for s in expected)


@pytest.mark.parametrize("ours, theirs", [("regnetx_400mf", "regnet_x_400mf"), ("regnetx_800mf", "regnet_x_800mf"),
                                          ("regnetx_1_6gf", "regnet_x_1_6gf"), ("regnetx_3_2gf", "regnet_x_3_2gf"),
                                          ("regnety_400mf", "regnet_y_400mf"), ("regnety_800mf", "regnet_y_800mf"),
                                          ("regnety_1_6gf", "regnet_y_1_6gf"), ("regnety_3_2gf", "regnet_y_3_2gf")])
def test_registered_regnets_are_bottleneck_stages_with_torchvision_layout(ours: str, theirs: str) -> None:
    a = get_arch(ours)
    assert a.stem.type == "conv" and a.stem.width == 32 and a.stem.params.kernel == 3 and a.head.type == "classifier"
    assert all(st.block == "bottleneck" and st.stride == 2 and st.params.bot_mul == 1.0 for st in a.stages)
    assert tuple((st.depth, st.width, st.params.group_width) for st in a.stages) == TORCHVISION_REGNETS[theirs][1]
    assert all(st.params.se == (0.25 if theirs.startswith("regnet_y") else 0.0) for st in a.stages)


def test_regnet_survives_width_scaling_by_adjusting_group_widths() -> None:
    scaled = get_arch("regnetx_3_2gf").scaled(0.25)
    for st in scaled.stages:
        assert st.width % st.params.group_width == 0
    model = create_model("regnetx_3_2gf", width_mult=0.25, num_classes=3).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("kw, key", [({"w_0": 20}, "w_0"), ({"w_m": 1.0}, "w_m"), ({"w_a": -1.0}, "w_a"),
                                     ({"group_w": 0}, "group_w"), ({"depth": 0}, "depth")])
def test_regnet_generator_rejects_invalid_parameters(kw: dict, key: str) -> None:
    params = {"w_a": 24.48, "w_0": 24, "w_m": 2.54, "depth": 22, "group_w": 16, **kw}
    with pytest.raises(SpecError) as info:
        regnet_stages(**params)
    assert info.value.key == key and f"RegNet {key} must be" in str(info.value)


def test_regnet_stage_rejects_a_width_that_is_not_a_whole_number_of_groups() -> None:
    e = spec_error([{"block": "bottleneck", "depth": 1, "width": 100, "stride": 2, "bot_mul": 1.0,
                     "group_width": 16}])
    assert e.key == "stages[0].group_width" and "not divisible by group_width 16" in str(e)


# -- ConvNeXt -------------------------------------------------------------------------------------------------------
def test_convnext_downsamples_with_its_own_layer_at_the_start_of_later_stages() -> None:
    model = create_model("convnext_tiny", width_mult=0.25)
    first = [type(m) for m in model.stages[0]]
    assert first == [ConvNeXtBlock] * 3
    for stage, (w_in, w_out) in zip(model.stages[1:], ((24, 48), (48, 96), (96, 192))):
        down = stage[0]
        assert isinstance(down, Downsample) and isinstance(down.norm, LayerNorm2d)
        conv = down.conv
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (w_in, w_out, (2, 2), (2, 2))
        assert conv.bias is not None
        assert all(isinstance(b, ConvNeXtBlock) for b in stage[1:])
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 192, 2, 2)


def test_convnext_stride_1_width_change_gets_a_1x1_transition() -> None:
    model = space.build(arch([{"block": "convnext", "depth": 1, "width": 24, "stride": 1}]))
    down = model.stages[0][0]
    assert isinstance(down, Downsample) and down.conv.kernel_size == (1, 1) and down.conv.stride == (1, 1)


def test_convnext_layer_scale_shape_init_and_absence() -> None:
    block = create_model("convnext_tiny", width_mult=0.25).stages[0][0]
    assert block.gamma.shape == (24, 1, 1) and torch.all(block.gamma == 1e-6)
    assert isinstance(block.fc1, nn.Linear) and block.fc1.out_features == 96
    plain = space.build(arch([{"block": "convnext", "depth": 1, "width": 16, "stride": 1, "layer_scale": 0.0}]))
    assert plain.stages[0][0].gamma is None


def test_convnext_drop_path_rises_linearly_over_all_blocks() -> None:
    model = create_model("convnext_tiny", width_mult=0.25, drop_path_rate=0.3)
    rates = [b.drop_path.p if not isinstance(b.drop_path, nn.Identity) else 0.0
             for st in model.stages for b in st if isinstance(b, ConvNeXtBlock)]
    assert len(rates) == 18 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates == pytest.approx([0.3 * i / 17 for i in range(18)])


def test_convnext_deploy_folds_batchnorm_and_layer_scale_and_keeps_the_function() -> None:
    a = arch([{"block": "convnext", "depth": 2, "width": 16, "stride": 1, "norm": "batchnorm", "layer_scale": 0.5},
              {"block": "convnext", "depth": 1, "width": 32, "stride": 2, "norm": "batchnorm", "act": "series",
               "act_n": 1, "kernel": 5}])
    model = space.build(a, num_classes=6)
    assert same_function(model) <= 1e-4
    dep = space.deploy(model)
    blocks = [m for m in dep.stages.modules() if isinstance(m, (ConvNeXtBlock, Downsample))]
    assert all(isinstance(m.norm, nn.Identity) for m in blocks)
    assert all(m.gamma is None for m in blocks if isinstance(m, ConvNeXtBlock))


def test_convnext_layernorm_deploy_keeps_the_norms() -> None:
    model = create_model("convnext_tiny", width_mult=0.25, num_classes=5)
    assert same_function(model) <= 1e-4
    dep = space.deploy(model)
    assert sum(isinstance(m, nn.LayerNorm) for m in dep.modules()) == 1 + 3 + 18 + 1


@pytest.mark.parametrize("key, value, message", [
    ("kernel", 4, "not allowed"),
    ("layer_scale", -1.0, "below the minimum"),
    ("norm", "layrnorm", "did you mean 'layernorm'"),
    ("expansion", 0.5, "below the minimum"),
])
def test_convnext_rejects_invalid_params(key: str, value: object, message: str) -> None:
    e = spec_error([{"block": "convnext", "depth": 1, "width": 16, "stride": 1, key: value}])
    assert e.key == f"stages[0].{key}" and message in str(e)
