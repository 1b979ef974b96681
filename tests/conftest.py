"""Shared test set-up: deterministic, single-threaded torch (CI has 2 cores) and the golden figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)
GOLDEN_DIR = Path(__file__).parent / "space" / "golden"


def load_golden() -> dict[str, dict]:
    """Every golden entry (name → figures) from tests/space/golden/*.yaml."""
    out: dict[str, dict] = {}
    for f in sorted(GOLDEN_DIR.glob("*.yaml")):
        for name, entry in (yaml.safe_load(f.read_text()) or {}).items():
            assert name not in out, f"{name} is in two golden files"
            out[name] = entry
    return out


@pytest.fixture(scope="session")
def golden() -> dict[str, dict]:
    """Golden figures of the named points."""
    return load_golden()


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so fusions are really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model
