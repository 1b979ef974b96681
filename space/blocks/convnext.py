"""ConvNeXt: dw k×k → norm → Linear (expansion·C) → act → Linear C → layer scale γ → drop path → + input.

Downsampling is a separate layer at the start of a stage (norm → conv s×s with stride s and bias), present when the
stage has stride > 1; a stride-1 stage that changes the width starts with the same layer at s = 1 (norm → 1x1
conv). The MLP runs channels-last with `nn.Linear`, as in torchvision. Deploy folds a BatchNorm (when chosen) into
the neighbouring conv and the layer scale into the second Linear; LayerNorms stay.
Named points: ConvNeXt-T/S/B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.builder import BuildContext
from space.layers import DropPath, act_names, fuse_conv_bn, make_act, make_norm, norm_names
from space.params import Params, param, register_family
from space.zoo import register_model


@dataclass(frozen=True)
class ConvNeXtParams(Params):
    """ConvNeXt block: depthwise k×k, norm, inverted MLP (expansion), layer scale; downsampling by its own layer."""

    kernel: int = param(7, choices=(3, 5, 7, 9, 11))
    expansion: float = param(4.0, min=1.0, max=8.0, doc="MLP hidden width / block width")
    act: str = param("gelu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    norm: str = param("layernorm", choices=norm_names, doc="norm after the dw conv and before a downsampling conv")
    norm_eps: float = param(1e-6, min=0.0)
    layer_scale: float = param(1e-6, min=0.0, doc="initial layer scale γ; 0: no layer scale")


def _init(module: nn.Module) -> None:
    """ConvNeXt initialisation: truncated normal (std 0.02) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvNeXtBlock(nn.Module):
    """x + drop_path(γ · fc2(act(fc1(norm(dwconv(x)))))), the MLP channels-last."""

    def __init__(self, dim: int, p: ConvNeXtParams, drop_path: float):
        super().__init__()
        hidden = int(round(dim * p.expansion))
        self.dwconv = nn.Conv2d(dim, dim, p.kernel, padding=p.kernel // 2, groups=dim)
        self.norm = make_norm(p.norm, dim, p.norm_eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(p.act, hidden, n=p.act_n)
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), p.layer_scale)) if p.layer_scale > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # The series activation convolves spatially, so it needs NCHW; every other activation is elementwise.
        self.spatial_act = p.act == "series"
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x)
        if isinstance(self.norm, nn.LayerNorm):
            # Normalise after the permute (plain LayerNorm over the last dim): saves LayerNorm2d's two permutes.
            y = nn.LayerNorm.forward(self.norm, y.permute(0, 2, 3, 1))
        else:
            y = self.norm(y).permute(0, 2, 3, 1)
        y = self.fc1(y)
        y = self.act(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) if self.spatial_act else self.act(y)
        y = self.fc2(y).permute(0, 3, 1, 2)
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y)

    def reparameterize(self) -> None:
        """Fold a BatchNorm into the dw conv and γ into fc2; LayerNorms stay."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.dwconv = fuse_conv_bn(self.dwconv, self.norm)
            self.norm = nn.Identity()
        if self.gamma is not None:
            g = self.gamma.detach().reshape(-1)
            self.fc2.weight.data.mul_(g[:, None])
            self.fc2.bias.data.mul_(g)
            self.gamma = None
        if hasattr(self.act, "reparameterize"):
            self.act.reparameterize()


class Downsample(nn.Module):
    """norm → conv k = s, stride s (bias): ConvNeXt's separate downsampling (or width-changing) layer."""

    def __init__(self, w_in: int, w_out: int, stride: int, norm: str, eps: float):
        super().__init__()
        self.norm = make_norm(norm, w_in, eps)
        self.conv = nn.Conv2d(w_in, w_out, stride, stride)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))

    def reparameterize(self) -> None:
        """Fold a BatchNorm into the following conv (exact: the conv has no padding); LayerNorm stays."""
        if not isinstance(self.norm, nn.BatchNorm2d):
            return
        bn, conv = self.norm, self.conv
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        bias = conv.bias + (conv.weight * shift[None, :, None, None]).sum((1, 2, 3))
        conv.weight.data.mul_(scale[None, :, None, None])
        conv.bias.data.copy_(bias)
        self.norm = nn.Identity()


@register_family("block", "convnext", ConvNeXtParams)
def convnext_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """(Downsampling layer when stride > 1 or the width changes), then `depth` ConvNeXt blocks."""
    p: ConvNeXtParams = stage.params
    layers: list[nn.Module] = []
    if stage.stride > 1 or w_in != stage.width:
        layers.append(Downsample(w_in, stage.width, stage.stride, p.norm, p.norm_eps))
    layers += [ConvNeXtBlock(stage.width, p, ctx.drop_path(i)) for i in range(stage.depth)]
    return nn.Sequential(*layers)


# -- named points ---------------------------------------------------------------------------------------------------
PAPER = "Liu et al. 2022, A ConvNet for the 2020s"


def convnext(depths: tuple[int, ...], widths: tuple[int, ...]) -> Arch:
    """A ConvNeXt: patchify 4x4 stem with LayerNorm, stages at stride 1,2,2,2, GAP → LayerNorm → Linear."""
    stages = [{"block": "convnext", "depth": d, "width": w, "stride": 1 if i == 0 else 2}
              for i, (d, w) in enumerate(zip(depths, widths))]
    return Arch.from_dict({"stem": {"type": "patchify", "width": widths[0]}, "stages": stages,
                           "head": {"type": "classifier", "norm": "layernorm"}})


@register_model("convnext_tiny", "convnext", top1=82.1, paper=PAPER)
def convnext_tiny() -> Arch:
    """ConvNeXt-T."""
    return convnext((3, 3, 9, 3), (96, 192, 384, 768))


@register_model("convnext_small", "convnext", top1=83.1, paper=PAPER)
def convnext_small() -> Arch:
    """ConvNeXt-S."""
    return convnext((3, 3, 27, 3), (96, 192, 384, 768))


@register_model("convnext_base", "convnext", top1=83.8, paper=PAPER)
def convnext_base() -> Arch:
    """ConvNeXt-B."""
    return convnext((3, 3, 27, 3), (128, 256, 512, 1024))
