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
