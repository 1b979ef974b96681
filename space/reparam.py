"""Deploy (re-parameterization) and VanillaNet deep-training protocols, both duck-typed walks over modules.

A module that can fuse itself defines `reparameterize()`; it is then responsible for its whole subtree (it may call
`deploy` on children it keeps). A module whose `training_only` is true (auxiliary classifiers) is removed first:
its parent's attribute becomes None. A module with a deep-training slope defines `set_lambda(lam)`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

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


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Within: float32 matmuls and cuDNN convolutions in full precision (no TF32) and cuDNN autotuning off.

    Restores every setting on exit. TF32 (on by default for cuDNN convolutions on Ampere and later GPUs) keeps 10 bits
    of mantissa, which would hide or fake a fusion error of the deploy form; the CPU is unaffected either way.
    Torch ≥ 2.9 has per-operator precision settings and refuses to read the legacy flags once the two are mixed, so
    each is saved and set through the interface it was last set with.
    """
    backends = torch.backends
    per_op = hasattr(backends.cuda.matmul, "fp32_precision") and hasattr(backends.cudnn, "conv")
    try:
        matmul = torch.get_float32_matmul_precision()
    except RuntimeError:  # set through the per-operator interface only
        matmul = None
    saved = ((backends.cuda.matmul.fp32_precision, backends.cudnn.conv.fp32_precision,
              backends.cudnn.rnn.fp32_precision) if per_op else backends.cudnn.allow_tf32)
    benchmark = backends.cudnn.benchmark
    try:
        if matmul is not None:
            torch.set_float32_matmul_precision("highest")
        if per_op:
            if matmul is None:
                backends.cuda.matmul.fp32_precision = "ieee"
            backends.cudnn.conv.fp32_precision = "ieee"
            backends.cudnn.rnn.fp32_precision = "ieee"
        else:
            backends.cudnn.allow_tf32 = False
        backends.cudnn.benchmark = False  # autotuning may pick FFT or Winograd kernels, less exact in float32
        yield
    finally:
        backends.cudnn.benchmark = benchmark
        if matmul is not None:
            torch.set_float32_matmul_precision(matmul)
        if per_op:
            (backends.cuda.matmul.fp32_precision, backends.cudnn.conv.fp32_precision,
             backends.cudnn.rnn.fp32_precision) = saved
        else:
            backends.cudnn.allow_tf32 = saved


def deploy_difference(model: nn.Module, x: torch.Tensor) -> float:
    """max |train-form logits − deploy-form logits| / max |train-form logits| on `x`, in eval mode, without TF32.

    `model` (training form, on the device of `x`) is left as it is; its deploy form is built from a copy.
    """
    was = model.training
    model.eval()
    try:
        with exact_float32(), torch.no_grad():
            ref = model(x)
            dep = deploy(copy.deepcopy(model))(x)
    finally:
        model.train(was)
    return ((ref - dep).abs().max() / ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny)).item()
