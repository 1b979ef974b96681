"""Residual blocks: basic (two k×k convs) and bottleneck (1x1 → grouped k×k → 1x1), with SE and shortcut choices.

The bottleneck with `group_width` is also the RegNet X block (bottleneck multiplier 1) and, with `groups`, the
ResNeXt block. `order: pre` makes either a pre-activation block ("identity mappings", ResNetV2): norm → act → conv
inside the branch, nothing after the add, a projecting shortcut fed the pre-activated input; such a network ends
in the head's `prenorm`. Named points: ResNet-18/34/50/101/152, ResNeXt-50/101, Wide ResNet-50/101, ResNetV2-50/101/
152 (timm).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.builder import BuildContext, sequential_stage
from space.errors import SpecError
from space.layers import ConvNormAct, DropPath, SqueezeExcite, act_names, make_act, make_norm, norm_names
from space.params import NONZERO, Params, make_divisible, param, register_family
from space.zoo import register_model

SHORTCUTS = ("projection", "avgpool", "none")
ORDERS = ("post", "pre")
ORDER_DOC = "post: conv → norm → act (ResNet); pre: norm → act → conv (ResNetV2)"
SE_WIDTHS = ("input", "gated")
SE_WIDTH_DOC = ("the SE's reduced width: input: se x the block input width (RegNetY); gated: se x the channels it "
                "gates, rounded to a multiple of 8 (SENet as timm builds it: 8 for 64 channels at se 1/16)")


@dataclass(frozen=True)
class BasicParams(Params):
    """Two k×k convs; the shortcut is identity when shapes match, else `shortcut` (1x1 conv / avgpool + 1x1 conv)."""

    kernel: int = param(3, choices=(1, 3, 5, 7))
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    norm: str = param("batchnorm", choices=norm_names)
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation ratio (see se_width); 0: none. The SE gates "
                      "the output of the last norm, before the shortcut is added")
    shortcut: str = param("projection", choices=SHORTCUTS, doc="none: a plain (shortcut-free) block")
    order: str = param("post", choices=ORDERS, added=True, doc=ORDER_DOC)
    se_width: str = param("input", choices=SE_WIDTHS, when=("se", NONZERO), added=True, doc=SE_WIDTH_DOC)


@dataclass(frozen=True)
class BottleneckParams(Params):
    """1x1 → k×k (stride here, grouped) → 1x1, mid width = round(width · bot_mul); groups or a group width."""

    kernel: int = param(3, choices=(1, 3, 5, 7))
    bot_mul: float = param(0.25, min=0.0625, max=8.0, doc="mid width / output width")
    groups: int = param(1, min=1, doc="groups of the k×k conv (ResNeXt: 32); exclusive with group_width")
    group_width: int = param(0, min=0, doc="channels per group of the k×k conv (RegNet); 0: use groups")
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)))
    norm: str = param("batchnorm", choices=norm_names)
    se: float = param(0.0, min=0.0, max=1.0, doc="squeeze-excitation ratio (see se_width); 0: none")
    shortcut: str = param("projection", choices=SHORTCUTS)
    order: str = param("post", choices=ORDERS, added=True, doc=ORDER_DOC)
    se_at: str = param("mid", choices=("mid", "end"), when=("se", NONZERO), added=True,
                       doc="where the SE gates: mid: the k×k conv's output (RegNetY); end: the output of the last "
                       "norm, before the shortcut is added (SENet)")
    se_width: str = param("input", choices=SE_WIDTHS, when=("se", NONZERO), added=True, doc=SE_WIDTH_DOC)

    def mid(self, w_out: int) -> int:
        """Width of the k×k conv."""
        return int(round(w_out * self.bot_mul))

    def num_groups(self, w_out: int) -> int:
        """Groups of the k×k conv."""
        return self.mid(w_out) // self.group_width if self.group_width else self.groups

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        mid = self.mid(w_out)
        if self.group_width and self.groups != 1:
            raise SpecError("set either groups or group_width, not both", key="groups")
        if self.group_width and mid % self.group_width:
            raise SpecError(f"mid width {mid} (width {w_out} x bot_mul {self.bot_mul}) is not divisible by "
                            f"group_width {self.group_width}", key="group_width")
        if mid % self.groups:
            raise SpecError(f"mid width {mid} (width {w_out} x bot_mul {self.bot_mul}) is not divisible by "
                            f"groups {self.groups}", key="groups")

    def fit(self, *, w_in: int, w_out: int) -> Params:
        mid = self.mid(w_out)
        if self.group_width and mid % self.group_width:
            return dataclasses.replace(self, group_width=math.gcd(mid, self.group_width))
        if mid % self.groups:
            return dataclasses.replace(self, groups=math.gcd(mid, self.groups))
        return self


def make_shortcut(w_in: int, w_out: int, stride: int, kind: str, norm: str) -> nn.Module | None:
    """Identity when shapes match, else a projection: 1x1 strided conv + norm, or avgpool + 1x1 + norm; None: none.

    `norm` 'none' (pre-activation blocks, whose projection reads normalized input) gives a bare conv without bias.
    """
    if kind == "none":
        return None
    if w_in == w_out and stride == 1:
        return nn.Identity()
    conv = ConvNormAct(w_in, w_out, 1, stride if kind == "projection" else 1, norm=norm, act="none",
                       bias=False if norm == "none" else None)
    if kind == "avgpool" and stride > 1:
        return nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False), conv)
    return conv


class ResidualBlock(nn.Module):
    """branch(x) (+ shortcut(x)) → act; the final norm of the branch is zero-initialised when there is a shortcut."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None, act: nn.Module, drop_path: float):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.shortcut is not None:
            out = self.drop_path(out) + self.shortcut(x)
        return self.act(out)


