"""Trials per GPU: the choice from measured throughputs, and a real calibration run (on the CPU here)."""

from __future__ import annotations

import pytest

from evaluators.packing import (
    DEFAULT_TRIALS_PER_GPU,
    MEMORY_HEADROOM,
    Packing,
    PackingError,
    calibrate_packing,
    choose_trials_per_gpu,
    synthetic_data,
)
from evaluators.train import TrainConfig
from space import Arch

GIB = 1 << 30


@pytest.mark.parametrize(("throughput", "k"), [
    ({1: 4.1, 2: 8.0, 4: 15.0, 8: 16.0}, 4),  # the H200's shape: flattens after 4 (8 adds 7 %)
    ({1: 4.1, 2: 8.0, 4: 15.0, 8: 25.0}, 8),  # still growing at the largest k measured
    ({1: 10.0, 2: 10.5}, 1),  # a GPU the single trial already fills
    ({1: 10.0, 2: 18.0, 4: None}, 2),  # 4 failed (out of memory)
    ({1: 10.0, 2: 18.0, 4: float("nan"), 8: 40.0}, 2),  # a failure ends the search even if a larger k looked good
    ({1: 10.0, 2: 9.0, 4: 30.0}, 1),  # a drop ends it: larger k is not tried past a loss
    ({1: 10.0}, 1),
])
def test_choice_stops_where_the_gain_flattens(throughput: dict, k: int) -> None:
    assert choose_trials_per_gpu(throughput) == k


def test_choice_respects_memory() -> None:
    growing = {1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0}
    assert choose_trials_per_gpu(growing, peak_memory=10 * GIB, total_memory=40 * GIB) == 2  # 0.8 × 40 = 32 GiB
    assert choose_trials_per_gpu(growing, peak_memory=1 * GIB, total_memory=40 * GIB) == 8
    assert choose_trials_per_gpu(growing, peak_memory=50 * GIB, total_memory=40 * GIB) == 1
    assert MEMORY_HEADROOM < 1


def test_choice_threshold_is_a_setting() -> None:
    t = {1: 10.0, 2: 11.5, 4: 12.0}
    assert choose_trials_per_gpu(t, min_gain=0.1) == 2 and choose_trials_per_gpu(t, min_gain=0.2) == 1


def test_choice_needs_the_single_trial() -> None:
    for bad in ({}, {2: 5.0}, {1: None, 2: 5.0}, {1: 0.0}):
        with pytest.raises(PackingError, match="k = 1"):
            choose_trials_per_gpu(bad)


def test_packing_fraction_and_speedup() -> None:
    p = Packing(trials_per_gpu=4, throughput={1: 4.1, 2: 8.0, 4: 15.0, 8: 16.0})
    assert p.gpu_fraction == 0.25 and p.speedup == pytest.approx(15.0 / 4.1)
    default = Packing(trials_per_gpu=DEFAULT_TRIALS_PER_GPU, throughput={1: 1.0})
    assert default.gpu_fraction == 1 / DEFAULT_TRIALS_PER_GPU


def test_synthetic_data_has_the_proxy_shape() -> None:
    d = synthetic_data(8, 16, 10, 3)
    assert d.x_train.shape == (32, 3, 16, 16) and d.x_val.shape == (8, 3, 16, 16) and int(d.y_train.max()) < 10


def test_cuda_calibration_without_cuda_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(PackingError, match="CUDA is not available"):
        calibrate_packing("resnet18", TrainConfig(device="cuda"), resolution=32)


@pytest.mark.slow
def test_calibration_runs_packed_processes() -> None:
    """Real processes training real steps together (on the CPU here, one thread each): throughput per k, a choice."""
    arch = Arch.from_dict({"stem": {"type": "conv", "width": 8, "kernel": 3, "stride": 1},
                           "stages": [{"block": "basic", "depth": 1, "width": 16, "stride": 2}],
                           "head": {"type": "classifier"}})
    p = calibrate_packing(arch, TrainConfig(batch_size=16, device="cpu"), resolution=16, ks=(1, 2), steps=8,
                          warmup_steps=2, min_gain=-1.0)  # any k that runs is kept: both are measured
    assert set(p.throughput) == {1, 2} and all(t is not None and t > 0 for t in p.throughput.values())
    assert p.trials_per_gpu == 2 == choose_trials_per_gpu(p.throughput, min_gain=-1.0)
    assert p.peak_memory is None and p.total_memory is None
