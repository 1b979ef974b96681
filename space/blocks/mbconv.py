"""Inverted bottleneck (MBConv): 1x1 expand → depthwise k×k (stride) → (SE) → 1x1 linear projection (+ input).

The expansion is relative to the block INPUT width (MobileNetV2's t); with expansion 1 there is no expand conv.
The identity shortcut exists only when the block keeps the shape (stride 1, in == out); there is no projection
shortcut. With expansion 1, an activated projection (`pw_act`) and no shortcut the block is MobileNetV1's
depthwise-separable convolution. Named points: MobileNetV2 at width multipliers 0.5, 0.75, 1.0 and 1.4; MobileNetV1
(timm's mobilenetv1_100) at 0.5, 0.75, 1.0 and 1.25.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.builder import BuildContext, sequential_stage
from space.layers import ConvNormAct, DropPath, SqueezeExcite, act_names, norm_names
from space.params import Params, make_divisible, param, register_family
from space.zoo import register_model


@dataclass(frozen=True)
class MBConvParams(Params):
    """Inverted bottleneck: mid width = round(block input width · expansion), depthwise k×k, linear projection."""

    expansion: float = param(6.0, min=1.0, max=8.0, doc="mid width / block input width (1: no expand conv)")
    kernel: int = param(3, choices=(3, 5, 7))
    act: str = param("relu6", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    norm: str = param("batchnorm", choices=norm_names)
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation width / block input width; 0: none")
    se_gate: str = param("sigmoid", choices=("sigmoid", "hardsigmoid"), doc="SE gate (MobileNetV3: hardsigmoid)")
    shortcut: bool = param(True, doc="identity shortcut where the shape allows (stride 1, in == out)")
    pw_act: bool = param(False, added=True, doc="the block's activation after the 1x1 projection too (MobileNetV1); "
                         "false: a linear projection (MobileNetV2)")

    def mid(self, w_in: int) -> int:
        """Width of the expanded (depthwise) layer for a block with `w_in` input channels."""
        return int(round(w_in * self.expansion))


class InvertedResidual(nn.Module):
    """branch(x) + x when the block keeps the shape, else branch(x); the branch ends in a linear projection."""

    def __init__(self, branch: nn.Sequential, residual: bool, drop_path: float):
        super().__init__()
        self.branch = branch
        self.residual = residual
        self.drop_path = DropPath(drop_path) if residual and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return self.drop_path(out) + x if self.residual else out


@register_family("block", "mbconv", MBConvParams)
def mbconv_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """Inverted bottlenecks: (1x1 expand-norm-act) → dw k×k-norm-act (stride) → (SE) → 1x1-norm(-act), + identity."""
    p: MBConvParams = stage.params

    def block(w_in: int, w_out: int, stride: int, i: int) -> nn.Module:
        mid = p.mid(w_in)
        layers: list[nn.Module] = []
        if p.expansion != 1.0:
            layers.append(ConvNormAct(w_in, mid, 1, norm=p.norm, act=p.act, act_n=p.act_n))
        layers.append(ConvNormAct(mid, mid, p.kernel, stride, groups=mid, norm=p.norm, act=p.act, act_n=p.act_n))
        if p.se > 0:
            layers.append(SqueezeExcite(mid, max(1, int(round(w_in * p.se))), act="relu", gate=p.se_gate))
        layers.append(ConvNormAct(mid, w_out, 1, norm=p.norm, act=p.act if p.pw_act else "none", act_n=p.act_n))
        residual = p.shortcut and stride == 1 and w_in == w_out
        return InvertedResidual(nn.Sequential(*layers), residual, ctx.drop_path(i))

    return sequential_stage(w_in, stage, ctx, block)


# -- named points ---------------------------------------------------------------------------------------------------
# MobileNetV2's (t, c, n, s) rows: expansion, output width, blocks, stride of the first block.
MOBILENET_V2_ROWS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                     (6, 320, 1, 1))
MOBILENET_V2_PAPER = "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks"


def mobilenet_v2(width_mult: float = 1.0) -> Arch:
    """MobileNetV2 at a width multiplier: channels rounded to multiples of 8, the 1280-wide head never narrower."""
    stages = [{"block": "mbconv", "depth": n, "width": make_divisible(c * width_mult, 8), "stride": s,
               "expansion": float(t)} for t, c, n, s in MOBILENET_V2_ROWS]
    return Arch.from_dict({
        "stem": {"type": "conv", "width": make_divisible(32 * width_mult, 8), "act": "relu6"},
        "stages": stages,
        "head": {"type": "conv", "width": make_divisible(1280 * max(1.0, width_mult), 8), "act": "relu6",
                 "dropout": 0.2},
    })


@register_model("mobilenet_v2", "mobilenet", top1=71.88, paper=MOBILENET_V2_PAPER)
def mobilenet_v2_100() -> Arch:
    """MobileNetV2 1.0."""
    return mobilenet_v2(1.0)


@register_model("mobilenet_v2_050", "mobilenet", top1=65.4, paper=MOBILENET_V2_PAPER)
def mobilenet_v2_050() -> Arch:
    """MobileNetV2 0.5 (timm: mobilenetv2_050)."""
    return mobilenet_v2(0.5)


@register_model("mobilenet_v2_075", "mobilenet", top1=69.8, paper=MOBILENET_V2_PAPER)
def mobilenet_v2_075() -> Arch:
    """MobileNetV2 0.75 (timm: mobilenetv2_075)."""
    return mobilenet_v2(0.75)


@register_model("mobilenet_v2_140", "mobilenet", top1=75.0, paper=MOBILENET_V2_PAPER)
def mobilenet_v2_140() -> Arch:
    """MobileNetV2 1.4 (timm: mobilenetv2_140)."""
    return mobilenet_v2(1.4)


# MobileNetV1's depthwise-separable rows (output width, blocks, stride of the first block), after a 32-wide stem.
MOBILENET_V1_ROWS = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))
MOBILENET_V1_PAPER = "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision"


def mobilenet_v1(width_mult: float = 1.0) -> Arch:
    """MobileNetV1 (timm's mobilenetv1_100 layout) at a width multiplier: every width rounded to a multiple of 8."""
    stages = [{"block": "mbconv", "depth": n, "width": make_divisible(c * width_mult, 8), "stride": s,
               "expansion": 1.0, "shortcut": False, "pw_act": True} for c, n, s in MOBILENET_V1_ROWS]
    return Arch.from_dict({
        "stem": {"type": "conv", "width": make_divisible(32 * width_mult, 8), "act": "relu6"},
        "stages": stages,
        "head": {"type": "classifier"},
    })


@register_model("mobilenet_v1", "mobilenet", top1=70.6, paper=MOBILENET_V1_PAPER)
def mobilenet_v1_100() -> Arch:
    """MobileNetV1 1.0 (timm: mobilenetv1_100)."""
    return mobilenet_v1(1.0)


@register_model("mobilenet_v1_050", "mobilenet", top1=63.7, paper=MOBILENET_V1_PAPER)
def mobilenet_v1_050() -> Arch:
    """MobileNetV1 0.5."""
    return mobilenet_v1(0.5)


@register_model("mobilenet_v1_075", "mobilenet", top1=68.4, paper=MOBILENET_V1_PAPER)
def mobilenet_v1_075() -> Arch:
    """MobileNetV1 0.75."""
    return mobilenet_v1(0.75)


@register_model("mobilenet_v1_125", "mobilenet", top1=76.92,
                paper="Howard et al. 2017 layout; top-1 of timm's mobilenetv1_125.ra4_e3600_r224_in1k (224 px)")
def mobilenet_v1_125() -> Arch:
    """MobileNetV1 1.25 (timm: mobilenetv1_125)."""
    return mobilenet_v1(1.25)
