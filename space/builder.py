"""The builder: a pure function from an `Arch` to an `nn.Module` with the standard image-model interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from space.arch import Arch, Stage
from space.params import BLOCKS, HEADS, STEMS


@dataclass
class BuildContext:
    """What a family builder may need beyond its own params: global block indices for drop-path schedules."""

    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float | None = None
    drop_path_rate: float = 0.0
    total_blocks: int = 1
    block_index: int = 0
    stage_widths: tuple[int, ...] = ()  # output channels of every stage (auxiliary heads read stage outputs)

    def drop_path(self, i: int = 0) -> float:
        """Linearly increasing stochastic-depth rate of block `block_index + i` (0 for the first block)."""
        if self.total_blocks <= 1:
            return 0.0
        return self.drop_path_rate * (self.block_index + i) / (self.total_blocks - 1)


class Net(nn.Module):
    """stem → stages → head. `forward_features` ends before the head; `forward_head` ends in logits.

    A head with auxiliary classifiers (GoogLeNet, Inception-v3) holds them in `head.aux`, keyed by the index of the
    stage whose output they read; they exist in the training form only. `forward` always returns the main logits
    alone; `forward_train` also returns the auxiliary logits with their loss weights.
    """

    def __init__(self, arch: Arch, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float | None = None,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.deployed = False
        ctx = BuildContext(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                           drop_path_rate=drop_path_rate, total_blocks=sum(s.depth for s in arch.stages),
                           stage_widths=tuple(s.width for s in arch.stages))
        self.stem = STEMS.get(arch.stem.type).build(in_chans, arch.stem, ctx)
        stages, w_in = [], getattr(self.stem, "out_channels", arch.stem.width)
        for st in arch.stages:
            stages.append(BLOCKS.get(st.block).build(w_in, st, ctx))
            ctx.block_index += st.depth
            w_in = st.width
        self.stages = nn.Sequential(*stages)
        self.num_features = w_in
        self.head = HEADS.get(arch.head.type).build(w_in, arch.head, ctx)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: the feature map before the head."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Head: pooled features (`pre_logits`) or logits."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor]]]:
        """Main logits and (loss weight, logits) of every auxiliary classifier (none in eval mode or deploy form)."""
        aux = getattr(self.head, "aux", None)
        if not aux or not self.training:
            return self(x), []
        x, extra = self.stem(x), []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if str(i) in aux:
                extra.append((aux.weight, aux[str(i)](x)))
        return self.forward_head(x), extra

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for `num_classes` (0: identity, features only)."""
        self.num_classes = num_classes
        self.head.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        """The final classification layer."""
        return self.head.get_classifier()


def sequential_stage(w_in: int, stage: Stage, ctx: BuildContext,
                     make_block: Callable[[int, int, int, int], nn.Module]) -> nn.Sequential:
    """`stage.depth` blocks from `make_block(w_in, w_out, stride, i)`, the first one taking the stage's stride."""
    blocks = []
    for i in range(stage.depth):
        blocks.append(make_block(w_in if i == 0 else stage.width, stage.width, stage.stride if i == 0 else 1, i))
    return nn.Sequential(*blocks)


def build(arch: Arch, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float | None = None,
          drop_path_rate: float = 0.0) -> Net:
    """Build the training form of `arch`."""
    return Net(arch, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
