"""Proxy training on real data (digits): learns, reports every epoch, stops early, is reproducible, deep training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import space
from evaluators.data import Data, DataConfig, load_data
from evaluators.train import TrainConfig, TrainingDiverged, crop_flip, train_model
from space import Arch, SpecError, create_model
from space.layers import DropPath

SMALL_RESNET = Arch.from_dict({
    "stem": {"type": "conv", "width": 16, "kernel": 3, "stride": 1},
    "stages": [{"block": "basic", "depth": 1, "width": 16, "stride": 1},
               {"block": "basic", "depth": 1, "width": 32, "stride": 2},
               {"block": "basic", "depth": 1, "width": 64, "stride": 2}],
    "head": {"type": "classifier"},
})
QUICK = TrainConfig(epochs=2, steps_per_epoch=6, batch_size=32, lr=0.1)


@pytest.fixture(scope="module")
def digits16() -> Data:
    return load_data(DataConfig(resolution=16, limit_train=512, limit_val=128))


def small_resnet(seed: int = 0, **kw: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(SMALL_RESNET, num_classes=10, in_chans=1, **kw)


def test_reports_every_epoch_and_learns(digits16: Data) -> None:
    seen: list[tuple[int, float]] = []
    model = small_resnet()
    r = train_model(model, digits16, TrainConfig(epochs=3, batch_size=32, lr=0.1),
                    callback=lambda e, acc: seen.append((e, acc)))
    assert [e for e, _ in seen] == [0, 1, 2] and [a for _, a in seen] == r.history
    assert r.epochs == 3 and not r.stopped_early and r.model is model and r.seconds > 0
    assert r.accuracy == r.history[-1] and len(r.losses) == 3 and r.losses[-1] < r.losses[0]
    assert r.accuracy > 0.5  # 10 classes: chance is 0.1
    assert torch.get_num_threads() == 1  # restored


def test_reproducible_for_a_seed(digits16: Data) -> None:
    a = train_model(small_resnet(), digits16, QUICK)
    b = train_model(small_resnet(), digits16, QUICK)
    assert a.history == b.history and a.losses == b.losses
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    c = train_model(small_resnet(), digits16, TrainConfig(**{**QUICK.__dict__, "seed": 1}))
    assert c.losses != a.losses


def test_callback_stops_early(digits16: Data) -> None:
    r = train_model(small_resnet(), digits16, TrainConfig(epochs=4, steps_per_epoch=2, batch_size=32),
                    callback=lambda e, acc: e == 1)
    assert r.stopped_early and r.epochs == 2 and len(r.history) == 2


def test_adamw_no_augment_and_drop_path(digits16: Data) -> None:
    model = small_resnet(drop_path_rate=0.1)
    drops = [m for m in model.modules() if isinstance(m, DropPath)]
    assert drops
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=16, optimizer="adamw", lr=1e-3, augment=False,
                      drop_path_rate=0.2)
    r = train_model(model, digits16, cfg)
    assert 0.0 <= r.accuracy <= 1.0
    assert drops[-1].p == pytest.approx(0.2) and all(a.p <= b.p for a, b in zip(drops, drops[1:]))


def test_divergence_is_reported(digits16: Data) -> None:
    with pytest.raises(TrainingDiverged, match=r"at epoch 0 step \d+"):
        train_model(small_resnet(), digits16, TrainConfig(epochs=1, steps_per_epoch=5, batch_size=32, lr=1e30,
                                                          warmup_epochs=0))


def test_bad_settings(digits16: Data) -> None:
    with pytest.raises(SpecError, match="did you mean 'adamw'") as e:
        train_model(small_resnet(), digits16, TrainConfig(optimizer="adam"))
    assert "\n" not in str(e.value) and "optimizer" in str(e.value)
    with pytest.raises(SpecError, match="batch_size"):
        train_model(small_resnet(), digits16, TrainConfig(batch_size=1))
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="CUDA is not available"):
            train_model(small_resnet(), digits16, TrainConfig(device="cuda"))


def test_vanillanet_lambda_schedule_deploys_exactly() -> None:
    if "vanillanet_5" not in space.MODELS:
        pytest.skip("vanillanet_5 is not registered")
    data = load_data(DataConfig(resolution=32, limit_train=256, limit_val=64))
    torch.manual_seed(0)
    model = create_model("vanillanet_5", num_classes=10, in_chans=1, width_mult=1 / 32)
    lams: list[float] = []
    cfg = TrainConfig(epochs=4, steps_per_epoch=4, batch_size=32, lr=0.05, lambda_fraction=0.5)
    r = train_model(model, data, cfg, callback=lambda e, acc: lams.append(space.get_lambda(model)))
    assert lams == [0.5, 1.0, 1.0, 1.0]  # annealed over the first half of the 16 steps
    assert space.get_lambda(r.model) == 1.0
    x = data.x_val[:16]
    model.eval()
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))(x)
    assert (ref - dep).abs().max().item() <= 1e-5 * ref.abs().max().item() + 1e-6


def test_vanillanet_early_stop_still_deploys() -> None:
    if "vanillanet_5" not in space.MODELS:
        pytest.skip("vanillanet_5 is not registered")
    data = load_data(DataConfig(resolution=32, limit_train=128, limit_val=32))
    model = create_model("vanillanet_5", num_classes=10, in_chans=1, width_mult=1 / 32)
    r = train_model(model, data, TrainConfig(epochs=4, steps_per_epoch=2, batch_size=32, lambda_fraction=1.0),
                    callback=lambda e, acc: True)
    assert r.stopped_early and space.get_lambda(model) == 1.0
    space.deploy(model)  # would raise DeployError at lambda < 1


@pytest.mark.slow
def test_digits_small_resnet_well_above_chance() -> None:
    data = load_data(DataConfig())  # digits at 32x32, 1,438 train / 359 validation images
    a = train_model(small_resnet(), data, TrainConfig(epochs=5, batch_size=64))
    assert a.accuracy >= 0.90
    b = train_model(small_resnet(), data, TrainConfig(epochs=5, batch_size=64))
    assert b.history == a.history


def test_crop_flip_is_a_padded_crop_and_flip() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, 6, 5, generator=g)
    idx = torch.tensor([4, 0, 9, 4])
    pad = 2
    dy, dx = torch.randint(0, 2 * pad + 1, (4, 1), generator=g), torch.randint(0, 2 * pad + 1, (4, 1), generator=g)
    flip = torch.tensor([[True], [False], [True], [False]])
    rows, cols = dy - pad + torch.arange(6), dx - pad + torch.arange(5)
    cols = torch.where(flip, cols.flip(-1), cols)
    out = crop_flip(x, idx, rows.clamp(0, 5), cols.clamp(0, 4), (rows >= 0) & (rows < 6), (cols >= 0) & (cols < 5))
    padded = torch.nn.functional.pad(x[idx], (pad, pad, pad, pad))
    for i in range(4):
        crop = padded[i, :, dy[i, 0]:dy[i, 0] + 6, dx[i, 0]:dx[i, 0] + 5]
        assert torch.equal(out[i], crop.flip(-1) if flip[i, 0] else crop), i


class _HostReads(TorchDispatchMode):
    """Counts the operators that make the host wait for a device's result (`.item()`, `nonzero`, `bool(tensor)`)."""

    READS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func._schema.name in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_host_reads_do_not_grow_with_steps(digits16: Data) -> None:
    """On CUDA each such read stalls the queue; the step loop has none, so their count depends on epochs only."""
    counts = []
    for steps in (2, 7):  # both within one pass over the 512 images, so no extra permutation is drawn
        mode = _HostReads()
        with mode:
            train_model(small_resnet(), digits16, TrainConfig(epochs=2, steps_per_epoch=steps, batch_size=32))
        counts.append(mode.count)
    assert counts[0] == counts[1] and counts[0] > 0
