"""G-Ghost stages on RegNet X blocks (GhostNets on Heterogeneous Devices, Han et al. 2022).

A G-Ghost stage keeps the full width only in its first ("base") and last ("end") blocks. In between, `raw` channels
of the base output go through the remaining blocks, while the other `cheap` channels get a 1x1 conv; the "mix"
pools the base output and every intermediate output, and maps them to a per-channel bias added to the cheap path,
so the cheap features still see the deep ones. A stage needs three blocks for that; a shallower `gghost` stage is
a plain X stage (the rule the official networks apply to their second and fourth stages).
Named points: the twelve G-Ghost RegNetX networks of the official code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.blocks.resnet import BottleneckParams, bottleneck_stage
from space.builder import BuildContext
from space.errors import SpecError
from space.layers import ConvNormAct, act_names, make_act, norm_names
from space.params import Params, param, register_family
from space.zoo import register_model


@dataclass(frozen=True)
class GGhostParams(Params):
    """X blocks (1x1 → grouped k×k → 1x1) with a cheap/raw channel split after the first block."""

    kernel: int = param(3, choices=(1, 3, 5, 7))
    bot_mul: float = param(1.0, min=0.0625, max=8.0, doc="mid width / output width of the X blocks")
    group_width: int = param(16, min=1, doc="channels per group of the base and end blocks' k×k conv")
    raw_group_mul: float = param(0.75, min=0.1, max=1.0, doc="group width of the raw blocks / group_width")
    cheap_ratio: float = param(0.5, min=0.05, max=0.75, doc="share of the channels taking the cheap path (about)")
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)))
    norm: str = param("batchnorm", choices=norm_names)
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation ratio of the block input width; 0: none")

    def raw_group_width(self, group_width: int | None = None) -> int:
        """Group width of the raw blocks: int(group_width × raw_group_mul), at least 1."""
        return max(1, int((group_width or self.group_width) * self.raw_group_mul))

    def split(self, w_out: int, group_width: int | None = None) -> tuple[int, int]:
        """(raw, cheap) channels: raw is the largest multiple of the raw group width in w_out × (1 − cheap_ratio)."""
        gw = self.raw_group_width(group_width)
        raw = int(w_out * (1 - self.cheap_ratio) / gw) * gw
        return raw, w_out - raw

    def x_block(self, group_width: int) -> BottleneckParams:
        """Parameters of the X blocks with group width `group_width`."""
        return BottleneckParams(kernel=self.kernel, bot_mul=self.bot_mul, group_width=group_width, act=self.act,
                                act_n=self.act_n, norm=self.norm, se=self.se)

    def _problem(self, w_out: int, group_width: int) -> SpecError | None:
        mid = round(w_out * self.bot_mul)
        if mid < 1 or mid % group_width:
            return SpecError(f"mid width {mid} (width {w_out} x bot_mul {self.bot_mul}) is not divisible by "
                             f"group_width {group_width}", key="group_width")
        gw = self.raw_group_width(group_width)
        raw, cheap = self.split(w_out, group_width)
        if raw < 1:
            return SpecError(f"no raw channels: width {w_out} x (1 - cheap_ratio {self.cheap_ratio}) is below the "
                             f"raw group width {gw} (group_width {group_width} x raw_group_mul {self.raw_group_mul})",
                             key="cheap_ratio", hint="lower cheap_ratio, group_width or raw_group_mul")
        raw_mid = round(raw * self.bot_mul)
        if raw_mid < 1 or raw_mid % gw:
            return SpecError(f"raw mid width {raw_mid} (raw width {raw} x bot_mul {self.bot_mul}) is not divisible "
                             f"by the raw group width {gw}", key="bot_mul", hint="use bot_mul 1 or a power of 2")
        return None

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        problem = self._problem(w_out, self.group_width)
        if problem is not None:
            raise problem

    def fit(self, *, w_in: int, w_out: int) -> Params:
        # Width scaling can break divisibility: take the largest group width (<= the current one) that works.
        for gw in range(math.gcd(round(w_out * self.bot_mul), self.group_width) or 1, 0, -1):
            if self._problem(w_out, gw) is None:
                return self if gw == self.group_width else dataclasses.replace(self, group_width=gw)
        return self


class GGhostStage(nn.Module):
    """base → [raw blocks on the first `raw` channels] ‖ [cheap 1x1 on the rest + mix bias] → end."""

    def __init__(self, base: nn.Module, raw: nn.Sequential, end: nn.Module, w_out: int, raw_width: int,
                 p: GGhostParams):
        super().__init__()
        cheap = w_out - raw_width
        self.raw_width = raw_width
        self.base = base
        self.raw = raw
        self.cheap = ConvNormAct(cheap, cheap, 1, norm=p.norm, act="none")
        self.mix = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvNormAct(w_out + raw_width * len(raw), cheap, 1, norm=p.norm, act=p.act, act_n=p.act_n),
            ConvNormAct(cheap, cheap, 1, norm=p.norm, act="none"),
        )
        self.act = make_act(p.act, cheap, n=p.act_n)
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base(x)
        e = x[:, :self.raw_width]
        feats = [x]
        for block in self.raw:
            e = block(e)
            feats.append(e)
        c = self.act(self.cheap(x[:, self.raw_width:]) + self.mix(torch.cat(feats, 1)))
        return self.end(torch.cat([e, c], 1))


@register_family("block", "gghost", GGhostParams)
def gghost_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """G-Ghost stage of X blocks: base, raw blocks, cheap 1x1 + pooled mix bias, end (plain X stage below depth 3)."""
    p: GGhostParams = stage.params

    def x_stage(w_in: int, w_out: int, depth: int, stride: int, gw: int, first: int) -> nn.Sequential:
        st = Stage("bottleneck", depth, w_out, stride, p.x_block(gw))
        return bottleneck_stage(w_in, st, dataclasses.replace(ctx, block_index=ctx.block_index + first))

    if stage.depth < 3:
        return x_stage(w_in, stage.width, stage.depth, stage.stride, p.group_width, 0)
    raw, _ = p.split(stage.width)
    base = x_stage(w_in, stage.width, 1, stage.stride, p.group_width, 0)[0]
    raw_blocks = x_stage(raw, raw, stage.depth - 2, 1, p.raw_group_width(), 1)
    end = x_stage(stage.width, stage.width, 1, 1, p.group_width, stage.depth - 1)[0]
    return GGhostStage(base, raw_blocks, end, stage.width, raw, p)


# -- named points ---------------------------------------------------------------------------------------------------
def g_ghost_regnetx(depths: tuple[int, ...], widths: tuple[int, ...], group_width: int) -> Arch:
    """G-Ghost RegNetX: stage 1 plain X blocks, later stages G-Ghost when deeper than 2 blocks.

    Stem conv3x3 s2 → 32; bottleneck multiplier 1; group width capped at the stage width; GAP, dropout 0.2, Linear.
    """
    stages = []
    for i, (d, w) in enumerate(zip(depths, widths)):
        gw = min(w, group_width)
        if i > 0 and d > 2:
            stages.append({"block": "gghost", "depth": d, "width": w, "stride": 2, "group_width": gw})
        else:
            stages.append({"block": "bottleneck", "depth": d, "width": w, "stride": 2, "bot_mul": 1.0,
                           "group_width": gw})
    return Arch.from_dict({"stem": {"type": "conv", "width": 32, "kernel": 3, "stride": 2}, "stages": stages,
                           "head": {"type": "classifier", "dropout": 0.2}})


PAPER = "Han et al. 2022, GhostNets on Heterogeneous Devices via Cheap Operations"


@register_model("g_ghost_regnetx_002", "gghost", paper=PAPER)
def g_ghost_regnetx_002() -> Arch:
    """G-Ghost RegNetX-200MF."""
    return g_ghost_regnetx((1, 1, 4, 7), (24, 56, 152, 368), 8)


@register_model("g_ghost_regnetx_004", "gghost", paper=PAPER)
def g_ghost_regnetx_004() -> Arch:
    """G-Ghost RegNetX-400MF."""
    return g_ghost_regnetx((1, 2, 7, 12), (32, 64, 160, 384), 16)


@register_model("g_ghost_regnetx_006", "gghost", paper=PAPER)
def g_ghost_regnetx_006() -> Arch:
    """G-Ghost RegNetX-600MF."""
    return g_ghost_regnetx((1, 3, 5, 7), (48, 96, 240, 528), 24)


@register_model("g_ghost_regnetx_008", "gghost", paper=PAPER)
def g_ghost_regnetx_008() -> Arch:
    """G-Ghost RegNetX-800MF."""
    return g_ghost_regnetx((1, 3, 7, 5), (64, 128, 288, 672), 16)


@register_model("g_ghost_regnetx_016", "gghost", paper=PAPER)
def g_ghost_regnetx_016() -> Arch:
    """G-Ghost RegNetX-1.6GF."""
    return g_ghost_regnetx((2, 4, 10, 2), (72, 168, 408, 912), 24)


@register_model("g_ghost_regnetx_032", "gghost", top1=77.8, paper=PAPER)
def g_ghost_regnetx_032() -> Arch:
    """G-Ghost RegNetX-3.2GF."""
    return g_ghost_regnetx((2, 6, 15, 2), (96, 192, 432, 1008), 48)


@register_model("g_ghost_regnetx_040", "gghost", top1=78.6, paper=PAPER)
def g_ghost_regnetx_040() -> Arch:
    """G-Ghost RegNetX-4.0GF."""
    return g_ghost_regnetx((2, 5, 14, 2), (80, 240, 560, 1360), 40)


@register_model("g_ghost_regnetx_064", "gghost", paper=PAPER)
def g_ghost_regnetx_064() -> Arch:
    """G-Ghost RegNetX-6.4GF."""
    return g_ghost_regnetx((2, 4, 10, 1), (168, 392, 784, 1624), 56)


@register_model("g_ghost_regnetx_080", "gghost", top1=79.0, paper=PAPER)
def g_ghost_regnetx_080() -> Arch:
    """G-Ghost RegNetX-8.0GF."""
    return g_ghost_regnetx((2, 5, 15, 1), (80, 240, 720, 1920), 120)


@register_model("g_ghost_regnetx_120", "gghost", paper=PAPER)
def g_ghost_regnetx_120() -> Arch:
    """G-Ghost RegNetX-12GF."""
    return g_ghost_regnetx((2, 5, 11, 1), (224, 448, 896, 2240), 112)


@register_model("g_ghost_regnetx_160", "gghost", top1=79.9, paper=PAPER)
def g_ghost_regnetx_160() -> Arch:
    """G-Ghost RegNetX-16GF."""
    return g_ghost_regnetx((2, 6, 13, 1), (256, 512, 896, 2048), 128)


@register_model("g_ghost_regnetx_320", "gghost", paper=PAPER)
def g_ghost_regnetx_320() -> Arch:
    """G-Ghost RegNetX-32GF."""
    return g_ghost_regnetx((2, 7, 13, 1), (336, 672, 1344, 2520), 168)
