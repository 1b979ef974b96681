"""ParNet (Goyal et al., "Non-deep Networks"): parallel streams of gated RepVGG-style blocks, 12 layers deep.

A ParNet block sums a 3x3 conv+BN, a 1x1 conv+BN (behind a 2x2 average pool when it downsamples) and, when shapes
allow, an identity BN; a skip-squeeze-excitation scales the identity branch, or, in a block without one, a 2·sigmoid
gate from the block input scales the sum; then SiLU. The `parnet` stage runs a strided chain whose outputs feed
`streams` parallel streams (stream k at 1/2^k of the stage input) and fuses them pairwise, from the finest
resolution down, into one tensor; a last downsampling block maps it to the stage width. The `parnet` stem is two
downsampling blocks. Deploy folds each block's conv branches into one 3x3 conv; identity BNs, gates and fusion BNs
stay. Named points: ParNet-S, -M, -L, -XL.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from space.arch import Arch, Stage, Stem
from space.builder import BuildContext
from space.errors import SpecError
from space.layers import ConvNormAct, act_names, conv_bn_weights, make_act
from space.params import Params, param, register_family
from space.zoo import register_model

GATES = ("sse", "none")
DOWNS = ("avgpool", "conv")
PAPER = "Goyal et al. 2021, Non-deep Networks"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` equal groups (ShuffleNet)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class AvgDown(nn.Module):
    """2x2 average pool, stride 2, of the input zero-padded at the bottom/right to even size.

    The padding is the one a 3x3 stride-2 conv with padding 1 sees there, so pool → 1x1 conv stays exactly a 3x3
    conv on odd sizes too (the output is ceil(size / 2), like the 3x3 branch's).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        return F.avg_pool2d(x, 2)


class Gate(nn.Module):
    """`scale` · sigmoid(1x1 conv (no bias) of the globally pooled input): ParNet's channel gate."""

    def __init__(self, w_in: int, w_out: int, groups: int = 1, scale: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(w_in, w_out, 1, groups=groups, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(self.conv(x.mean((2, 3), keepdim=True)))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ParBlock(nn.Module):
    """3x3 conv+BN ‖ 1x1 conv+BN (average pool first when `down` is avgpool and stride 2) ‖ identity BN → gate → act.

    gate 'sse': the identity branch is multiplied by a skip-squeeze-excitation of itself (sigmoid gate); a block
    without an identity branch (width change or stride) multiplies the branch sum by a 2·sigmoid gate of its input.
    Grouped blocks (the fusions) end with a channel shuffle.
    """

    def __init__(self, w_in: int, w_out: int, stride: int = 1, *, groups: int = 1, act: str = "silu",
                 act_n: int = 3, gate: str = "sse", down: str = "avgpool"):
        super().__init__()
        self.w_in, self.w_out, self.stride, self.groups = w_in, w_out, stride, groups
        pool = stride == 2 and down == "avgpool"
        self.dense: nn.Module = ConvNormAct(w_in, w_out, 3, stride, groups=groups, act="none")
        self.pool: nn.Module | None = AvgDown() if pool else None
        self.point: nn.Module | None = ConvNormAct(w_in, w_out, 1, 1 if pool else stride, groups=groups, act="none")
        self.identity: nn.BatchNorm2d | None = nn.BatchNorm2d(w_in) if w_in == w_out and stride == 1 else None
        self.gate = Gate(w_in, w_out, groups, 1.0 if self.identity is not None else 2.0) if gate == "sse" else None
        self.act = make_act(act, w_out, n=act_n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dense(x)
        if self.point is not None:
            out = out + self.point(x if self.pool is None else self.pool(x))
        if self.identity is not None:
            skip = self.identity(x)
            out = out + (skip if self.gate is None else skip * self.gate(skip))
        elif self.gate is not None:
            out = out * self.gate(x)
        out = self.act(out)
        return channel_shuffle(out, self.groups) if self.groups > 1 else out

    def reparameterize(self) -> None:
        """Fold the 1x1 (and pooled) branch, and an ungated identity BN, into one biased 3x3 conv."""
        if self.point is not None:
            weight, bias = conv_bn_weights(self.dense.conv.weight, None, self.dense.bn)
            pw, pb = conv_bn_weights(self.point.conv.weight, None, self.point.bn)
            if self.pool is not None:
                # pool 2x2/2 then 1x1 = a 3x3/2 conv (padding 1) with w/4 on the taps (1..2, 1..2): input rows 2i, 2i+1
                pw = F.pad(pw.expand(-1, -1, 2, 2) / 4, (1, 0, 1, 0))
            else:
                pw = F.pad(pw, (1, 1, 1, 1))
            weight, bias = weight + pw, bias + pb
            if self.identity is not None and self.gate is None:
                iw, ib = conv_bn_weights(self._identity_kernel(weight), None, self.identity)
                weight, bias = weight + iw, bias + ib
                self.identity = None
            conv = nn.Conv2d(self.w_in, self.w_out, 3, self.stride, 1, groups=self.groups, bias=True,
                             device=weight.device, dtype=weight.dtype)
            conv.weight.data.copy_(weight.detach())
            conv.bias.data.copy_(bias.detach())
            self.dense = conv
            self.point = self.pool = None
        if hasattr(self.act, "reparameterize"):
            self.act.reparameterize()

    def _identity_kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The 3x3 (grouped) kernel of the identity map."""
        per_group = self.w_in // self.groups
        kernel = torch.zeros_like(like)
        idx = torch.arange(self.w_in, device=like.device)
        kernel[idx, idx % per_group, 1, 1] = 1.0
        return kernel


class Fusion(nn.Module):
    """Joins a stream with the running result: a BN on each, channels interleaved, one grouped ParBlock."""

    def __init__(self, width: int, w_out: int, stride: int, *, groups: int, **block: object):
        super().__init__()
        self.bn_stream = nn.BatchNorm2d(width)
        self.bn_fused = nn.BatchNorm2d(width)
        self.block = ParBlock(2 * width, w_out, stride, groups=groups, **block)

    def forward(self, stream: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        # stack on dim 2 then flatten: channel 2i is stream[i], 2i+1 is fused[i], so each group sees both inputs
        return self.block(torch.stack((self.bn_stream(stream), self.bn_fused(fused)), 2).flatten(1, 2))


# -- the streams stage ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParNetParams(Params):
    """Parallel streams: stream k runs `depths[k]` blocks at `widths[k]` channels and 1/2^k of the input resolution.

    A chain of stride-2 blocks (input → widths[1] → widths[2] ...) feeds streams 1.. ; stream 0 takes the stage input
    (its first block changes the width when the input is not widths[0]). Stream 0 is downsampled into stream 1's
    resolution; then, for k = 1.., a fusion block joins stream k with the running result, at stride 2 into stream
    k+1 (widths[k+1]), the last one at stride 1; a final stride-2 block maps widths[-1] to the stage width. Depth and
    stride of the stage follow: depth = max(depths) + streams + 1 (1 + depths[0] for one stream), stride = 2^streams.
    """

    streams: int = param(3, min=1, max=5, doc="parallel streams; stream k runs at 1/2^k of the stage input")
    depths: tuple[int, ...] = param((4, 5, 5), min=1, max=32, length_of="streams", doc="blocks per stream")
    widths: tuple[int, ...] = param((92, 192, 384), min=1, channels=True, length_of="streams",
                                    doc="channels of each stream")
    fuse_groups: int = param(2, choices=(1, 2), doc="groups of the fusion blocks (2: interleaved halves, shuffle)")
    act: str = param("silu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    gate: str = param("sse", choices=GATES, doc="sse: skip-squeeze-excitation / 2·sigmoid input gate; none: ungated")
    down: str = param("avgpool", choices=DOWNS, doc="1x1 branch of a stride-2 block: 2x2 avg pool + 1x1, or 1x1/2")

    derived_keys = ("depth", "stride")

    def derived(self) -> dict[str, int]:
        """Stage depth (blocks on the longest input → output path) and total stride."""
        # every stream's path crosses `streams` chain/merge blocks (none with one stream), then the final block
        merges = self.streams if self.streams > 1 else 0
        return {"depth": max(self.depths, default=0) + merges + 1, "stride": 2 ** self.streams}

    def fusion_widths(self) -> list[int]:
        """Output widths of the fusion blocks (stream k's fusion outputs widths[k+1]; the last one keeps its width)."""
        return [self.widths[min(k + 1, self.streams - 1)] for k in range(1, self.streams)]

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        for w in self.fusion_widths():
            if w % self.fuse_groups:
                raise SpecError(f"fusion output width {w} is not divisible by fuse_groups {self.fuse_groups}",
                                key="widths", hint="use even stream widths or fuse_groups: 1")

    def fit(self, *, w_in: int, w_out: int) -> Params:
        groups = math.gcd(self.fuse_groups, *self.fusion_widths())
        return dataclasses.replace(self, fuse_groups=groups) if groups != self.fuse_groups else self

    def block_args(self) -> dict[str, object]:
        """Keyword arguments shared by every ParBlock of the stage."""
        return {"act": self.act, "act_n": self.act_n, "gate": self.gate, "down": self.down}


class ParNetStage(nn.Module):
    """Chain → parallel streams → pairwise fusions → final stride-2 block (see `ParNetParams`)."""

    def __init__(self, w_in: int, w_out: int, p: ParNetParams):
        super().__init__()
        n, widths, blk = p.streams, p.widths, p.block_args()
        self.chain = nn.ModuleList(ParBlock(w_in if k == 1 else widths[k - 1], widths[k], 2, **blk)
                                   for k in range(1, n))
        self.streams = nn.ModuleList(
            nn.Sequential(*(ParBlock(w_in if k == 0 and i == 0 else widths[k], widths[k], 1, **blk)
                            for i in range(depth)))
            for k, depth in enumerate(p.depths))
        self.down = ParBlock(widths[0], widths[1], 2, **blk) if n > 1 else nn.Identity()
        self.fuse = nn.ModuleList(Fusion(widths[k], w, 2 if k < n - 1 else 1, groups=p.fuse_groups, **blk)
                                  for k, w in zip(range(1, n), p.fusion_widths()))
        self.final = ParBlock(widths[-1], w_out, 2, **blk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [x]
        for block in self.chain:
            inputs.append(block(inputs[-1]))
        out = self.down(self.streams[0](x))
        for stream, fusion, feat in zip(self.streams[1:], self.fuse, inputs[1:]):
            out = fusion(stream(feat), out)
        return self.final(out)


@register_family("block", "parnet", ParNetParams)
def parnet_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """ParNet streams: chain, parallel streams of gated RepVGG-style blocks, pairwise fusion, final downsample."""
    return ParNetStage(w_in, stage.width, stage.params)


# -- the stem -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParNetStemParams(Params):
    """Two stride-2 ParNet blocks: input → `mid` → width."""

    mid: int = param(64, min=1, channels=True, doc="width of the first block")
    act: str = param("silu", choices=act_names)
    act_n: int = param(3, min=1, max=7, when=("act", ("series",)), doc="series activation n")
    gate: str = param("sse", choices=GATES)
    down: str = param("avgpool", choices=DOWNS)

    def reduction(self) -> int:
        return 4


@register_family("stem", "parnet", ParNetStemParams)
def parnet_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """Two downsampling ParNet blocks."""
    p: ParNetStemParams = stem.params
    blk = {"act": p.act, "act_n": p.act_n, "gate": p.gate, "down": p.down}
    return nn.Sequential(ParBlock(in_chans, p.mid, 2, **blk), ParBlock(p.mid, stem.width, 2, **blk))


# -- named points ---------------------------------------------------------------------------------------------------
def parnet(widths: tuple[int, int, int, int], *, depths: tuple[int, ...] = (4, 5, 5), dropout: float = 0.0) -> Arch:
    """A ParNet: stem 3 → 64 → C1, streams at C1..C3 (one per width but the last), final block to C4, GAP + Linear."""
    *streams, last = widths
    stage = {"block": "parnet", "width": last, "streams": len(streams), "depths": list(depths),
             "widths": list(streams)}
    return Arch.from_dict({"stem": {"type": "parnet", "width": streams[0], "mid": 64}, "stages": [stage],
                           "head": {"type": "classifier", "dropout": dropout}})


@register_model("parnet_s", "parnet", top1=75.19, paper=PAPER)
def parnet_s() -> Arch:
    """ParNet-S (C1 = 92, as in the released configuration)."""
    return parnet((92, 192, 384, 1280))


@register_model("parnet_m", "parnet", top1=76.60, paper=PAPER)
def parnet_m() -> Arch:
    """ParNet-M."""
    return parnet((128, 256, 512, 2048))


@register_model("parnet_l", "parnet", top1=77.66, paper=PAPER)
def parnet_l() -> Arch:
    """ParNet-L (head dropout 0.1)."""
    return parnet((160, 320, 640, 2560), dropout=0.1)


@register_model("parnet_xl", "parnet", top1=78.55, paper=PAPER)
def parnet_xl() -> Arch:
    """ParNet-XL (head dropout 0.1)."""
    return parnet((200, 400, 800, 3200), dropout=0.1)
