"""Seed repeats in the record: the seed mean becomes the plotted value, the search's seed stays readable."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas.record.repeats import seed0_accuracy, spread_of, store_mean, stored
from nas.record.trials import front
from tests.nas.views.test_report import filled


def test_seed_mean_becomes_the_value_and_moves_the_front(tmp_path: Path) -> None:
    rec, n = filled(tmp_path, "means")  # front: #fast (0.70, 0.4 ms), #best (0.90, 1.2 ms); resnet18 0.80 at 1.5 ms
    study, ostudy = rec.study, rec.ostudy
    best = ostudy.trials[n["best"]]
    assert store_mean(ostudy, study, best.user_attrs["hash"]) == []  # one seed: nothing to settle
    for k, acc in ((1, 0.70), (2, 0.74)):  # two more seeds put #best's mean (0.78) below resnet18's 0.80
        ostudy.set_user_attr(f"repeat:{best.user_attrs['hash']}:{k}", {"accuracy": acc, "seed": k})
    assert store_mean(ostudy, study, best.user_attrs["hash"]) == [best.number]

    fresh = optuna.load_study(study_name="means", storage=study.storage)
    for reader in (ostudy, fresh):  # this process (its cached trials updated) and a fresh reader
        t = reader.trials[best.number]
        assert t.values[0] == pytest.approx(0.78) and t.user_attrs["accuracy"] == pytest.approx(0.78)
        assert t.user_attrs["accuracy_seed0"] == 0.9 == seed0_accuracy(t) and t.user_attrs["seeds"] == 3
        spread = spread_of(t, stored(reader))  # repeat 0 is still the search's seed, not the mean
        assert spread.values == (0.9, 0.70, 0.74) and spread.mean == pytest.approx(0.78)
        # By its mean #best no longer beats resnet18 (0.80, 1.5 ms) on accuracy: resnet18 joins the front.
        assert sorted(t.number for t in front(reader)) == sorted([n["fast"], n["best"], n["resnet18"]])
    assert store_mean(ostudy, study, best.user_attrs["hash"]) == [best.number]  # idempotent
    assert ostudy.trials[best.number].values[0] == pytest.approx(0.78)
