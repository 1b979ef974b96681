"""GhostNet's C-Ghost bottleneck: ghost modules (a primary conv plus cheap depthwise "ghost" features) around an
optional strided depthwise conv and squeeze-excitation. Named points: GhostNet 0.5x / 1.0x / 1.3x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.blocks.resnet import ResidualBlock, make_shortcut
from space.builder import BuildContext, sequential_stage
from space.layers import ConvNormAct, SqueezeExcite, act_names, norm_names
from space.params import Params, make_divisible, param, register_family
from space.zoo import register_model

GHOST_SHORTCUTS = ("dwconv", "projection", "none")


@dataclass(frozen=True)
class GhostParams(Params):
    """Ghost module (act) → [dw k×k stride + norm] → (SE) → ghost module (linear), + shortcut.

    The hidden width is either explicit (`hidden`, scaled by width multipliers) or `expansion` × the block input.
    """

    kernel: int = param(3, choices=(3, 5, 7), doc="depthwise kernel of the strided conv and of the dwconv shortcut")
    hidden: int = param(0, min=0, channels=True, doc="hidden (expanded) width; 0: round(input width x expansion)")
    expansion: float = param(3.0, min=0.5, max=8.0, when=("hidden", (0,)), doc="hidden width / block input width")
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation ratio of the hidden width; 0: none")
    se_gate: str = param("hardsigmoid", choices=("hardsigmoid", "sigmoid"), doc="SE gate")
    ratio: int = param(2, min=2, doc="ghost ratio s: 1/s of a ghost module's channels come from the primary conv")
    dw_kernel: int = param(3, choices=(1, 3, 5, 7), doc="kernel of the cheap depthwise op of the ghost modules")
    primary_kernel: int = param(1, choices=(1, 3, 5), doc="kernel of the primary conv of the ghost modules")
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    norm: str = param("batchnorm", choices=norm_names)
    shortcut: str = param("dwconv", choices=GHOST_SHORTCUTS,
                          doc="if shapes change: dw k×k stride + norm + 1x1 + norm, or 1x1 stride + norm; none: plain")

    def mid(self, w_in: int) -> int:
        """Hidden width of a block whose input has `w_in` channels."""
        return self.hidden or max(1, round(w_in * self.expansion))

    def se_width(self, w_in: int) -> int:
        """Reduced width of the SE (GhostNet rounds it to a multiple of 4)."""
        return make_divisible(self.mid(w_in) * self.se, 4)


class GhostModule(nn.Module):
    """C-Ghost module: a primary conv makes ceil(w_out / ratio) channels, a depthwise op the rest, cut to w_out."""

    def __init__(self, w_in: int, w_out: int, *, ratio: int = 2, kernel: int = 1, dw_kernel: int = 3,
                 act: str = "relu", act_n: int = 3, norm: str = "batchnorm"):
        super().__init__()
        self.w_out = w_out
        primary = math.ceil(w_out / ratio)
        self.primary = ConvNormAct(w_in, primary, kernel, norm=norm, act=act, act_n=act_n)
        self.cheap = ConvNormAct(primary, primary * (ratio - 1), dw_kernel, groups=primary, norm=norm, act=act,
                                 act_n=act_n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.primary(x)
        return torch.cat([x, self.cheap(x)], 1)[:, :self.w_out]


def ghost_shortcut(w_in: int, w_out: int, stride: int, p: GhostParams) -> nn.Module | None:
    """Identity when shapes match; else GhostNet's dw k×k stride + norm + 1x1 + norm (or a 1x1 projection)."""
    if p.shortcut != "dwconv" or (w_in == w_out and stride == 1):
        return make_shortcut(w_in, w_out, stride, p.shortcut, p.norm)
    return nn.Sequential(ConvNormAct(w_in, w_in, p.kernel, stride, groups=w_in, norm=p.norm, act="none"),
                         ConvNormAct(w_in, w_out, 1, norm=p.norm, act="none"))


def ghost_bottleneck(w_in: int, w_out: int, stride: int, p: GhostParams, drop_path: float = 0.0) -> ResidualBlock:
    """One ghost bottleneck (the residual sum has no activation after it)."""
    mid = p.mid(w_in)
    ghost = {"ratio": p.ratio, "kernel": p.primary_kernel, "dw_kernel": p.dw_kernel, "norm": p.norm}
    layers: list[nn.Module] = [GhostModule(w_in, mid, act=p.act, act_n=p.act_n, **ghost)]
    if stride > 1:
        layers.append(ConvNormAct(mid, mid, p.kernel, stride, groups=mid, norm=p.norm, act="none"))
    if p.se > 0:
        layers.append(SqueezeExcite(mid, p.se_width(w_in), act="relu", gate=p.se_gate))
    layers.append(GhostModule(mid, w_out, act="none", **ghost))
    return ResidualBlock(nn.Sequential(*layers), ghost_shortcut(w_in, w_out, stride, p), nn.Identity(), drop_path)


@register_family("block", "ghost", GhostParams)
def ghost_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """GhostNet bottlenecks: ghost module, (dw stride), (SE), linear ghost module, + shortcut."""
    p: GhostParams = stage.params

    def block(w_in: int, w_out: int, stride: int, i: int) -> nn.Module:
        return ghost_bottleneck(w_in, w_out, stride, p, ctx.drop_path(i))

    return sequential_stage(w_in, stage, ctx, block)


# -- named points ---------------------------------------------------------------------------------------------------
# GhostNet 1.0x, one row per block: dw kernel, hidden width, output width, SE ratio, stride.
GHOSTNET_BLOCKS = (
    (3, 16, 16, 0.0, 1),
    (3, 48, 24, 0.0, 2), (3, 72, 24, 0.0, 1),
    (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0.0, 2), (3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1),
    (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1),
    (5, 672, 160, 0.25, 2), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
)


def ghostnet(width: float = 1.0, blocks: tuple[tuple[int, int, int, float, int], ...] = GHOSTNET_BLOCKS) -> Arch:
    """GhostNet at width multiplier `width` (channels rounded to multiples of 4, as published).

    A run of identical stride-1 blocks becomes one stage.
    """

    def ch(c: int) -> int:
        return make_divisible(c * width, 4)

    stages: list[dict] = []
    prev = None
    for row in blocks:
        kernel, hidden, out, se, stride = row
        if row == prev and stride == 1:
            stages[-1]["depth"] += 1
            continue
        stages.append({"block": "ghost", "depth": 1, "width": ch(out), "stride": stride, "kernel": kernel,
                       "hidden": ch(hidden), **({"se": se} if se else {})})
        prev = row
    return Arch.from_dict({
        "stem": {"type": "conv", "width": ch(16), "kernel": 3, "stride": 2},
        "stages": stages,
        "head": {"type": "conv", "width": ch(960), "hidden": 1280, "act": "relu", "dropout": 0.2},
    })


@register_model("ghostnet_050", "ghostnet", top1=66.2, paper="Han et al. 2020, GhostNet: More Features from Cheap "
                "Operations")
def ghostnet_050() -> Arch:
    """GhostNet 0.5x."""
    return ghostnet(0.5)


@register_model("ghostnet_100", "ghostnet", top1=73.98, paper="Han et al. 2020, GhostNet: More Features from Cheap "
                "Operations")
def ghostnet_100() -> Arch:
    """GhostNet 1.0x."""
    return ghostnet(1.0)


@register_model("ghostnet_130", "ghostnet", top1=75.7, paper="Han et al. 2020, GhostNet: More Features from Cheap "
                "Operations")
def ghostnet_130() -> Arch:
    """GhostNet 1.3x."""
    return ghostnet(1.3)
