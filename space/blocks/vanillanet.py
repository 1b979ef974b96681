"""VanillaNet: shortcut-free stages of one 1x1 conv → (pool) → series activation, trained with "deep training".

Deep training: every 1x1 conv (and the stem's patchify conv and the classifier) is trained as conv+BN → leaky ReLU
with slope λ → conv1x1+BN. λ is annealed from 0 to 1 by the trainer (`space.set_lambda`); at λ = 1 the leaky ReLU
is the identity, so the pair is linear and merges into one conv — `space.deploy` refuses before that. The deploy form
is the plain network of the paper: every BN folded, every pair one conv, the series activation's BN folded into its
depthwise conv. Families: block `vanilla`, stem `vanilla`, head `vanilla`. Named points VanillaNet-5 … -13, all made
by `vanillanet(n)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from space.arch import Arch, Head, Stage, Stem
from space.builder import BuildContext, sequential_stage
from space.errors import DeployError
from space.heads import HeadBase
from space.layers import ConvNormAct, act_names, conv_bn_weights, make_act
from space.params import Params, param, register_family
from space.zoo import register_model

BN_EPS = 1e-6


def _init_conv(conv: nn.Conv2d) -> None:
    """VanillaNet's init: truncated normal (std 0.02) weights, zero bias."""
    nn.init.trunc_normal_(conv.weight, std=0.02)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DeepTrainingConv(nn.Module):
    """conv k×k (bias) → BN → leaky_relu(λ) → conv 1x1 (bias) → (BN); merges into one k×k conv at λ = 1.

    `w_mid` is the width between the two convs (VanillaNet: the block input width, or the classes in the head).
    """

    def __init__(self, w_in: int, w_mid: int, w_out: int, kernel: int = 1, stride: int = 1, *, bn_out: bool = True,
                 eps: float = BN_EPS):
        super().__init__()
        self.lam = 1.0
        self.merged: nn.Conv2d | None = None
        self.conv1 = nn.Conv2d(w_in, w_mid, kernel, stride, bias=True)
        self.bn1 = nn.BatchNorm2d(w_mid, eps=eps)
        self.conv2 = nn.Conv2d(w_mid, w_out, 1, bias=True)
        self.bn2: nn.Module = nn.BatchNorm2d(w_out, eps=eps) if bn_out else nn.Identity()
        _init_conv(self.conv1)
        _init_conv(self.conv2)

    def set_lambda(self, lam: float) -> None:
        """Set the slope of the leaky ReLU between the two convs (0: ReLU, 1: identity)."""
        self.lam = float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged is not None:
            return self.merged(x)
        x = F.leaky_relu(self.bn1(self.conv1(x)), self.lam)
        return self.bn2(self.conv2(x))

    def extra_repr(self) -> str:
        return f"lam={self.lam:.4g}"

    def reparameterize(self) -> None:
        """Merge both convs and BNs into one conv with bias (exact in eval mode at λ = 1)."""
        if self.merged is not None:
            return
        if self.lam != 1.0:
            raise DeployError(f"deep-training slope lambda is {self.lam:.4g}, not 1: the conv pair is non-linear "
                              "and cannot be merged; call space.set_lambda(model, 1.0) when training ends")
        w1, b1 = conv_bn_weights(self.conv1.weight, self.conv1.bias, self.bn1)
        if isinstance(self.bn2, nn.BatchNorm2d):
            w2, b2 = conv_bn_weights(self.conv2.weight, self.conv2.bias, self.bn2)
        else:
            w2, b2 = self.conv2.weight, self.conv2.bias
        w2 = w2.flatten(1)
        merged = nn.Conv2d(self.conv1.in_channels, self.conv2.out_channels, self.conv1.kernel_size,
                           self.conv1.stride, self.conv1.padding, bias=True, device=w1.device, dtype=w1.dtype)
        merged.weight.data.copy_(torch.einsum("om,mikl->oikl", w2, w1).detach())
        merged.bias.data.copy_((w2 @ b1 + b2).detach())
        self.merged = merged
        del self.conv1, self.bn1, self.conv2, self.bn2


def vanilla_conv(w_in: int, w_out: int, kernel: int = 1, stride: int = 1, *, deep: bool = True,
                 w_mid: int | None = None, bn_out: bool = True) -> nn.Module:
    """A deep-training pair, or (deep off) the plain conv (bias) + BN that the pair deploys to."""
    if deep:
        return DeepTrainingConv(w_in, w_in if w_mid is None else w_mid, w_out, kernel, stride, bn_out=bn_out)
    conv = ConvNormAct(w_in, w_out, kernel, stride, padding=0, norm="batchnorm" if bn_out else "none", act="none",
                       bias=True, eps=BN_EPS)
    _init_conv(conv.conv)
    return conv


# -- block family ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VanillaParams(Params):
    """VanillaNet blocks: 1x1 conv (deep-training pair) → pool by the stride → activation (series by default)."""

    act: str = param("series", choices=act_names, doc="activation after the pool; VanillaNet: series")
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n (kernel 2n+1)")
    pool: str = param("max", choices=("max", "avg"), doc="pooling (kernel = stride) of a downsampling block")
    deep: bool = param(True, doc="train the 1x1 conv as a deep-training pair (same deploy form either way)")


