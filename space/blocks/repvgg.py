"""RepVGG: a k×k conv+BN ‖ 1x1 conv+BN ‖ identity BN block that deploys as one k×k conv with bias.

The training block sums three linear branches (the identity branch only when the shapes match), so in eval mode
the sum is itself one convolution: each branch's BN folds into its kernel, the 1x1 kernel is zero-padded to k×k and
the identity becomes a centred one-hot kernel. The RepVGG stem is the same block (3 → w, stride 2), registered as the
stem family `repvgg`. Named points: RepVGG-A0/A1/A2, B0 and B1g4 (timm's layout: stem, then four stages of depth
2,4,14,1 or 4,6,16,1 at widths 64,128,256,512 times the stage width factors, each stage starting with stride 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from space.arch import Arch, Stage, Stem
from space.builder import BuildContext, sequential_stage
from space.errors import SpecError
from space.layers import ConvNormAct, DropPath, SqueezeExcite, act_names, conv_bn_weights, make_act
from space.params import Params, param, register_family
from space.zoo import register_model


class RepVGGBlock(nn.Module):
    """act(se(BN(conv k×k) + BN(conv 1x1) + BN(x))); `reparameterize()` merges the branches into `fused`."""

    def __init__(self, w_in: int, w_out: int, stride: int = 1, *, kernel: int = 3, groups: int = 1,
                 identity: bool = True, act: str = "relu", act_n: int = 3, se: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.fused: nn.Conv2d | None = None
        self.conv_kxk = ConvNormAct(w_in, w_out, kernel, stride, groups=groups, act="none")
        self.conv_1x1 = ConvNormAct(w_in, w_out, 1, stride, groups=groups, act="none")
        use_identity = identity and w_in == w_out and stride == 1
        self.identity = nn.BatchNorm2d(w_out) if use_identity else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 and use_identity else nn.Identity()
        self.se = SqueezeExcite(w_out, max(1, round(w_out * se))) if se > 0 else nn.Identity()
        self.act = make_act(act, w_out, n=act_n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.se(self.fused(x)))
        out = self.conv_kxk(x) + self.conv_1x1(x)
        if self.identity is not None:
            out = self.drop_path(out) + self.identity(x)
        return self.act(self.se(out))

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the one k×k conv equal (in eval mode) to the sum of the three branches."""
        conv = self.conv_kxk.conv
        k = conv.kernel_size[0]
        weight, bias = conv_bn_weights(conv.weight, None, self.conv_kxk.bn)
        w1, b1 = conv_bn_weights(self.conv_1x1.conv.weight, None, self.conv_1x1.bn)
        weight, bias = weight + F.pad(w1, [k // 2] * 4), bias + b1
        if self.identity is not None:
            # Channel c of group g reads input channel c, which is local index c mod (channels per group).
            eye = torch.zeros_like(weight)
            c = torch.arange(weight.shape[0], device=weight.device)
            eye[c, c % weight.shape[1], k // 2, k // 2] = 1.0
            wi, bi = conv_bn_weights(eye, None, self.identity)
            weight, bias = weight + wi, bias + bi
        return weight, bias

    def reparameterize(self) -> None:
        """Replace the three branches by one k×k conv with bias (exact in eval mode); fuse the activation too."""
        if self.fused is None:
            conv = self.conv_kxk.conv
            weight, bias = self.merged_kernel()
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              groups=conv.groups, bias=True, device=weight.device, dtype=weight.dtype)
            fused.weight.data.copy_(weight.detach())
            fused.bias.data.copy_(bias.detach())
            self.fused = fused
            del self.conv_kxk, self.conv_1x1, self.identity, self.drop_path
        if hasattr(self.act, "reparameterize"):
            self.act.reparameterize()


# -- block family ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RepVGGParams(Params):
    """RepVGG blocks: k×k ‖ 1x1 ‖ identity-BN branches summed, (SE), act; stride in the first block of the stage."""

    kernel: int = param(3, choices=(3, 5, 7), doc="kernel of the main branch (the 1x1 and identity fold into it)")
    groups: int = param(1, min=1, doc="groups of both conv branches")
    alt_groups: bool = param(False, doc="group only the odd-indexed blocks of each stage (RepVGG g2/g4 models)")
    identity: bool = param(True, doc="identity-BN branch in blocks whose input and output shapes match")
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation ratio of the block width; 0: none")

    def _grouped_widths(self, w_in: int, w_out: int) -> tuple[int, ...]:
        # With alt_groups the first (width-changing) block is never grouped.
        return (w_out,) if self.alt_groups else (w_in, w_out)

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        for w in self._grouped_widths(w_in, w_out):
            if w % self.groups:
                raise SpecError(f"width {w} is not divisible by groups {self.groups}", key="groups")

    def fit(self, *, w_in: int, w_out: int) -> Params:
        g = self.groups
        for w in self._grouped_widths(w_in, w_out):
            g = math.gcd(g, w)
        return replace(self, groups=g) if g != self.groups else self


@register_family("block", "repvgg", RepVGGParams)
def repvgg_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """RepVGG blocks (3x3+BN ‖ 1x1+BN ‖ identity BN → act), deployable as plain k×k convs."""
    p: RepVGGParams = stage.params

    def block(w_in: int, w_out: int, stride: int, i: int) -> nn.Module:
        groups = p.groups if not p.alt_groups or i % 2 == 1 else 1
        return RepVGGBlock(w_in, w_out, stride, kernel=p.kernel, groups=groups, identity=p.identity, act=p.act,
                           act_n=p.act_n, se=p.se, drop_path=ctx.drop_path(i))

    return sequential_stage(w_in, stage, ctx, block)


# -- stem family ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RepVGGStemParams(Params):
    """One RepVGG block from the image (k×k ‖ 1x1 branches, strided; no identity since the widths differ)."""

    kernel: int = param(3, choices=(3, 5, 7))
    stride: int = param(2, min=1, max=4)
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")

    def reduction(self) -> int:
        """Spatial downsampling of the stem."""
        return self.stride


@register_family("stem", "repvgg", RepVGGStemParams)
def repvgg_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """A RepVGG block from the image to the stem width (RepVGG, MobileOne-style stems)."""
    p: RepVGGStemParams = stem.params
    return RepVGGBlock(in_chans, stem.width, p.stride, kernel=p.kernel, act=p.act, act_n=p.act_n)


# -- named points ---------------------------------------------------------------------------------------------------
BASE_WIDTHS = (64, 128, 256, 512)
PAPER = "Ding et al. 2021, RepVGG: Making VGG-style ConvNets Great Again"


def repvgg(depths: tuple[int, ...], width_factors: tuple[float, ...], stem_width: int, groups: int = 1) -> Arch:
    """RepVGG: a RepVGG-block stem (s2), then stages of RepVGG blocks at 64,128,256,512 × width factors, each s2.

    `groups` > 1 groups every other block of each stage (the gN models).
    """
    block = {"block": "repvgg", "groups": groups, "alt_groups": True} if groups > 1 else {"block": "repvgg"}
    stages = [{**block, "depth": d, "width": int(w * f), "stride": 2}
              for d, w, f in zip(depths, BASE_WIDTHS, width_factors)]
    return Arch.from_dict({"stem": {"type": "repvgg", "width": stem_width}, "stages": stages,
                           "head": {"type": "classifier"}})


@register_model("repvgg_a0", "repvgg", top1=72.41, paper=PAPER)
def repvgg_a0() -> Arch:
    """RepVGG-A0."""
    return repvgg((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5), 48)


@register_model("repvgg_a1", "repvgg", top1=74.46, paper=PAPER)
def repvgg_a1() -> Arch:
    """RepVGG-A1."""
    return repvgg((2, 4, 14, 1), (1, 1, 1, 2.5), 64)


@register_model("repvgg_a2", "repvgg", top1=76.48, paper=PAPER)
def repvgg_a2() -> Arch:
    """RepVGG-A2."""
    return repvgg((2, 4, 14, 1), (1.5, 1.5, 1.5, 2.75), 64)


@register_model("repvgg_b0", "repvgg", top1=75.14, paper=PAPER)
def repvgg_b0() -> Arch:
    """RepVGG-B0."""
    return repvgg((4, 6, 16, 1), (1, 1, 1, 2.5), 64)


@register_model("repvgg_b1g4", "repvgg", top1=77.58, paper=PAPER)
def repvgg_b1g4() -> Arch:
    """RepVGG-B1g4: B1 widths with 4 groups in every other block."""
    return repvgg((4, 6, 16, 1), (2, 2, 2, 4), 64, groups=4)
