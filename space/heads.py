"""Head families: from the last feature map to logits. Every head names its final layer `fc`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from space.arch import Head
from space.builder import BuildContext
from space.errors import SpecError
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


AUX_KINDS = ("none", "fc", "conv")
AUX_EPS = 1e-3  # the Inception papers' BatchNorm epsilon, kept by their auxiliary classifiers


@dataclass(frozen=True)
class ClassifierParams(Params):
    """(Norm → act) → global average pool → (norm) → dropout → Linear; optional training-only auxiliary classifiers.

    ResNet, RegNet; ConvNeXt with a LayerNorm after pooling; ResNetV2 and DenseNet with their final norm before it;
    GoogLeNet (two 'fc' auxiliary classifiers) and Inception-v3 (one 'conv' auxiliary classifier); SqueezeNet with
    the classifier on the map (`fc_on: map`), its class maps activated, then pooled.
    """

    norm: str = param("none", choices=norm_names, doc="norm on the pooled features (ConvNeXt: layernorm)")
    norm_eps: float = param(1e-6, min=0.0)
    dropout: float = param(0.0, min=0.0, max=1.0)
    prenorm: str = param("none", choices=norm_names, added=True,
                         doc="norm → act on the feature map before pooling: the final norm of pre-activation nets")
    prenorm_act: str = param("relu", choices=act_names, when=("prenorm", ("batchnorm", "layernorm")), added=True)
    conv_fc: bool = param(False, added=True, doc="the classifier as a 1x1 conv on the pooled map (timm's ResNetV2); "
                          "the same function as the Linear")
    aux: str = param("none", choices=AUX_KINDS, added=True,
                     doc="auxiliary classifiers (training form only): 'fc' as GoogLeNet's, 'conv' as Inception-v3's")
    aux_at: tuple[int, ...] = param((), min=0, when=("aux", ("fc", "conv")), added=True,
                                    doc="indices of the stages whose outputs feed an auxiliary classifier")
    aux_width: int = param(128, min=1, channels=True, when=("aux", ("fc", "conv")), added=True,
                           doc="width of the auxiliary classifier's 1x1 conv")
    aux_hidden: int = param(1024, min=1, channels=True, when=("aux", ("fc", "conv")), added=True,
                            doc="fc: hidden Linear width (GoogLeNet 1024); conv: 5x5 conv width (Inception-v3 768)")
    aux_grid: int = param(4, min=1, max=8, when=("aux", ("fc",)), added=True,
                          doc="fc: the stage output is average-pooled to aux_grid x aux_grid")
    aux_dropout: float = param(0.7, min=0.0, max=1.0, when=("aux", ("fc",)), added=True)
    aux_weight: float = param(0.3, min=0.0, max=1.0, when=("aux", ("fc", "conv")), added=True,
                              doc="loss weight of each auxiliary classifier (GoogLeNet 0.3, Inception-v3 0.4)")
    fc_on: str = param("pooled", choices=("pooled", "map"), added=True,
                       doc="pooled: the classifier reads the pooled features; map: it is a 1x1 conv on the whole "
                       "feature map, pooled after fc_act (SqueezeNet: dropout, 1x1 conv, ReLU, average pool)")
    fc_act: str = param("none", choices=act_names, when=("fc_on", ("map",)), added=True,
                        doc="activation of the class maps before they are pooled (SqueezeNet: relu)")

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if self.fc_on == "map" and self.norm != "none":
            raise SpecError(f"a norm on the pooled features ('{self.norm}') has no place when the classifier reads "
                            "the map (fc_on: map)", key="norm", hint="set norm: none, or fc_on: pooled")
        if self.fc_on == "map" and self.conv_fc:
            raise SpecError("fc_on: map makes the classifier a 1x1 conv already", key="conv_fc",
                            hint="leave conv_fc out")

    def check_stages(self, widths: tuple[int, ...]) -> None:
        if self.aux == "none":
            return
        if not self.aux_at:
            raise SpecError(f"aux '{self.aux}' needs the stages to tap", key="aux_at",
                            hint=f"list stage indices in 0..{len(widths) - 1}, or set aux: none")
        if any(i >= len(widths) for i in self.aux_at):
            raise SpecError(f"{list(self.aux_at)} names a stage beyond the last one ({len(widths) - 1})", key="aux_at")
        if list(self.aux_at) != sorted(set(self.aux_at)):
            raise SpecError(f"{list(self.aux_at)} must be increasing stage indices without repeats", key="aux_at")


class AuxFC(nn.Module):
    """GoogLeNet's auxiliary classifier: average pool to a grid → 1x1 conv-BN-ReLU → Linear → ReLU → dropout → fc."""

    def __init__(self, w_in: int, p: ClassifierParams, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(p.aux_grid)
        self.conv = ConvNormAct(w_in, p.aux_width, 1, eps=AUX_EPS)
        self.hidden = nn.Linear(p.aux_width * p.aux_grid ** 2, p.aux_hidden)
        self.drop = nn.Dropout(p.aux_dropout)
        self.num_features = p.aux_hidden
        self.fc = nn.Linear(p.aux_hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.hidden(self.conv(self.pool(x)).flatten(1)), inplace=True)
        return self.fc(self.drop(x))


class AuxConv(nn.Module):
    """Inception-v3's auxiliary classifier: avg pool 5/3 → 1x1 conv-BN-ReLU → 5x5 conv-BN-ReLU (valid) → GAP → fc.

    On maps smaller than 17x17 (where the 5/3 pool leaves less than the 5x5 conv needs) the pool is adaptive to 5x5,
    so the classifier works at proxy resolutions too; at the reference resolution it is the paper's pool.
    """

    def __init__(self, w_in: int, p: ClassifierParams, num_classes: int):
        super().__init__()
        self.conv0 = ConvNormAct(w_in, p.aux_width, 1, eps=AUX_EPS)
        self.conv1 = ConvNormAct(p.aux_width, p.aux_hidden, 5, padding=0, eps=AUX_EPS)
        self.num_features = p.aux_hidden
        self.fc = nn.Linear(p.aux_hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, 3) if min(x.shape[-2:]) >= 17 else F.adaptive_avg_pool2d(x, 5)
        x = self.conv1(self.conv0(x))
        return self.fc(x.mean((2, 3)))


class AuxHeads(nn.ModuleDict):
    """The auxiliary classifiers, keyed by the index of the stage they read; training-only (deploy drops them)."""

    training_only = True

    def __init__(self, heads: dict[str, nn.Module], weight: float):
        super().__init__(heads)
        self.weight = weight

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


class ClassifierHead(HeadBase):
    """(prenorm → act) → GAP → norm → dropout → fc, or with `fc_on: map` (prenorm → act) → dropout → 1x1 conv fc →
    fc_act → GAP; `aux` holds the auxiliary classifiers of the training form."""

    def __init__(self, w_in: int, p: ClassifierParams, num_classes: int, drop_rate: float | None,
                 stage_widths: tuple[int, ...] = ()):
        super().__init__()
        self.num_features = w_in
        self.prenorm = nn.Sequential(make_norm(p.prenorm, w_in), make_act(p.prenorm_act, w_in)) \
            if p.prenorm != "none" else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = make_norm(p.norm, w_in, p.norm_eps)
        self.drop = nn.Dropout(p.dropout if drop_rate is None else drop_rate)
        self.conv_fc = p.conv_fc or p.fc_on == "map"
        self.on_map = p.fc_on == "map"
        self.fc = self._make_fc(num_classes)
        self.fc_act = make_act(p.fc_act) if self.on_map else nn.Identity()
        self.aux: AuxHeads | None = None
        if p.aux != "none":
            kind = AuxFC if p.aux == "fc" else AuxConv
            self.aux = AuxHeads({str(i): kind(stage_widths[i], p, num_classes) for i in p.aux_at}, p.aux_weight)

    def _make_fc(self, num_classes: int) -> nn.Module:
        if self.conv_fc and num_classes > 0:
            return nn.Conv2d(self.num_features, num_classes, 1)
        return super()._make_fc(num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.on_map and not pre_logits and not isinstance(self.fc, nn.Identity):
            return self.pool(self.fc_act(self.fc(self.drop(self.prenorm(x))))).flatten(1)
        x = self.norm(self.pool(self.prenorm(x)))
        if pre_logits:
            return x.flatten(1)
        return self.fc(self.drop(x)).flatten(1) if self.conv_fc else self.fc(self.drop(x.flatten(1)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier and those of the auxiliary heads."""
        super().reset_classifier(num_classes)
        device = next(self.parameters(), torch.empty(0)).device
        for aux in (self.aux or {}).values():
            aux.fc = (nn.Linear(aux.num_features, num_classes) if num_classes > 0 else nn.Identity()).to(device)


@register_family("head", "classifier", ClassifierParams)
def classifier_head(w_in: int, head: Head, ctx: BuildContext) -> nn.Module:
    """(Norm → act) → GAP → norm → dropout → Linear, and the training form's auxiliary classifiers."""
    return ClassifierHead(w_in, head.params, ctx.num_classes, ctx.drop_rate, ctx.stage_widths)


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
