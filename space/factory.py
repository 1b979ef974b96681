"""`create_model`: the one public way to get a network from a name, an `Arch` value or an architecture file."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from space.arch import Arch
from space.builder import Net, build
from space.reparam import deploy as deploy_model
from space.zoo import MODELS, find_entry, get_arch


def resolve_arch(spec: str | Path | Arch) -> Arch:
    """An `Arch` from a named point, a path to a .yaml/.json file, or an `Arch` (returned as is)."""
    if isinstance(spec, Arch):
        return spec.validate()
    text = str(spec)
    if text in MODELS or find_entry(text) is not None:
        return get_arch(text)
    if text.endswith((".yaml", ".yml", ".json")) or Path(text).is_file():
        return Arch.load(text)
    return get_arch(text)  # raises UnknownNameError with a suggestion


def create_model(spec: str | Path | Arch, *, deploy: bool = False, num_classes: int = 1000, in_chans: int = 3,
                 width_mult: float = 1.0, drop_rate: float | None = None, drop_path_rate: float = 0.0) -> Net:
    """Build a named point, architecture value or architecture file, in training or deploy form.

    `width_mult` scales every channel count (for cheap proxies); `drop_rate` overrides the head dropout.
    """
    arch = resolve_arch(spec).scaled(width_mult)
    model = build(arch, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                  drop_path_rate=drop_path_rate)
    if deploy:
        from space.reparam import set_lambda

        set_lambda(model, 1.0)
        deploy_model(model)
    return model


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
