"""Inception modules (GoogLeNet, Inception-v3): parallel branches on one input, concatenated along channels.

A branch is a short string of ops applied in order, separated by spaces:
- `KxL:W` — a conv (no bias) → norm → act with a K×L kernel (odd sizes up to 7; 1x7 and 7x1 factorize a 7x7) and
  W output channels, padded to keep the size;
- `maxK`, `avgK` — a K×K pool of stride 1 that keeps the size; a branch of pools alone passes its input through;
- `(KxL:W|MxN:V)` — a fork: parallel convs on the same input, concatenated (Inception-v3's expanded last modules).

GoogLeNet's module 3a is `["1x1:64", "1x1:96 3x3:128", "1x1:16 3x3:32", "max3 1x1:32"]`. The stage width is not chosen
but follows from the branches (the sum of their widths, a pass-through branch adding its input's). A stage with
`stride` 2 downsamples either with a max pool (ceil mode) before its first module (`down: pool`, GoogLeNet's pools
between module groups) or inside the module (`down: branch`, Inception-v3's grid reductions): the last op of every
branch is then strided and unpadded, so all branches must end in ops of one kernel size.

Also the GoogLeNet and Inception-v3 stems. Named points: GoogLeNet (torchvision's, with 3x3 where the paper has 5x5)
and Inception-v3, with their auxiliary classifiers in the training form.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage, Stem
from space.builder import BuildContext
from space.errors import SpecError
from space.layers import ConvNormAct, act_names, norm_names
from space.params import Params, make_divisible, param, register_family
from space.zoo import register_model

EPS = 1e-3  # the BatchNorm epsilon of the Inception papers' (and torchvision's) conv-BN-ReLU


# -- the branch grammar ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    """A kh×kw conv-norm-act to `width` channels."""

    kh: int
    kw: int
    width: int

    def __str__(self) -> str:
        return f"{self.kh}x{self.kw}:{self.width}"


@dataclass(frozen=True)
class Pool:
    """A k×k max or average pool."""

    kind: str
    k: int

    def __str__(self) -> str:
        return f"{self.kind}{self.k}"


@dataclass(frozen=True)
class Fork:
    """Parallel convs on the same input, concatenated."""

    convs: tuple[Conv, ...]

    def __str__(self) -> str:
        return "(" + "|".join(str(c) for c in self.convs) + ")"


Op = Conv | Pool | Fork
_CONV = re.compile(r"(\d+)x(\d+):(\d+)")
_POOL = re.compile(r"(max|avg)(\d+)")
GRAMMAR = "ops are KxL:W convs (3x3:64, 1x7:192), maxK/avgK pools (max3) and (KxL:W|MxN:W) forks"


def _conv(token: str, branch: str) -> Conv:
    m = _CONV.fullmatch(token)
    if m is None:
        raise SpecError(f"'{token}' in branch '{branch}' is not an op", key="branches", hint=GRAMMAR)
    conv = Conv(int(m[1]), int(m[2]), int(m[3]))
    if not (conv.kh % 2 and conv.kw % 2 and conv.kh <= 7 and conv.kw <= 7) or conv.width < 1:
        raise SpecError(f"'{token}' in branch '{branch}': kernel sizes must be odd and at most 7, widths >= 1",
                        key="branches")
    return conv


def parse_branch(text: str) -> tuple[Op, ...]:
    """The ops of a branch string; SpecError(key='branches') naming the bad token."""
    ops: list[Op] = []
    for token in re.findall(r"\([^)]*\)|[^\s()]+|[()]", text):
        if token.startswith("(") and token.endswith(")") and len(token) > 2:
            ops.append(Fork(tuple(_conv(t.strip(), text) for t in token[1:-1].split("|"))))
        elif (m := _POOL.fullmatch(token)) is not None:
            if int(m[2]) % 2 == 0 or not 1 < int(m[2]) <= 7:
                raise SpecError(f"'{token}' in branch '{text}': pool sizes are odd, 3 to 7", key="branches")
            ops.append(Pool(m[1], int(m[2])))
        else:
            ops.append(_conv(token, text))
    if not ops:
        raise SpecError("an empty branch", key="branches", hint=GRAMMAR)
    return tuple(ops)


def branch_width(ops: tuple[Op, ...], w_in: int) -> int:
    """Output channels of a branch on `w_in` input channels."""
    w = w_in
    for op in ops:
        if isinstance(op, Conv):
            w = op.width
        elif isinstance(op, Fork):
            w = sum(c.width for c in op.convs)
    return w


def _last_kernels(ops: tuple[Op, ...]) -> set[tuple[int, int]]:
    last = ops[-1]
    if isinstance(last, Fork):
        return {(c.kh, c.kw) for c in last.convs}
    return {(last.kh, last.kw)} if isinstance(last, Conv) else {(last.k, last.k)}


def _scale_op(op: Op, mult: float, divisor: int) -> Op:
    if isinstance(op, Conv):
        return dataclasses.replace(op, width=make_divisible(op.width * mult, divisor))
    if isinstance(op, Fork):
        return Fork(tuple(_scale_op(c, mult, divisor) for c in op.convs))
    return op


# -- the family -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InceptionParams(Params):
    """`paths` parallel branches (one op string each, see the module docstring), concatenated; `depth` modules."""

    paths: int = param(4, min=1, max=8, doc="number of parallel branches")
    branches: tuple[str, ...] = param(("1x1:64", "1x1:96 3x3:128", "1x1:16 3x3:32", "max3 1x1:32"),
                                      length_of="paths", doc="the ops of each branch (GoogLeNet 3a by default)")
    down: str = param("pool", choices=("pool", "branch"),
                      doc="stride > 1: a max pool before the modules, or the last op of every branch strided")
    pool_kernel: int = param(3, min=2, max=3, when=("down", ("pool",)), doc="the max pool's window (GoogLeNet 3, 2)")
    act: str = param("relu", choices=act_names)
    norm: str = param("batchnorm", choices=norm_names)
    norm_eps: float = param(EPS, min=0.0)

    derived_keys = ("width",)

    def ops(self) -> tuple[tuple[Op, ...], ...]:
        """The parsed branches."""
        return tuple(parse_branch(b) for b in self.branches)

    def validate_fields(self) -> None:
        super().validate_fields()
        self.ops()

    def out_width(self, *, w_in: int, depth: int, stride: int) -> int:
        ops = self.ops()
        for _ in range(depth):
            w_in = sum(branch_width(b, w_in) for b in ops)
        return w_in

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if stride == 1:
            return
        if self.down == "pool" and self.pool_kernel < stride:
            raise SpecError(f"pool window {self.pool_kernel} is smaller than the stage stride {stride}",
                            key="pool_kernel", hint=f"use a pool_kernel of at least {stride}")
        if self.down == "branch":
            kernels = set().union(*(_last_kernels(b) for b in self.ops()))
            if len(kernels) > 1:
                raise SpecError(f"with down: branch every branch's last op takes the stride unpadded, so they must "
                                f"share one kernel size, got {sorted(kernels)}", key="branches",
                                hint="end every branch in a 3x3 conv or a 3x3 pool, or use down: pool")
            if min(next(iter(kernels))) < stride:
                raise SpecError(f"the branches' last kernel {next(iter(kernels))} is smaller than the stride {stride}",
                                key="branches")

    def scaled(self, mult: float, divisor: int) -> Params:
        branches = tuple(" ".join(str(_scale_op(op, mult, divisor)) for op in b) for b in self.ops())
        return dataclasses.replace(self, branches=branches)


class Concat(nn.ModuleList):
    """Parallel modules on the same input, outputs concatenated along channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self], 1)