class PreActBlock(nn.Module):
    """norm → act → branch, + the input (identity) or a projection of the normalized input; no act after the add."""

    def __init__(self, pre: nn.Sequential, branch: nn.Sequential, shortcut: nn.Module | None, drop_path: float):
        super().__init__()
        self.pre = pre
        self.branch = branch
        self.shortcut = shortcut
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(x)
        out = self.branch(pre)
        if self.shortcut is None:
            return out
        return self.drop_path(out) + (x if isinstance(self.shortcut, nn.Identity) else self.shortcut(pre))


def last_conv(w_in: int, w_out: int, kernel: int, p: BasicParams | BottleneckParams) -> ConvNormAct:
    """The branch's last conv: conv → norm (post-activation), or a bare conv (pre-activation: a norm follows later)."""
    if p.order == "pre":
        return ConvNormAct(w_in, w_out, kernel, norm="none", act="none", bias=False)
    return ConvNormAct(w_in, w_out, kernel, norm=p.norm, act="none")


def residual_block(w_in: int, w_out: int, stride: int, branch: nn.Sequential, p: BasicParams | BottleneckParams,
                   drop_path: float) -> nn.Module:
    """The branch with its shortcut: post-activation (act after the add) or pre-activation (norm → act first)."""
    if p.order == "pre":
        pre = nn.Sequential(make_norm(p.norm, w_in), make_act(p.act, w_in, n=p.act_n))
        return PreActBlock(pre, branch, make_shortcut(w_in, w_out, stride, p.shortcut, "none"), drop_path)
    return ResidualBlock(branch, make_shortcut(w_in, w_out, stride, p.shortcut, p.norm),
                         make_act(p.act, w_out, n=p.act_n), drop_path)


def se_module(channels: int, w_in: int, p: BasicParams | BottleneckParams) -> list[nn.Module]:
    """The block's squeeze-excitation on `channels` (none when `p.se` is 0), its width by `p.se_width`."""
    if p.se <= 0:
        return []
    if p.se_width == "gated":
        return [SqueezeExcite(channels, make_divisible(channels * p.se, 8, round_limit=0.0))]
    return [SqueezeExcite(channels, max(1, int(round(w_in * p.se))))]


@register_family("block", "basic", BasicParams)
def basic_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """ResNet basic blocks: conv-norm-act, conv-norm (SE), + shortcut, act; or their pre-activation form."""
    p: BasicParams = stage.params

    def block(w_in: int, w_out: int, stride: int, i: int) -> nn.Module:
        branch = nn.Sequential(
            ConvNormAct(w_in, w_out, p.kernel, stride, norm=p.norm, act=p.act, act_n=p.act_n),
            last_conv(w_out, w_out, p.kernel, p),
            *se_module(w_out, w_in, p),
        )
        return residual_block(w_in, w_out, stride, branch, p, ctx.drop_path(i))

    return sequential_stage(w_in, stage, ctx, block)


