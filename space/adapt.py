"""Input adaptation: an ImageNet-style network made to fit a small input, the way CIFAR papers adapt ResNets.

A network designed for 224 px downsamples 32x; on a 16-32 px image its last stages would see a 1x1 (or empty) map,
and a comparison with networks designed for small inputs would measure the stem, not the architecture. The
adaptation removes downsampling, in a fixed order, until the last feature map is at least `min_feature` pixels
wide:

1. the stem's pooling (ResNet's max pool);
2. the stem's stride, halved (a stride-2 stem conv becomes stride 1; a 4x4 patchify stem becomes 2x2);
3. the earliest strided stage, its stride set to 1.

Kernels and widths are left alone. Every evaluated architecture of a study goes through the same function, named
points and sampled points alike, so the comparison is fair; one that already fits is returned unchanged.
`space.create_model(name)` keeps building the original network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from space.arch import Arch
from space.errors import SpecError


@dataclass(frozen=True)
class Adaptation:
    """The adapted architecture and what was changed (empty when the original already fits)."""

    arch: Arch
    changes: tuple[str, ...]
    stem_only: bool

    @property
    def label(self) -> str:
        """'small-input stem' / 'small-input strides' ('' when nothing changed): how tables tag the network."""
        if not self.changes:
            return ""
        return "small-input stem" if self.stem_only else "small-input strides"


def adapt_input(arch: Arch, resolution: int, min_feature: int = 2) -> Adaptation:
    """`arch` with stem pooling, stem stride and early stage strides reduced until `resolution` fits (see module)."""
    if resolution < 1 or min_feature < 1:
        raise SpecError(f"resolution {resolution} and min_feature {min_feature} must be >= 1")
    d = arch.to_dict()
    changes: list[str] = []
    stem_only = True
    current = arch
    while resolution // current.total_stride < min_feature:
        step = _next_step(d, current)
        if step is None:
            break  # nothing left to reduce: the network keeps its (1x1) last map and says so through its shape
        text, in_stem = step
        changes.append(text)
        stem_only = stem_only and in_stem
        current = Arch.from_dict(d, source=f"{arch.name or arch.hash} adapted to {resolution} px")
    return Adaptation(current, tuple(changes), stem_only)


def _next_step(d: dict[str, Any], arch: Arch) -> tuple[str, bool] | None:
    """Reduce one downsampling of `d` in place; (what was done, whether in the stem), or None when none is left."""
    stem = d["stem"]
    params = arch.stem.params
    if getattr(params, "pool", "none") != "none" and getattr(params, "pool_stride", 1) > 1:
        stem["pool"] = "none"
        for k in [k for k in stem if k.startswith("pool_")]:
            del stem[k]
        return "stem pooling removed", True
    for key in ("stride", "patch"):
        value = getattr(params, key, 1)
        if isinstance(value, int) and value > 1 and _try(d, ("stem", key), value // 2):
            return f"stem {key} {value}→{value // 2}", True
    for i, st in enumerate(arch.stages):
        if st.stride > 1 and _try(d, ("stages", i, "stride"), 1):
            return f"stage {i} stride {st.stride}→1", False
    return None


def _try(d: dict[str, Any], path: tuple, value: int) -> bool:
    """Set `d[path] = value` if the result is a valid architecture; leave `d` as it was otherwise."""
    *parents, last = path
    node: Any = d
    for p in parents:
        node = node[p]
    had, old = last in node, node.get(last)
    node[last] = value
    try:
        Arch.from_dict(d)
        return True
    except SpecError:
        if had:
            node[last] = old
        else:
            del node[last]
        return False


class _OutOfPixels(Exception):
    """Raised inside a forward pass by the first layer whose input is smaller than its window."""


def out_of_pixels(model: nn.Module, resolution: int, in_chans: int = 3) -> str | None:
    """Which layer of `model` runs out of pixels on a `resolution` px input ('features.5 (MaxPool2d, kernel 3)
    gets a 1x1 map'), or None when a forward pass fits."""
    def check(name: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if x is None or x.dim() != 4:
                return
            for axis, size in enumerate(x.shape[-2:]):
                window, pad = _window(module, axis)
                if size + 2 * pad < window:
                    kind = type(module).__name__
                    raise _OutOfPixels(f"{name} ({kind}, kernel {_pair(module.kernel_size)[axis]}) gets a "
                                       f"{x.shape[-2]}x{x.shape[-1]} map")
        return hook

    handles = [m.register_forward_pre_hook(check(name)) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, resolution, resolution))
    except _OutOfPixels as e:
        return str(e)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return None


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window(module: nn.Module, axis: int) -> tuple[int, int]:
    """(receptive window along `axis`, padding on each side) of a conv or pool."""
    kernel = _pair(module.kernel_size)[axis]
    dilation = _pair(getattr(module, "dilation", 1))[axis]
    padding = module.padding
    if isinstance(padding, str):  # 'same' keeps the size; 'valid' pads nothing
        return (1, 0) if padding == "same" else (dilation * (kernel - 1) + 1, 0)
    return dilation * (kernel - 1) + 1, _pair(padding)[axis]