def _op(op: Op, w_in: int, stride: int, p: InceptionParams) -> nn.Module:
    """One op; a strided op (the last of a reducing branch) is unpadded."""
    if isinstance(op, Fork):
        return Concat([_op(c, w_in, stride, p) for c in op.convs])
    if isinstance(op, Pool):
        pad = 0 if stride > 1 else op.k // 2
        return nn.MaxPool2d(op.k, stride, pad) if op.kind == "max" else nn.AvgPool2d(op.k, stride, pad)
    pad = (0, 0) if stride > 1 else (op.kh // 2, op.kw // 2)
    return ConvNormAct(w_in, op.width, (op.kh, op.kw), stride, padding=pad, norm=p.norm, act=p.act, eps=p.norm_eps)


def inception_module(w_in: int, p: InceptionParams, stride: int) -> Concat:
    """One Inception module; with `stride` > 1 the last op of each branch carries it."""
    branches = []
    for ops in p.ops():
        layers, w = [], w_in
        for i, op in enumerate(ops):
            layers.append(_op(op, w, stride if i == len(ops) - 1 else 1, p))
            w = branch_width((op,), w)
        branches.append(nn.Sequential(*layers))
    return Concat(branches)


@register_family("block", "inception", InceptionParams)
def inception_stage(w_in: int, stage: Stage, ctx: BuildContext) -> nn.Module:
    """(Max pool when downsampling by pool) → `depth` Inception modules, the first taking the stride."""
    p: InceptionParams = stage.params
    layers: list[nn.Module] = []
    stride = stage.stride
    if p.down == "pool" and stride > 1:
        layers.append(nn.MaxPool2d(p.pool_kernel, stride, ceil_mode=True))
        stride = 1
    for i in range(stage.depth):
        layers.append(inception_module(w_in, p, stride if i == 0 else 1))
        w_in = p.out_width(w_in=w_in, depth=1, stride=1)
    return nn.Sequential(*layers)


# -- stems ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoogLeNetStemParams(Params):
    """k×k conv (stride) to `mid` → max pool → 1x1 conv to `mid` → 3x3 conv to the stem width → max pool (224 → 28)."""

    kernel: int = param(7, choices=(3, 5, 7))
    stride: int = param(2, min=1, max=2)
    mid: int = param(64, min=1, channels=True, doc="width of the first conv and of the 1x1 conv")
    pool: str = param("max", choices=("max", "none"), doc="the two 3/2 max pools (ceil mode)")
    act: str = param("relu", choices=act_names)
    norm_eps: float = param(EPS, min=0.0)

    def reduction(self) -> int:
        return self.stride * (4 if self.pool == "max" else 1)


@register_family("stem", "googlenet", GoogLeNetStemParams)
def googlenet_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """GoogLeNet's stem: conv → pool → 1x1 → 3x3 → pool."""
    p: GoogLeNetStemParams = stem.params

    def pool() -> list[nn.Module]:
        return [nn.MaxPool2d(3, 2, ceil_mode=True)] if p.pool == "max" else []

    return nn.Sequential(
        ConvNormAct(in_chans, p.mid, p.kernel, p.stride, act=p.act, eps=p.norm_eps), *pool(),
        ConvNormAct(p.mid, p.mid, 1, act=p.act, eps=p.norm_eps),
        ConvNormAct(p.mid, stem.width, 3, act=p.act, eps=p.norm_eps), *pool())


@dataclass(frozen=True)
class InceptionV3StemParams(Params):
    """3x3/2 → 3x3 → 3x3 (padded) → max pool 3/2 → 1x1 → 3x3 → max pool 3/2; unpadded convs (299 → 35)."""

    widths: tuple[int, ...] = param((32, 32, 64, 80), min=1, channels=True,
                                    doc="widths of the first four convs; the last one has the stem width")
    act: str = param("relu", choices=act_names)
    norm_eps: float = param(EPS, min=0.0)

    def reduction(self) -> int:
        return 8

    def check(self, *, w_in: int, w_out: int, stride: int) -> None:
        if len(self.widths) != 4:
            raise SpecError(f"needs the widths of the first four convs, got {len(self.widths)}", key="widths")


@register_family("stem", "inception_v3", InceptionV3StemParams)
def inception_v3_stem(in_chans: int, stem: Stem, ctx: BuildContext) -> nn.Module:
    """Inception-v3's factorized stem."""
    p: InceptionV3StemParams = stem.params
    w1, w2, w3, w4 = p.widths

    def conv(w_in: int, w_out: int, k: int, stride: int = 1, pad: int = 0) -> ConvNormAct:
        return ConvNormAct(w_in, w_out, k, stride, padding=pad, act=p.act, eps=p.norm_eps)

    return nn.Sequential(conv(in_chans, w1, 3, 2), conv(w1, w2, 3), conv(w2, w3, 3, pad=1), nn.MaxPool2d(3, 2),
                         conv(w3, w4, 1), conv(w4, stem.width, 3), nn.MaxPool2d(3, 2))


# -- named points ---------------------------------------------------------------------------------------------------
# GoogLeNet's modules: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection), and where a max pool precedes
# them (its window). torchvision, like the released Caffe model, uses a 3x3 conv in the "5x5" branch.
GOOGLENET = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
             "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
             "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
             "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}
GOOGLENET_POOLS = {"4a": 3, "5a": 2}


def googlenet_module(c1: int, r3: int, c3: int, r5: int, c5: int, cp: int, *, five: int = 3) -> list[str]:
    """The four branches of a GoogLeNet module."""
    return [f"1x1:{c1}", f"1x1:{r3} 3x3:{c3}", f"1x1:{r5} {five}x{five}:{c5}", f"max3 1x1:{cp}"]


@register_model("googlenet", "inception", top1=69.78, paper="Szegedy et al. 2015, Going Deeper with Convolutions")
def googlenet() -> Arch:
    """GoogLeNet (torchvision): nine Inception modules, auxiliary classifiers after 4a and 4d (loss weight 0.3)."""
    stages = []
    for name, widths in GOOGLENET.items():
        stage = {"block": "inception", "depth": 1, "stride": 1, "branches": googlenet_module(*widths)}
        if name in GOOGLENET_POOLS:
            stage.update(stride=2, pool_kernel=GOOGLENET_POOLS[name])
        stages.append(stage)
    return Arch.from_dict({
        "stem": {"type": "googlenet", "width": 192},
        "stages": stages,
        "head": {"type": "classifier", "dropout": 0.2, "aux": "fc", "aux_at": [2, 5]},
    })


def _v3_a(pool_width: int) -> dict:
    return {"branches": ["1x1:64", "1x1:48 5x5:64", "1x1:64 3x3:96 3x3:96", f"avg3 1x1:{pool_width}"]}


def _v3_c(c7: int) -> dict:
    return {"branches": ["1x1:192", f"1x1:{c7} 1x7:{c7} 7x1:192",
                         f"1x1:{c7} 7x1:{c7} 1x7:{c7} 7x1:{c7} 1x7:192", "avg3 1x1:192"]}


V3_B = {"stride": 2, "down": "branch", "paths": 3, "branches": ["3x3:384", "1x1:64 3x3:96 3x3:96", "max3"]}
V3_D = {"stride": 2, "down": "branch", "paths": 3,
        "branches": ["1x1:192 3x3:320", "1x1:192 1x7:192 7x1:192 3x3:192", "max3"]}
V3_E = {"branches": ["1x1:320", "1x1:384 (1x3:384|3x1:384)", "1x1:448 3x3:384 (1x3:384|3x1:384)", "avg3 1x1:192"]}


@register_model("inception_v3", "inception", top1=77.29, default_input=299,
                paper="Szegedy et al. 2016, Rethinking the Inception Architecture")
def inception_v3() -> Arch:
    """Inception-v3 (torchvision): modules A ×3, B, C ×4, D, E ×2; one auxiliary classifier after the last C (0.4)."""
    modules = [_v3_a(32), _v3_a(64), _v3_a(64), V3_B, _v3_c(128), _v3_c(160), _v3_c(160), _v3_c(192), V3_D, V3_E, V3_E]
    return Arch.from_dict({
        "stem": {"type": "inception_v3", "width": 192},
        "stages": [{"block": "inception", "depth": 1, **m} for m in modules],
        "head": {"type": "classifier", "dropout": 0.5, "aux": "conv", "aux_at": [7], "aux_hidden": 768,
                 "aux_weight": 0.4},
    })


# -- SqueezeNet: Fire modules are one-branch modules, a 1x1 squeeze and then a fork of 1x1 and 3x3 expands ----------
SQUEEZENET_PAPER = "Iandola et al. 2016, SqueezeNet: AlexNet-level accuracy with 50x fewer parameters"


def fire(squeeze: int, expand: int) -> list[str]:
    """A Fire module as a branch: 1x1 squeeze, then 1x1 and 3x3 expands of `expand` channels each, concatenated."""
    return [f"1x1:{squeeze} (1x1:{expand}|3x3:{expand})"]


def squeezenet(stem: dict, stages: list[tuple[int, int, int, int]]) -> Arch:
    """torchvision's SqueezeNet: no norm, a bias on every conv, 3/2 ceil-mode max pools, the classifier on the map.

    `stages` rows are (Fire modules, squeeze width, expand width, stride: 2 puts a max pool before the modules).
    """
    rows = [{"block": "inception", "depth": n, "stride": s, "paths": 1, "branches": fire(sq, ex), "norm": "none"}
            for n, sq, ex, s in stages]
    return Arch.from_dict({
        "stem": {"type": "conv", "padding": 0, "norm": "none", "pool": "max", "pool_padding": 0, "pool_ceil": True,
                 **stem},
        "stages": rows,
        "head": {"type": "classifier", "dropout": 0.5, "fc_on": "map", "fc_act": "relu"},
    })


@register_model("squeezenet1_0", "squeezenet", top1=58.09, paper=SQUEEZENET_PAPER + " (torchvision's weights)")
def squeezenet1_0() -> Arch:
    """SqueezeNet 1.0: a 7x7/2 stem of 96, pools after Fire modules 4 and 8."""
    return squeezenet({"width": 96, "kernel": 7},
                      [(2, 16, 64, 1), (1, 32, 128, 1), (1, 32, 128, 2), (2, 48, 192, 1), (1, 64, 256, 1),
                       (1, 64, 256, 2)])


@register_model("squeezenet1_1", "squeezenet", top1=58.18, paper=SQUEEZENET_PAPER + " (v1.1, torchvision's weights)")
def squeezenet1_1() -> Arch:
    """SqueezeNet 1.1: a 3x3/2 stem of 64 and earlier pools (after Fire modules 2 and 4), 2.4x fewer MACs."""
    return squeezenet({"width": 64, "kernel": 3},
                      [(2, 16, 64, 1), (2, 32, 128, 2), (2, 48, 192, 2), (2, 64, 256, 1)])
