"""Head families: from the last feature map to logits. Every head names its final layer `fc`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Head
from space.builder import BuildContext
from space.layers import ConvNormAct, act_names, make_act, make_norm, norm_names
from space.params import Params, param, register_family


class HeadBase(nn.Module):
    """Shared classifier handling: `fc` is a Linear (or Identity when num_classes is 0)."""

    fc: nn.Module
    num_features: int

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier."""
        self.fc = self._make_fc(num_classes).to(next(self.parameters(), torch.empty(0)).device)

    def get_classifier(self) -> nn.Module:
        """The final layer."""
        return self.fc


@dataclass(frozen=True)
class ClassifierParams(Params):
    """Global average pool → (norm) → dropout → Linear (ResNet, RegNet, ConvNeXt with a LayerNorm)."""

    norm: str = param("none", choices=norm_names, doc="norm on the pooled features (ConvNeXt: layernorm)")
    norm_eps: float = param(1e-6, min=0.0)
    dropout: float = param(0.0, min=0.0, max=1.0)


class ClassifierHead(HeadBase):
    """GAP → norm → dropout → fc."""

    def __init__(self, w_in: int, p: ClassifierParams, num_classes: int, drop_rate: float | None):
        super().__init__()
        self.num_features = w_in
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = make_norm(p.norm, w_in, p.norm_eps)
        self.drop = nn.Dropout(p.dropout if drop_rate is None else drop_rate)
        self.fc = self._make_fc(num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.pool(x)).flatten(1)
        return x if pre_logits else self.fc(self.drop(x))


@register_family("head", "classifier", ClassifierParams)
def classifier_head(w_in: int, head: Head, ctx: BuildContext) -> nn.Module:
    """GAP → norm → dropout → Linear."""
    return ClassifierHead(w_in, head.params, ctx.num_classes, ctx.drop_rate)


@dataclass(frozen=True)
class MLPHeadParams(Params):
    """Adaptive average pool to `pool`×`pool`, flatten, `layers` hidden Linear+ReLU with dropout, Linear (VGG)."""

    pool: int = param(7, min=1, max=14)
    hidden: int = param(4096, min=1, channels=True)
    layers: int = param(2, min=0, max=4)
    dropout: float = param(0.5, min=0.0, max=1.0)
    dropout_first: bool = param(False, doc="dropout before each hidden Linear (AlexNet) instead of after (VGG)")


class MLPHead(HeadBase):
    """Pool → flatten → [Linear, ReLU, Dropout] × layers → fc."""

    def __init__(self, w_in: int, p: MLPHeadParams, num_classes: int, drop_rate: float | None):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(p.pool)
        rate = p.dropout if drop_rate is None else drop_rate
        layers: list[nn.Module] = []
        w = w_in * p.pool * p.pool
        for _ in range(p.layers):
            block = [nn.Linear(w, p.hidden), nn.ReLU(inplace=True)]
            layers += [nn.Dropout(rate), *block] if p.dropout_first else [*block, nn.Dropout(rate)]
            w = p.hidden
        self.hidden = nn.Sequential(*layers)
        self.drop = nn.Dropout(rate) if p.dropout_first and p.layers == 0 else nn.Identity()
        self.num_features = w
        self.fc = self._make_fc(num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(self.drop(x))


@register_family("head", "mlp", MLPHeadParams)
def mlp_head(w_in: int, head: Head, ctx: BuildContext) -> nn.Module:
    """Pool → flatten → hidden Linear layers → Linear."""
    return MLPHead(w_in, head.params, ctx.num_classes, ctx.drop_rate)


@dataclass(frozen=True)
class ConvHeadParams(Params):
    """1x1 conv → norm → act to `width`, GAP, optional 1x1 conv (bias) → act to `hidden`, dropout, Linear.

    MobileNetV2: width 1280, no hidden. GhostNet: width 960, hidden 1280.
    """

    width: int = param(1280, min=1, channels=True)
    norm: str = param("batchnorm", choices=norm_names)
    act: str = param("relu", choices=act_names)
    hidden: int = param(0, min=0, channels=True, doc="0: no pooled 1x1 conv")
    dropout: float = param(0.2, min=0.0, max=1.0)


class ConvHead(HeadBase):
    """conv1x1-norm-act → GAP → (conv1x1-act) → dropout → fc."""

    def __init__(self, w_in: int, p: ConvHeadParams, num_classes: int, drop_rate: float | None):
        super().__init__()
        self.conv = ConvNormAct(w_in, p.width, 1, norm=p.norm, act=p.act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if p.hidden:
            self.hidden = nn.Sequential(nn.Conv2d(p.width, p.hidden, 1, bias=True), make_act(p.act, p.hidden))
            self.num_features = p.hidden
        else:
            self.hidden = nn.Identity()
            self.num_features = p.width
        self.drop = nn.Dropout(p.dropout if drop_rate is None else drop_rate)
        self.fc = self._make_fc(num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.pool(self.conv(x))).flatten(1)
        return x if pre_logits else self.fc(self.drop(x))


@register_family("head", "conv", ConvHeadParams)
def conv_head(w_in: int, head: Head, ctx: BuildContext) -> nn.Module:
    """1x1 conv head (MobileNet/GhostNet style)."""
    return ConvHead(w_in, head.params, ctx.num_classes, ctx.drop_rate)
