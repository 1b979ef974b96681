"""Measured cost of a model: parameters, MACs (torch.utils.flop_counter) and activations, overall and per module."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from space import Arch, count_params, create_model, resolve_arch, set_lambda
from space import deploy as to_deploy


@dataclass(frozen=True)
class Cost:
    """Cost of one model at one input size: params, MACs (FLOPs / 2), activations (conv/linear output elements)."""

    params: int
    macs: int
    activations: int
    input_size: int
    params_deploy: int | None = None
    macs_deploy: int | None = None
    activations_deploy: int | None = None

    def to_dict(self) -> dict:
        """Plain dict."""
        return asdict(self)


def _leaf_outputs(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, tuple]]:
    """Sum of conv/linear output elements and each named module's output shape."""
    total = 0
    shapes: dict[str, tuple] = {}
    hooks = []

    def count(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel()

    def shape(name: str):
        def hook(mod: nn.Module, inp: tuple, out: object) -> None:
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape)
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(count))
        hooks.append(m.register_forward_hook(shape(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total, shapes


def count_macs(model: nn.Module, input_size: int = 224, in_chans: int = 3, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass (FlopCounterMode total FLOPs / 2, functional convs included)."""
    x = torch.zeros(batch, in_chans, input_size, input_size, device=_device(model))
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        model.train(was)
    return fc.get_total_flops() // 2


def module_breakdown(model: nn.Module, input_size: int = 224, in_chans: int = 3) -> list[dict]:
    """Per named module: output shape, params (recursive), MACs (recursive) — for layer tables."""
    x = torch.zeros(1, in_chans, input_size, input_size, device=_device(model))
    was = model.training
    model.eval()
    try:
        _, shapes = _leaf_outputs(model, x)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        model.train(was)
    flops: dict[str, int] = defaultdict(int)
    root = type(model).__name__
    for key, ops in fc.get_flop_counts().items():
        name = key[len(root) + 1:] if key.startswith(root + ".") else ("" if key == root else key)
        flops[name] = sum(ops.values())
    # Containers that are never called themselves (ModuleList) get the MACs of their children.
    for name, m in reversed(list(model.named_modules())):
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)) and not flops.get(name):
            prefix = f"{name}." if name else ""
            flops[name] = sum(flops.get(prefix + child, 0) for child, _ in m.named_children())
    rows = []
    for name, m in model.named_modules():
        rows.append({"name": name, "type": type(m).__name__, "shape": shapes.get(name),
                     "params": sum(p.numel() for p in m.parameters()), "macs": flops.get(name, 0) // 2})
    return rows


def count_activations(model: nn.Module, input_size: int = 224, in_chans: int = 3) -> int:
    """Sum of the output elements of every conv and linear layer for one image."""
    x = torch.zeros(1, in_chans, input_size, input_size, device=_device(model))
    was = model.training
    model.eval()
    try:
        total, _ = _leaf_outputs(model, x)
    finally:
        model.train(was)
    return total


def measure_cost(arch: Arch | str, *, input_size: int = 224, num_classes: int = 1000, in_chans: int = 3,
                 width_mult: float = 1.0, deploy: bool = True) -> Cost:
    """Params/MACs/activations of the training form, plus those of the deploy form when `deploy`.

    The model is built on the meta device (shapes, no weights), so a constraint check takes milliseconds; results
    are memoized per architecture and settings.
    """
    point = resolve_arch(arch).scaled(width_mult)
    return _cost(point, input_size, num_classes, in_chans, deploy)


@functools.lru_cache(maxsize=4096)
def _cost(arch: Arch, input_size: int, num_classes: int, in_chans: int, deploy: bool) -> Cost:
    try:
        return _measure(arch, input_size, num_classes, in_chans, deploy, "meta")
    except (NotImplementedError, RuntimeError):  # a family that reads weight values while building or fusing
        return _measure(arch, input_size, num_classes, in_chans, deploy, "cpu")


def _measure(arch: Arch, input_size: int, num_classes: int, in_chans: int, deploy: bool, device: str) -> Cost:
    with torch.device(device):
        model = create_model(arch, num_classes=num_classes, in_chans=in_chans)
        params = count_params(model)
        macs, acts = _macs_and_activations(model, input_size, in_chans)
        if not deploy:
            return Cost(params=params, macs=macs, activations=acts, input_size=input_size)
        set_lambda(model, 1.0)
        to_deploy(model)
        macs_d, acts_d = _macs_and_activations(model, input_size, in_chans)
        return Cost(params=params, macs=macs, activations=acts, input_size=input_size,
                    params_deploy=count_params(model), macs_deploy=macs_d, activations_deploy=acts_d)


def _macs_and_activations(model: nn.Module, input_size: int, in_chans: int) -> tuple[int, int]:
    """`count_macs` and `count_activations` from one forward pass."""
    acts = 0

    def count(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal acts
        acts += out.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, in_chans, input_size, input_size, device=_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return fc.get_total_flops() // 2, acts


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