@register_family("block", "bottleneck", BottleneckParams)
def bottleneck_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """Bottleneck blocks: 1x1 reduce, grouped k×k (stride), (SE), 1x1 expand, (SE), + shortcut, act; or pre-act."""
    p: BottleneckParams = stage.params

    def block(w_in: int, w_out: int, stride: int, i: int) -> nn.Module:
        mid = p.mid(w_out)
        branch = nn.Sequential(
            ConvNormAct(w_in, mid, 1, norm=p.norm, act=p.act, act_n=p.act_n),
            ConvNormAct(mid, mid, p.kernel, stride, groups=p.num_groups(w_out), norm=p.norm, act=p.act,
                        act_n=p.act_n),
            *(se_module(mid, w_in, p) if p.se_at == "mid" else []),
            last_conv(mid, w_out, 1, p),
            *(se_module(w_out, w_in, p) if p.se_at == "end" else []),
        )
        return residual_block(w_in, w_out, stride, branch, p, ctx.drop_path(i))

    return sequential_stage(w_in, stage, ctx, block)


def init_residual(model: nn.Module) -> None:
    """Zero each residual branch's last norm scale (its last conv in pre-activation blocks) — used by trainers."""
    for m in model.modules():
        if not isinstance(m, (ResidualBlock, PreActBlock)) or m.shortcut is None:
            continue
        last = next((b for b in reversed(m.branch) if isinstance(b, ConvNormAct)), None)  # an SE may follow it
        if isinstance(m, ResidualBlock) and isinstance(getattr(last, "bn", None), nn.BatchNorm2d):
            nn.init.zeros_(last.bn.weight)
        elif isinstance(m, PreActBlock) and last is not None:
            nn.init.zeros_(last.conv.weight)


# -- named points ---------------------------------------------------------------------------------------------------
RESNET_STEM = {"type": "conv", "width": 64, "kernel": 7, "stride": 2, "pool": "max"}


def resnet(depths: tuple[int, ...], *, block: str = "basic", widths: tuple[int, ...] = (64, 128, 256, 512),
           expansion: int = 1, **block_params: object) -> Arch:
    """A torchvision-style ResNet: 7x7 stem + max pool, stages at stride 1,2,2,2, GAP + Linear."""
    stages = [{"block": block, "depth": d, "width": w * expansion, "stride": 1 if i == 0 else 2, **block_params}
              for i, (d, w) in enumerate(zip(depths, widths))]
    return Arch.from_dict({"stem": RESNET_STEM, "stages": stages, "head": {"type": "classifier"}})


@register_model("resnet18", "resnet", top1=69.76, paper="He et al. 2016, Deep Residual Learning")
def resnet18() -> Arch:
    """ResNet-18."""
    return resnet((2, 2, 2, 2))


@register_model("resnet34", "resnet", top1=73.31, paper="He et al. 2016, Deep Residual Learning")
def resnet34() -> Arch:
    """ResNet-34."""
    return resnet((3, 4, 6, 3))


@register_model("resnet50", "resnet", top1=76.13, paper="He et al. 2016, Deep Residual Learning")
def resnet50() -> Arch:
    """ResNet-50."""
    return resnet((3, 4, 6, 3), block="bottleneck", expansion=4)


@register_model("resnet101", "resnet", top1=77.37, paper="He et al. 2016, Deep Residual Learning")
def resnet101() -> Arch:
    """ResNet-101."""
    return resnet((3, 4, 23, 3), block="bottleneck", expansion=4)


@register_model("resnet152", "resnet", top1=78.31, paper="He et al. 2016, Deep Residual Learning")
def resnet152() -> Arch:
    """ResNet-152."""
    return resnet((3, 8, 36, 3), block="bottleneck", expansion=4)


@register_model("resnext50_32x4d", "resnet", top1=77.62, paper="Xie et al. 2017, Aggregated Residual Transformations")
def resnext50_32x4d() -> Arch:
    """ResNeXt-50 32x4d: mid width 2x the ResNet-50 one, 32 groups."""
    return resnet((3, 4, 6, 3), block="bottleneck", expansion=4, bot_mul=0.5, groups=32)


@register_model("resnext101_32x8d", "resnet", top1=79.31, paper="Xie et al. 2017, Aggregated Residual Transformations")
def resnext101_32x8d() -> Arch:
    """ResNeXt-101 32x8d."""
    return resnet((3, 4, 23, 3), block="bottleneck", expansion=4, bot_mul=1.0, groups=32)