class VanillaBlock(nn.Module):
    """conv 1x1 → pool (stride > 1) → act; no shortcut."""

    def __init__(self, w_in: int, w_out: int, stride: int, p: VanillaParams):
        super().__init__()
        self.conv = vanilla_conv(w_in, w_out, deep=p.deep)
        pool = nn.MaxPool2d if p.pool == "max" else nn.AvgPool2d
        self.pool = pool(stride) if stride > 1 else nn.Identity()
        self.act = make_act(p.act, w_out, n=p.act_n, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pool(self.conv(x)))


@register_family("block", "vanilla", VanillaParams)
def vanilla_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """VanillaNet blocks (VanillaNet puts one per stage)."""
    p: VanillaParams = stage.params
    return sequential_stage(w_in, stage, ctx, lambda w_in, w_out, stride, i: VanillaBlock(w_in, w_out, stride, p))


# -- stem family ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VanillaStemParams(Params):
    """Patchify conv (k = s = patch, bias) as a deep-training pair (→ BN → leaky → 1x1 → BN), then an activation."""

    patch: int = param(4, min=1, max=16)
    act: str = param("series", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    deep: bool = param(True, doc="deep-training pair (patchify conv, 1x1 conv) instead of patchify conv + BN")

    def reduction(self) -> int:
        """Spatial downsampling of the stem."""
        return self.patch


@register_family("stem", "vanilla", VanillaStemParams)
def vanilla_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """VanillaNet stem: patchify conv pair → series activation."""
    p: VanillaStemParams = stem.params
    w = stem.width
    return nn.Sequential(vanilla_conv(in_chans, w, p.patch, p.patch, deep=p.deep, w_mid=w),
                         make_act(p.act, w, n=p.act_n, eps=BN_EPS))


# -- head family ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VanillaHeadParams(Params):
    """GAP → dropout → 1x1 conv to the classes, as a deep-training pair (→ BN → leaky → 1x1 classes → classes)."""

    dropout: float = param(0.0, min=0.0, max=1.0)
    deep: bool = param(True, doc="deep-training pair instead of one 1x1 conv")


class VanillaHead(HeadBase):
    """GAP → dropout → fc (a deep-training pair of 1x1 convs, hidden width = classes) → flatten."""

    def __init__(self, w_in: int, p: VanillaHeadParams, num_classes: int, drop_rate: float | None):
        super().__init__()
        self.num_features = w_in
        self.deep = p.deep
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p.dropout if drop_rate is None else drop_rate)
        self.fc = self._make_fc(num_classes)

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return vanilla_conv(self.num_features, num_classes, deep=self.deep, w_mid=num_classes, bn_out=False)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier; a new deep-training pair keeps the current λ."""
        lams = [m.lam for m in self.modules() if isinstance(m, DeepTrainingConv)]
        super().reset_classifier(num_classes)
        if lams and isinstance(self.fc, DeepTrainingConv):
            self.fc.set_lambda(lams[0])

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x.flatten(1) if pre_logits else self.fc(self.drop(x)).flatten(1)


@register_family("head", "vanilla", VanillaHeadParams)
def vanilla_head(w_in: int, head: Head, ctx: BuildContext) -> nn.Module:
    """VanillaNet classifier: GAP, dropout, 1x1 conv pair to the classes."""
    return VanillaHead(w_in, head.params, ctx.num_classes, ctx.drop_rate)


# -- named points ---------------------------------------------------------------------------------------------------
TOP1 = {5: 72.49, 6: 76.36, 7: 77.98, 8: 79.13, 9: 79.87, 10: 80.57, 11: 81.08, 12: 81.55, 13: 82.05}
PAPER = "Chen et al. 2023, VanillaNet: the Power of Minimalism in Deep Learning"


def vanillanet(n: int, k: int = 4, act_n: int = 3) -> Arch:
    """VanillaNet-N (N ≥ 5 layers: stem, N − 2 blocks, classifier) at base width 128·k.

    Widths 128k (stem), then 256k, 512k, 1024k at stride 2 (N = 5); N = 6 adds a 1024k block at stride 1; from
    N = 7 a 128k block at stride 1 comes first and the 1024k one moves after a run of N − 7 stride-1 512k blocks.
    """
    if n < 5:
        raise ValueError(f"VanillaNet-N needs N >= 5, got {n}")
    if n < 7:
        plan = [(2, 2), (4, 2), (8, 2)] + [(8, 1)] * (n - 5)
    else:
        plan = [(1, 1), (2, 2), (4, 2)] + [(4, 1)] * (n - 7) + [(8, 2), (8, 1)]
    stages = [{"block": "vanilla", "depth": 1, "width": 128 * k * m, "stride": s, "act_n": act_n} for m, s in plan]
    return Arch.from_dict({"stem": {"type": "vanilla", "width": 128 * k, "act_n": act_n}, "stages": stages,
                           "head": {"type": "vanilla"}})


def _register(n: int) -> None:
    register_model(f"vanillanet_{n}", "vanillanet", top1=TOP1[n], paper=PAPER)(lambda: vanillanet(n))


for _n in range(5, 14):
    _register(_n)
