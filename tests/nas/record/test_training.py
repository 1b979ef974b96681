"""The marks that say whether a run is a measurement: did it train, had it converged (nas.record.training)."""

from __future__ import annotations

import math

import pytest
import torch

from evaluators import DataConfig, TrainConfig, load_data, train_model
from nas.record.training import (
    CONVERGED,
    DID_NOT_TRAIN,
    NOT_CONVERGED,
    chance_band,
    convergence_mark,
    floor_loss,
    run_mark,
    trained_mark,
)
from space import create_model


def test_still_rising_over_the_last_quarter_is_not_converged() -> None:
    rising = [0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]
    mark = convergence_mark(rising, noise=0.01, val_images=500)
    assert mark.status == NOT_CONVERGED and "still rising" in mark.why


def test_a_plateau_within_noise_is_converged() -> None:
    flat = [0.3, 0.6, 0.75, 0.8, 0.81, 0.805, 0.812, 0.808]
    assert convergence_mark(flat, noise=0.01, val_images=500).status == CONVERGED


def test_the_noise_decides_a_small_rise() -> None:
    curve = [0.5, 0.7, 0.78, 0.8, 0.81, 0.815, 0.82, 0.825]  # +0.015 over the last two epochs
    assert convergence_mark(curve, noise=0.05, val_images=500).status == CONVERGED
    assert convergence_mark(curve, noise=0.001, val_images=500).status == NOT_CONVERGED


def test_a_patience_stop_is_converged_and_a_short_run_is_not() -> None:
    assert convergence_mark([0.5, 0.6], noise=0.01, val_images=100, stopped_early=True).status == CONVERGED
    assert convergence_mark([0.5, 0.6, 0.6], noise=0.01, val_images=100).status == NOT_CONVERGED


def test_chance_accuracy_or_a_loss_at_ln_c_did_not_train() -> None:
    assert trained_mark([0.1, 0.11, 0.1], [2.31, 2.30, 2.30], 10, 400).status == DID_NOT_TRAIN
    # above chance, but the loss never fell clearly below ln 10: not a trained network either
    mark = trained_mark([0.1, 0.2, 0.25], [2.4, 2.31, 2.29], 10, 400)
    assert mark is not None and "training loss" in mark.why
    assert trained_mark([0.3, 0.6, 0.8], [2.0, 1.2, 0.7], 10, 400) is None


def test_label_smoothing_raises_the_floor_not_the_prior() -> None:
    assert floor_loss(10, 0.0) == 0.0
    assert 0.4 < floor_loss(10, 0.1) < 0.6  # entropy of the smoothed targets
    # a run that reached the smoothed floor trained, even though its loss is far above 0
    assert trained_mark([0.4, 0.9], [1.8, floor_loss(10, 0.1) + 0.05], 10, 400, smoothing=0.1) is None
    assert chance_band(10, 400) == pytest.approx(0.1 + 2 * math.sqrt(0.09 / 400))


def test_a_real_network_trained_with_lr_0_did_not_train() -> None:
    data = load_data(DataConfig(name="digits", resolution=8, limit_train=512, limit_val=256))
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=data.num_classes, in_chans=data.in_chans, width_mult=0.25)
    frozen = train_model(model, data, TrainConfig(epochs=4, batch_size=32, optimizer="adamw", lr=0.0, seed=0))
    mark = run_mark(frozen.history, frozen.losses, data.num_classes, len(data.y_val), smoothing=0.1)
    assert mark.status == DID_NOT_TRAIN, (frozen.history, frozen.losses)

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=data.num_classes, in_chans=data.in_chans, width_mult=0.25)
    live = train_model(model, data, TrainConfig(epochs=4, batch_size=32, optimizer="adamw", lr=0.003, seed=0))
    assert trained_mark(live.history, live.losses, data.num_classes, len(data.y_val), 0.1) is None, live.history
