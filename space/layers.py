"""Shared layers: activation and norm factories, conv-norm-act, squeeze-excitation, drop path, BN folding."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from space.params import Registry

# -- activations ----------------------------------------------------------------------------------------------------
ACTS: Registry[Callable[..., nn.Module]] = Registry("activation")
ACTS.add("relu", lambda channels=0, **_: nn.ReLU(inplace=True))
ACTS.add("relu6", lambda channels=0, **_: nn.ReLU6(inplace=True))
ACTS.add("gelu", lambda channels=0, **_: nn.GELU())
ACTS.add("silu", lambda channels=0, **_: nn.SiLU(inplace=True))
ACTS.add("hardswish", lambda channels=0, **_: nn.Hardswish(inplace=True))
ACTS.add("sigmoid", lambda channels=0, **_: nn.Sigmoid())
ACTS.add("hardsigmoid", lambda channels=0, **_: nn.Hardsigmoid(inplace=True))
ACTS.add("none", lambda channels=0, **_: nn.Identity())
ACTS.add("series", lambda channels=0, n=3, eps=1e-6, **_: SeriesAct(channels, n=n, eps=eps))

# The activations a search may choose for a block (gates such as sigmoid are not block activations).
BLOCK_ACTS = ("relu", "relu6", "gelu", "silu", "hardswish", "series", "none")


def act_names() -> list[str]:
    """Names of the block activations (for parameter choices)."""
    return list(BLOCK_ACTS)


def make_act(name: str, channels: int = 0, *, n: int = 3, eps: float = 1e-6) -> nn.Module:
    """Build activation `name`; `channels`, `n` and `eps` are used by the series activation only."""
    return ACTS.get(name)(channels=channels, n=n, eps=eps)


class SeriesAct(nn.Module):
    """VanillaNet's series-informed activation: ReLU, then a depthwise (2n+1)² conv with its BN (bias once fused).

    Stacking n shifted, weighted ReLUs around each pixel is exactly a depthwise conv over the ReLU output, which
    gives a shallow net far more non-linearity per layer at a small cost.
    """

    def __init__(self, channels: int, n: int = 3, eps: float = 1e-6):
        super().__init__()
        self.n = n
        self.conv = nn.Conv2d(channels, channels, 2 * n + 1, padding=n, groups=channels, bias=False)
        nn.init.trunc_normal_(self.conv.weight, std=0.02)
        self.bn: nn.Module = nn.BatchNorm2d(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(F.relu(x)))

    def reparameterize(self) -> None:
        """Fold the BN into the depthwise conv."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


# -- norms ----------------------------------------------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


NORMS: Registry[Callable[..., nn.Module]] = Registry("norm")
NORMS.add("batchnorm", lambda c, eps=None: nn.BatchNorm2d(c, eps=1e-5 if eps is None else eps))
NORMS.add("layernorm", lambda c, eps=None: LayerNorm2d(c, eps=1e-6 if eps is None else eps))
NORMS.add("none", lambda c, eps=None: nn.Identity())


def norm_names() -> list[str]:
    """Names of the norms (for parameter choices)."""
    return NORMS.names()


def make_norm(name: str, channels: int, eps: float | None = None) -> nn.Module:
    """Build norm `name` over `channels` (NCHW)."""
    return NORMS.get(name)(channels, eps)


# -- conv + norm + act ----------------------------------------------------------------------------------------------
class ConvNormAct(nn.Sequential):
    """Conv2d → norm → activation; the conv has a bias only when there is no norm (or `bias=True`).

    Deploy folds a BatchNorm into the conv. Children are named conv / bn / act (bn is Identity without a norm).
    """

    def __init__(self, w_in: int, w_out: int, kernel: int | tuple[int, int] = 3, stride: int = 1, *, groups: int = 1,
                 padding: int | tuple[int, int] | None = None, norm: str = "batchnorm", act: str = "relu",
                 bias: bool | None = None, eps: float | None = None, act_n: int = 3, dilation: int = 1):
        super().__init__()
        if padding is None:
            padding = tuple((k - 1) // 2 * dilation for k in kernel) if isinstance(kernel, tuple) \
                else (kernel - 1) // 2 * dilation
        bias = norm == "none" if bias is None else bias
        self.conv = nn.Conv2d(w_in, w_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=bias)
        self.bn = make_norm(norm, w_out, eps)
        self.act = make_act(act, w_out, n=act_n)

    def reparameterize(self) -> None:
        """Fold BatchNorm into the conv (other norms stay), then let the activation fuse itself."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()
        if hasattr(self.act, "reparameterize"):
            self.act.reparameterize()


def conv_bn_weights(weight: torch.Tensor, bias: torch.Tensor | None,
                    bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of conv(weight, bias) followed by `bn` in eval mode, as one conv."""
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale.reshape(-1, 1, 1, 1), beta + (b - bn.running_mean) * scale


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (with bias) computing conv → bn (eval mode)."""
    w, b = conv_bn_weights(conv.weight, conv.bias, bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.data.copy_(w.detach())
    fused.bias.data.copy_(b.detach())
    return fused


# -- squeeze-excitation, drop path ----------------------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """Squeeze-excitation: global pool → 1x1 reduce (bias) → act → 1x1 expand (bias) → gate, times the input."""

    def __init__(self, channels: int, rd_channels: int, *, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        self.act = make_act(act, rd_channels)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability `p` during training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
