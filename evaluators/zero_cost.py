"""Zero-cost proxies: scores of an untrained network from at most one batch, as cheap objectives or pre-filters.

- `synflow` (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al. 2021): Σ|θ ⊙ ∂R/∂θ| over conv and linear
  weights, where R is the sum of the output of the network with |θ| on an all-ones input (data-free).
- `naswot` (Mellor et al. 2021, "NAS without training"): log|det K| of the kernel of binary activation codes of a
  batch, K_ij = number of units where samples i and j agree on being active.
- `snip` (Lee et al. 2019, as a NAS proxy by Abdelfattah et al. 2021): Σ|θ ⊙ ∂L/∂θ| for the cross-entropy of a batch.

Each works on a copy, so the model (its weights, gradients and BatchNorm statistics) is left untouched.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import Data
from space.errors import UnknownNameError
from space.layers import SeriesAct

# Activations whose input sign is the unit's "active" code for NASWOT (the series activation starts with a ReLU).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.SiLU, nn.GELU, nn.Mish,
               nn.Hardswish, SeriesAct)


def synflow(model: nn.Module, data: Data, *, batch_size: int = 64, seed: int = 0) -> float:
    """Synaptic flow of the network (data-free: only the input shape is used)."""
    net = copy.deepcopy(model).double()  # the product of |weights| along paths overflows float32 on deep nets
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()  # eval-mode BN with fresh statistics is an affine map, as the proxy assumes
    net.eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    x = torch.ones(1, *data.x_train.shape[1:], dtype=torch.float64, device=_device(net))
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    return _saliency(net)


def naswot(model: nn.Module, data: Data, *, batch_size: int = 64, seed: int = 0) -> float:
    """log|det K| of the activation-code kernel of a seeded random batch (-inf when two codes coincide)."""
    net = copy.deepcopy(model).train()
    x, _ = _batch(data, batch_size, seed, _device(net))
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: tuple) -> None:
        codes = (inputs[0].detach().flatten(1) > 0).float()
        # Exact in float32 (integer counts below 2**24 per layer), accumulated in float64 across layers.
        kernel.add_((codes @ codes.t() + (1 - codes) @ (1 - codes).t()).double())

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return torch.linalg.slogdet(kernel).logabsdet.item()


def snip(model: nn.Module, data: Data, *, batch_size: int = 64, seed: int = 0) -> float:
    """Connection sensitivity Σ|θ ⊙ ∂L/∂θ| for the cross-entropy of a seeded random batch."""
    net = copy.deepcopy(model).train()
    x, y = _batch(data, batch_size, seed, _device(net))
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return _saliency(net)


PROXIES: dict[str, Callable[..., float]] = {"synflow": synflow, "naswot": naswot, "snip": snip}


def score(name: str, model: nn.Module, data: Data, *, batch_size: int = 64, seed: int = 0) -> tuple[float, float]:
    """(score, seconds it took) of zero-cost proxy `name` for `model`; higher is predicted better."""
    if name not in PROXIES:
        raise UnknownNameError("zero-cost proxy", name, PROXIES)
    start = time.perf_counter()
    value = PROXIES[name](model, data, batch_size=batch_size, seed=seed)
    return value, time.perf_counter() - start


def _saliency(net: nn.Module) -> float:
    """Σ|w ⊙ ∂/∂w| over the weights of conv and linear layers (the gradients are already there)."""
    total = torch.zeros((), dtype=torch.float64, device=_device(net))
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
            total += (m.weight.detach() * m.weight.grad).abs().sum().double()
    return total.item()


def _batch(data: Data, batch_size: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random batch of training samples (at least 2, for BatchNorm)."""
    n = len(data.y_train)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max(2, min(batch_size, n))]
    idx = idx.to(data.x_train.device)
    return data.x_train[idx].to(device), data.y_train[idx].to(device)


def _device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
