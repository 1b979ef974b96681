"""RegNet: not a block family but a generator of bottleneck stages (Radosavovic et al. 2020, pycls).

A RegNet is the `bottleneck` family with bottleneck multiplier 1 and a group width, laid out by a quantized linear
rule: block j gets the continuous width u_j = w_0 + w_a·j, snapped to w_0·w_m^round(log_{w_m}(u_j / w_0)) and
rounded to a multiple of 8; runs of equal widths are the stages. RegNetY adds squeeze-excitation (ratio 0.25 of the
block input). Named points follow torchvision's RegNetX/Y 400MF..3.2GF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from space.arch import Arch
from space.errors import SpecError
from space.params import make_divisible
from space.zoo import register_model

QUANT = 8


@dataclass(frozen=True)
class RegNetStage:
    """One generated stage: blocks, output width, group width of the 3x3 conv."""

    depth: int
    width: int
    group_width: int


def regnet_stages(*, w_a: float, w_0: int, w_m: float, depth: int, group_w: int,
                  bot_mul: float = 1.0) -> tuple[RegNetStage, ...]:
    """Per-stage depths, widths and group widths of the RegNet with these parameters (torchvision's rounding)."""
    checks = (("w_a", w_a, w_a >= 0, ">= 0"),
              ("w_0", w_0, w_0 > 0 and w_0 % QUANT == 0, f"a positive multiple of {QUANT}"),
              ("w_m", w_m, w_m > 1, "> 1"),
              ("depth", depth, depth >= 1, ">= 1"),
              ("group_w", group_w, group_w >= 1, ">= 1"))
    for key, value, ok, need in checks:
        if not ok:
            raise SpecError(f"RegNet {key} must be {need}, got {value}", key=key)
    widths = []
    for j in range(depth):
        steps = round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m))
        widths.append(int(round(w_0 * w_m ** steps / QUANT)) * QUANT)
    runs: list[list[int]] = []
    for w in widths:
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    stages = []
    for w, d in runs:
        # Group-width compatibility: the mid width must be a whole number of groups, and a group at most the mid.
        w_bot = int(w * bot_mul)
        g = min(group_w, w_bot)
        stages.append(RegNetStage(depth=d, width=int(make_divisible(w_bot, g) / bot_mul), group_width=g))
    return tuple(stages)


def regnet(*, w_a: float, w_0: int, w_m: float, depth: int, group_w: int, se: float = 0.0,
           stem_width: int = 32) -> Arch:
    """A RegNet: conv3x3 s2 stem (BN, ReLU), generated bottleneck stages each starting with stride 2, GAP + FC."""
    stages = [{"block": "bottleneck", "depth": st.depth, "width": st.width, "stride": 2, "bot_mul": 1.0,
               "group_width": st.group_width, **({"se": se} if se else {})}
              for st in regnet_stages(w_a=w_a, w_0=w_0, w_m=w_m, depth=depth, group_w=group_w)]
    return Arch.from_dict({"stem": {"type": "conv", "width": stem_width, "kernel": 3, "stride": 2},
                           "stages": stages, "head": {"type": "classifier"}})


PAPER = "Radosavovic et al. 2020, Designing Network Design Spaces"


@register_model("regnetx_400mf", "regnet", top1=72.83, paper=PAPER)
def regnetx_400mf() -> Arch:
    """RegNetX-400MF."""
    return regnet(w_a=24.48, w_0=24, w_m=2.54, depth=22, group_w=16)


@register_model("regnetx_800mf", "regnet", top1=75.21, paper=PAPER)
def regnetx_800mf() -> Arch:
    """RegNetX-800MF."""
    return regnet(w_a=35.73, w_0=56, w_m=2.28, depth=16, group_w=16)


@register_model("regnetx_1_6gf", "regnet", top1=77.04, paper=PAPER)
def regnetx_1_6gf() -> Arch:
    """RegNetX-1.6GF."""
    return regnet(w_a=34.01, w_0=80, w_m=2.25, depth=18, group_w=24)


@register_model("regnetx_3_2gf", "regnet", top1=78.36, paper=PAPER)
def regnetx_3_2gf() -> Arch:
    """RegNetX-3.2GF."""
    return regnet(w_a=26.31, w_0=88, w_m=2.25, depth=25, group_w=48)


@register_model("regnety_400mf", "regnet", top1=74.05, paper=PAPER)
def regnety_400mf() -> Arch:
    """RegNetY-400MF: RegNetX with squeeze-excitation."""
    return regnet(w_a=27.89, w_0=48, w_m=2.09, depth=16, group_w=8, se=0.25)


@register_model("regnety_800mf", "regnet", top1=76.42, paper=PAPER)
def regnety_800mf() -> Arch:
    """RegNetY-800MF."""
    return regnet(w_a=38.84, w_0=56, w_m=2.4, depth=14, group_w=16, se=0.25)


@register_model("regnety_1_6gf", "regnet", top1=77.95, paper=PAPER)
def regnety_1_6gf() -> Arch:
    """RegNetY-1.6GF."""
    return regnet(w_a=20.71, w_0=48, w_m=2.65, depth=27, group_w=24, se=0.25)


@register_model("regnety_3_2gf", "regnet", top1=78.95, paper=PAPER)
def regnety_3_2gf() -> Arch:
    """RegNetY-3.2GF."""
    return regnet(w_a=42.63, w_0=80, w_m=2.66, depth=21, group_w=24, se=0.25)
