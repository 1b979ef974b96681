"""Dense connectivity (DenseNet): every layer of a dense block reads the concatenation of all earlier feature maps.

A `dense` stage of `depth` layers adds `growth` channels per layer: norm → act → 1x1 conv to bot_mul·growth → norm →
act → k×k conv to `growth`, whose output is concatenated to the layer's input. A stage with stride > 1 starts with a
transition: norm → act → 1x1 conv to floor(compression · w_in) → average pool of that stride. The stage width is not
chosen but derived: (the transition's width, or w_in) + depth · growth. Layers are pre-activated, so a dense network
ends in the head's `prenorm`. Deploy folds the norm after each 1x1 conv into it; the pre-activation norms stay.
Named points: DenseNet-121/161/169/201 (torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.blocks.resnet import RESNET_STEM
from space.builder import BuildContext
from space.layers import ConvNormAct, act_names, make_act, make_norm, norm_names
from space.params import Params, param, register_family
from space.zoo import register_model


@dataclass(frozen=True)
class DenseParams(Params):
    """Dense layers adding `growth` channels each; a compressing transition first when the stage downsamples."""

    growth: int = param(32, min=1, channels=True, doc="channels each layer adds (the growth rate k)")
    bot_mul: float = param(4.0, min=0.0, max=8.0, doc="1x1 bottleneck width / growth (DenseNet-B: 4); 0: none")
    compression: float = param(0.5, min=0.1, max=1.0, doc="transition width / its input width (DenseNet-C: 0.5)")
    kernel: int = param(3, choices=(3, 5, 7))
    act: str = param("relu", choices=act_names)
    norm: str = param("batchnorm", choices=norm_names)

    derived_keys = ("width",)

    def mid(self) -> int:
        """Width of a layer's 1x1 bottleneck conv (0: none)."""
        return int(round(self.bot_mul * self.growth))

    def transition_width(self, w_in: int) -> int:
        """Output channels of the transition on `w_in` channels."""
        return max(1, int(w_in * self.compression))

    def out_width(self, *, w_in: int, depth: int, stride: int) -> int:
        return (self.transition_width(w_in) if stride > 1 else w_in) + depth * self.growth


def _pre(p: DenseParams, channels: int) -> list[nn.Module]:
    return [make_norm(p.norm, channels), make_act(p.act, channels)]


class DenseLayer(nn.Module):
    """norm → act → (1x1 conv-norm-act) → k×k conv; the new `growth` channels are appended to the input."""

    def __init__(self, w_in: int, p: DenseParams):
        super().__init__()
        mid = p.mid()
        convs: list[nn.Module] = [ConvNormAct(w_in, mid, 1, norm=p.norm, act=p.act)] if mid else []
        convs.append(ConvNormAct(mid or w_in, p.growth, p.kernel, norm="none", act="none", bias=False))
        self.layers = nn.Sequential(*_pre(p, w_in), *convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


@register_family("block", "dense", DenseParams)
def dense_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """(Transition when downsampling) → `depth` dense layers."""
    p: DenseParams = stage.params
    layers: list[nn.Module] = []
    if stage.stride > 1:
        w_out = p.transition_width(w_in)
        layers.append(nn.Sequential(*_pre(p, w_in), ConvNormAct(w_in, w_out, 1, norm="none", act="none", bias=False),
                                    nn.AvgPool2d(stage.stride, stage.stride)))
        w_in = w_out
    for _ in range(stage.depth):
        layers.append(DenseLayer(w_in, p))
        w_in += p.growth
    return nn.Sequential(*layers)


# -- named points ---------------------------------------------------------------------------------------------------
PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks"


def densenet(depths: tuple[int, ...], *, growth: int = 32, stem_width: int = 64) -> Arch:
    """A torchvision DenseNet-BC: ResNet's stem, dense stages with transitions (compression 0.5), final norm."""
    stages = [{"block": "dense", "depth": d, "stride": 1 if i == 0 else 2, "growth": growth}
              for i, d in enumerate(depths)]
    return Arch.from_dict({"stem": {**RESNET_STEM, "width": stem_width}, "stages": stages,
                           "head": {"type": "classifier", "prenorm": "batchnorm"}})


@register_model("densenet121", "densenet", top1=74.43, paper=PAPER)
def densenet121() -> Arch:
    """DenseNet-121."""
    return densenet((6, 12, 24, 16))


@register_model("densenet161", "densenet", top1=77.14, paper=PAPER)
def densenet161() -> Arch:
    """DenseNet-161: growth 48, a 96-wide stem."""
    return densenet((6, 12, 36, 24), growth=48, stem_width=96)


@register_model("densenet169", "densenet", top1=75.60, paper=PAPER)
def densenet169() -> Arch:
    """DenseNet-169."""
    return densenet((6, 12, 32, 32))


@register_model("densenet201", "densenet", top1=76.90, paper=PAPER)
def densenet201() -> Arch:
    """DenseNet-201."""
    return densenet((6, 12, 48, 32))
