"""Named points compute their reference network's function: the reference's (random) weights, loaded into ours in
state-dict order, give the same logits.

Runs where timm and torchvision import (`bash scripts/timm_interop.sh`); elsewhere the module is skipped. The
reference of each point is the one its golden entry names (tests/space/golden), built by scripts/golden_reference.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("torchvision")

from space import create_model  # noqa: E402  (after the skips: this module only runs beside timm)
from tests.conftest import load_golden, randomize_bn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from golden_reference import build  # noqa: E402

# The lineage's last points, whose module order follows their reference's (stem, blocks in order, SE before the
# shortcut's projection, squeeze before the expands, classifier last), so a positional load is a full check.
NAMES = ["mobilenet_v1", "mobilenet_v1_050", "mobilenet_v1_125", "seresnet18", "seresnet50", "seresnext50_32x4d",
         "squeezenet1_0", "squeezenet1_1"]
GOLDEN = load_golden()


def load_in_order(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Copy `ref`'s tensors into `ours` pairwise in state-dict order; every pair must have the same shape."""
    theirs = [(k, v) for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")]
    mine = [k for k in ours.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(mine) == len(theirs)
    state = ours.state_dict()
    for k, (rk, v) in zip(mine, theirs):
        assert state[k].shape == v.shape, f"{k} {tuple(state[k].shape)} vs the reference's {rk} {tuple(v.shape)}"
        state[k] = v.clone()
    ours.load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_same_function_as_the_reference_with_its_weights(name: str) -> None:
    torch.manual_seed(0)
    ref = randomize_bn(build(GOLDEN[name]["reference"]).eval().double())
    ours = create_model(name).eval().double()
    load_in_order(ours, ref)
    for size in (224, 230):  # 230: ceil-mode pools round up where floor mode would not
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert got.shape == expected.shape == (2, 1000)
        assert (got - expected).abs().max().item() <= 1e-9 * max(1.0, expected.abs().max().item())
