"""Stem families: the layers between the image and the first stage."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from space.arch import Stem
from space.builder import BuildContext
from space.errors import SpecError
from space.layers import ConvNormAct, act_names, norm_names
from space.params import Params, param, register_family


@dataclass(frozen=True)
class ConvStemParams(Params):
    """A k×k strided conv (with norm and activation), optionally followed by a max pool (ResNet, AlexNet)."""

    kernel: int = param(3, min=1, max=11, doc="conv kernel size")
    stride: int = param(2, min=1, max=8, doc="conv stride")
    padding: int = param(-1, min=-1, doc="conv padding; -1 for (kernel-1)//2")
    preact: bool = param(False, added=True, doc="a bare conv (no norm, act or bias): pre-activation nets (ResNetV2), "
                         "whose first block normalizes")
    norm: str = param("batchnorm", choices=norm_names, when=("preact", (False,)))
    act: str = param("relu", choices=act_names, when=("preact", (False,)))
    bias: bool = param(False, when=("preact", (False,)), doc="conv bias (forced on when norm is none)")
    pool: str = param("none", choices=("none", "max"), doc="pooling after the conv")
    pool_kernel: int = param(3, min=1, max=7, when=("pool", ("max",)))
    pool_stride: int = param(2, min=1, max=4, when=("pool", ("max",)))
    pool_padding: int = param(-1, min=-1, max=3, when=("pool", ("max",)),
                              doc="max pool padding; -1 for (pool_kernel-1)//2 (AlexNet: 0)")
    pool_ceil: bool = param(False, when=("pool", ("max",)), added=True,
                            doc="the max pool's output size rounded up (ceil mode: SqueezeNet, GoogLeNet)")
    norm_eps: float = param(1e-5, min=0.0, doc="norm epsilon")

    def reduction(self) -> int:
        return self.stride * (self.pool_stride if self.pool == "max" else 1)

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if self.pool == "max" and self.pool_padding > self.pool_kernel // 2:
            raise SpecError(f"max pool padding {self.pool_padding} exceeds half the pool kernel {self.pool_kernel}",
                            key="pool_padding", hint=f"use at most {self.pool_kernel // 2}, or -1 for the default")


@register_family("stem", "conv", ConvStemParams)
def conv_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """Conv → norm → act (→ max pool); a bare conv when pre-activated."""
    p: ConvStemParams = stem.params
    norm, act = ("none", "none") if p.preact else (p.norm, p.act)
    layers = [ConvNormAct(in_chans, stem.width, p.kernel, p.stride, padding=None if p.padding < 0 else p.padding,
                          norm=norm, act=act, bias=not p.preact and (p.bias or p.norm == "none"), eps=p.norm_eps)]
    if p.pool == "max":
        pad = (p.pool_kernel - 1) // 2 if p.pool_padding < 0 else p.pool_padding
        layers.append(nn.MaxPool2d(p.pool_kernel, p.pool_stride, padding=pad, ceil_mode=p.pool_ceil))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class PatchifyStemParams(Params):
    """Non-overlapping patches: a `patch`×`patch` conv with stride `patch` (bias) and a norm (ConvNeXt)."""

    patch: int = param(4, min=1, max=16)
    norm: str = param("layernorm", choices=norm_names)
    norm_eps: float = param(1e-6, min=0.0)

    def reduction(self) -> int:
        return self.patch


@register_family("stem", "patchify", PatchifyStemParams)
def patchify_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """Patchify conv (k = s = patch) with bias, then a norm."""
    p: PatchifyStemParams = stem.params
    return ConvNormAct(in_chans, stem.width, p.patch, p.patch, padding=0, norm=p.norm, act="none", bias=True,
                       eps=p.norm_eps)


@dataclass(frozen=True)
class NoStemParams(Params):
    """No stem: the first stage sees the image (VGG); the stem width must equal the input channels."""

    keeps_width = True  # not a field: width multipliers leave the image's channel count alone (see Arch.scaled)

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if w_out != 3:
            raise SpecError(f"a 'none' stem passes the image through, so its width must be 3, got {w_out}",
                            key="width")

    def fit(self, *, w_in: int, w_out: int) -> Params:
        return self


class Passthrough(nn.Identity):
    """Identity stem that reports the input channels as its output channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels


@register_family("stem", "none", NoStemParams)
def no_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """Identity."""
    return Passthrough(in_chans)
