"""Deploy (re-parameterization) and VanillaNet deep-training protocols, both duck-typed walks over modules.

A module that can fuse itself defines `reparameterize()`; it is then responsible for its whole subtree (it may call
`deploy` on children it keeps). A module whose `training_only` is true (auxiliary classifiers) is removed first:
its parent's attribute becomes None. A module with a deep-training slope defines `set_lambda(lam)`.
"""

from __future__ import annotations

import torch
from torch import nn

from space.errors import DeployError


def deploy(model: nn.Module) -> nn.Module:
    """Re-parameterize `model` in place into its deploy form (no training-only modules, fused BN, merged branches).

    Returns it, in eval mode.
    """
    lam = get_lambda(model)
    if lam is not None and lam < 1.0:
        raise DeployError(f"deep-training slope lambda is {lam:.4g} < 1: the conv pairs are only mergeable at "
                          "lambda = 1; finish the lambda schedule (or call space.set_lambda(model, 1.0)) first")
    model.eval()
    drop_training_only(model)
    with torch.no_grad():
        _walk(model)
    if hasattr(model, "deployed"):
        model.deployed = True
    return model


def _walk(module: nn.Module) -> None:
    if hasattr(module, "reparameterize"):
        module.reparameterize()
        return
    for child in module.children():
        _walk(child)


def drop_training_only(model: nn.Module) -> nn.Module:
    """Remove, in place, the modules only the training form has (auxiliary classifiers); returns `model`."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if getattr(child, "training_only", False):
                setattr(module, name, None)
    return model


def set_lambda(model: nn.Module, lam: float) -> int:
    """Set the deep-training slope of every module that has one; returns how many were set."""
    n = 0
    for m in model.modules():
        if hasattr(m, "set_lambda"):
            m.set_lambda(float(lam))
            n += 1
    return n


def get_lambda(model: nn.Module) -> float | None:
    """The smallest deep-training slope in `model`, or None when it has no deep-training modules."""
    lams = [m.lam for m in model.modules() if hasattr(m, "set_lambda")]
    return min(lams) if lams else None


def has_deep_training(model: nn.Module) -> bool:
    """Whether `model` has modules with a deep-training slope."""
    return get_lambda(model) is not None