@register_model("wide_resnet50_2", "resnet", top1=78.47, paper="Zagoruyko & Komodakis 2016, Wide Residual Networks")
def wide_resnet50_2() -> Arch:
    """Wide ResNet-50-2: twice the mid width."""
    return resnet((3, 4, 6, 3), block="bottleneck", expansion=4, bot_mul=0.5)


# -- pre-activation named points (timm's ResNetV2: bare 7x7 stem conv, pre-activation bottlenecks, final norm) -------
PREACT_STEM = {**RESNET_STEM, "preact": True}
RESNETV2_PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks"


def resnetv2(depths: tuple[int, ...]) -> Arch:
    """A timm ResNetV2: pre-activation bottleneck stages, the final norm → act and a 1x1-conv classifier in the head."""
    arch = resnet(depths, block="bottleneck", expansion=4, order="pre")
    return Arch.from_dict({**arch.to_dict(), "stem": PREACT_STEM,
                           "head": {"type": "classifier", "prenorm": "batchnorm", "conv_fc": True}})


@register_model("resnetv2_50", "resnet", paper=RESNETV2_PAPER)
def resnetv2_50() -> Arch:
    """ResNetV2-50 (timm)."""
    return resnetv2((3, 4, 6, 3))


@register_model("resnetv2_101", "resnet", paper=RESNETV2_PAPER)
def resnetv2_101() -> Arch:
    """ResNetV2-101 (timm)."""
    return resnetv2((3, 4, 23, 3))


@register_model("resnetv2_152", "resnet", paper=RESNETV2_PAPER)
def resnetv2_152() -> Arch:
    """ResNetV2-152 (timm)."""
    return resnetv2((3, 8, 36, 3))


# -- squeeze-and-excitation named points (timm's seresnet*/seresnext*: an SE in every block, after its last norm) ---
SENET_PAPER = "Hu et al. 2018, Squeeze-and-Excitation Networks"
SENET_RELEASED = f"{SENET_PAPER} (the authors' released models, 224 px single crop)"
SE = {"se": 1 / 16, "se_at": "end", "se_width": "gated"}  # r = C/16 rounded to a multiple of 8, as timm's SEModule


def seresnet(depths: tuple[int, ...], **block_params: object) -> Arch:
    """A timm SE-ResNet/SE-ResNeXt: the torchvision layout, every block gating its output before the add."""
    bottleneck = block_params.get("block", "basic") == "bottleneck"
    se = SE if bottleneck else {k: v for k, v in SE.items() if k != "se_at"}  # basic blocks always gate at the end
    return resnet(depths, **block_params, **se)  # type: ignore[arg-type]


@register_model("seresnet18", "resnet", paper=f"{SENET_PAPER} (timm's seresnet18; no published ImageNet weights)")
def seresnet18() -> Arch:
    """SE-ResNet-18 (timm)."""
    return seresnet((2, 2, 2, 2))


@register_model("seresnet34", "resnet", paper=f"{SENET_PAPER} (timm's seresnet34; no published ImageNet weights)")
def seresnet34() -> Arch:
    """SE-ResNet-34 (timm)."""
    return seresnet((3, 4, 6, 3))


@register_model("seresnet50", "resnet", top1=77.63, paper=SENET_RELEASED)
def seresnet50() -> Arch:
    """SE-ResNet-50."""
    return seresnet((3, 4, 6, 3), block="bottleneck", expansion=4)


@register_model("seresnet101", "resnet", top1=78.25, paper=SENET_RELEASED)
def seresnet101() -> Arch:
    """SE-ResNet-101."""
    return seresnet((3, 4, 23, 3), block="bottleneck", expansion=4)


@register_model("seresnet152", "resnet", top1=78.66, paper=SENET_RELEASED)
def seresnet152() -> Arch:
    """SE-ResNet-152."""
    return seresnet((3, 8, 36, 3), block="bottleneck", expansion=4)


@register_model("seresnext50_32x4d", "resnet", top1=79.03, paper=SENET_RELEASED)
def seresnext50_32x4d() -> Arch:
    """SE-ResNeXt-50 32x4d."""
    return seresnet((3, 4, 6, 3), block="bottleneck", expansion=4, bot_mul=0.5, groups=32)


@register_model("seresnext101_32x4d", "resnet", top1=80.19, paper=SENET_RELEASED)
def seresnext101_32x4d() -> Arch:
    """SE-ResNeXt-101 32x4d."""
    return seresnet((3, 4, 23, 3), block="bottleneck", expansion=4, bot_mul=0.5, groups=32)
