"""Plain (shortcut-free) stages: `depth` k×k conv-norm-act layers, downsampling by a pool after them or a strided conv.

Stage `stride` is the stage's downsampling factor. With `down: maxpool` / `avgpool` (the classic style) every conv
has stride 1 and a `pool_kernel`×`pool_kernel` pool of stride `stride` follows the convs (floor mode, no padding);
a stride-1 stage has no pool. With `down: conv` the first conv carries the stride instead.
Named points: AlexNet (torchvision's variant) and VGG-11/13/16/19 with and without BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from space.arch import Arch, Stage
from space.builder import BuildContext
from space.errors import SpecError
from space.layers import ConvNormAct, act_names, norm_names
from space.params import Params, param, register_family
from space.zoo import register_model

POOLS = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}


@dataclass(frozen=True)
class PlainParams(Params):
    """k×k conv → norm → act, `depth` times; then the downsampling pool (or a strided first conv)."""

    kernel: int = param(3, choices=(1, 3, 5, 7, 11))
    norm: str = param("batchnorm", choices=norm_names)
    bias: bool = param(False, when=("norm", ("batchnorm", "layernorm")),
                       doc="conv bias despite the norm (VGG-BN keeps it); always on without a norm")
    act: str = param("relu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    down: str = param("maxpool", choices=("maxpool", "avgpool", "conv"),
                      doc="how a stride > 1 is realised: a pool after the convs, or the first conv's stride")
    pool_kernel: int = param(2, min=1, max=7, when=("down", ("maxpool", "avgpool")),
                             doc="pool window (VGG 2, AlexNet 3); its stride is the stage stride")

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if self.down != "conv" and stride > 1 and self.pool_kernel < stride:
            raise SpecError(f"pool window {self.pool_kernel} is smaller than the stage stride {stride}, so the pool "
                            "would skip pixels", key="pool_kernel", hint=f"use a pool_kernel of at least {stride}")


@register_family("block", "plain", PlainParams)
def plain_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """`depth` conv-norm-act layers, then a stride-`stride` pool (or the first conv strided)."""
    p: PlainParams = stage.params
    conv_stride = stage.stride if p.down == "conv" else 1
    layers: list[nn.Module] = []
    for i in range(stage.depth):
        layers.append(ConvNormAct(w_in if i == 0 else stage.width, stage.width, p.kernel, conv_stride if i == 0 else 1,
                                  norm=p.norm, act=p.act, bias=p.bias or p.norm == "none", act_n=p.act_n))
    if p.down != "conv" and stage.stride > 1:
        layers.append(POOLS[p.down](p.pool_kernel, stage.stride))
    return nn.Sequential(*layers)


# -- named points ---------------------------------------------------------------------------------------------------
VGG_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks"


def vgg(layers: int, *, bn: bool = False) -> Arch:
    """VGG-`layers`: no stem, five 3x3 plain stages (widths 64..512) each ending in a 2/2 max pool, MLP head."""
    norm = {"norm": "batchnorm", "bias": True} if bn else {"norm": "none"}
    stages = [{"block": "plain", "depth": d, "width": w, "stride": 2, **norm}
              for d, w in zip(VGG_DEPTHS[layers], (64, 128, 256, 512, 512))]
    return Arch.from_dict({"stem": {"type": "none", "width": 3}, "stages": stages, "head": {"type": "mlp"}})


@register_model("vgg11", "plain", top1=69.02, paper=VGG_PAPER)
def vgg11() -> Arch:
    """VGG-11."""
    return vgg(11)


@register_model("vgg11_bn", "plain", top1=70.37, paper=VGG_PAPER)
def vgg11_bn() -> Arch:
    """VGG-11 with BatchNorm."""
    return vgg(11, bn=True)


@register_model("vgg13", "plain", top1=69.93, paper=VGG_PAPER)
def vgg13() -> Arch:
    """VGG-13."""
    return vgg(13)


@register_model("vgg13_bn", "plain", top1=71.59, paper=VGG_PAPER)
def vgg13_bn() -> Arch:
    """VGG-13 with BatchNorm."""
    return vgg(13, bn=True)


@register_model("vgg16", "plain", top1=71.59, paper=VGG_PAPER)
def vgg16() -> Arch:
    """VGG-16."""
    return vgg(16)


@register_model("vgg16_bn", "plain", top1=73.36, paper=VGG_PAPER)
def vgg16_bn() -> Arch:
    """VGG-16 with BatchNorm."""
    return vgg(16, bn=True)


@register_model("vgg19", "plain", top1=72.38, paper=VGG_PAPER)
def vgg19() -> Arch:
    """VGG-19."""
    return vgg(19)


@register_model("vgg19_bn", "plain", top1=74.22, paper=VGG_PAPER)
def vgg19_bn() -> Arch:
    """VGG-19 with BatchNorm."""
    return vgg(19, bn=True)


@register_model("alexnet", "plain", top1=56.52, paper="Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs")
def alexnet() -> Arch:
    """AlexNet as in torchvision: 11x11/4 conv stem + 3/2 max pool, plain stages pooled 3/2, dropout-first MLP head."""
    plain = {"block": "plain", "norm": "none", "pool_kernel": 3}
    return Arch.from_dict({
        "stem": {"type": "conv", "width": 64, "kernel": 11, "stride": 4, "padding": 2, "norm": "none",
                 "pool": "max", "pool_kernel": 3, "pool_stride": 2, "pool_padding": 0},
        "stages": [{**plain, "depth": 1, "width": 192, "stride": 2, "kernel": 5},
                   {**plain, "depth": 1, "width": 384, "stride": 1},
                   {**plain, "depth": 2, "width": 256, "stride": 2}],
        "head": {"type": "mlp", "pool": 6, "dropout_first": True},
    })
