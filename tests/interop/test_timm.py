"""Named points and exported zoo entries load through `timm.create_model` with their pretrained config.

Runs where timm (and torchvision) import: `bash scripts/timm_interop.sh` sets up that side environment; elsewhere
(the project's own .venv, CI) the module is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")
pytest.importorskip("torchvision")

import space  # noqa: E402  (after the skips: this module only runs beside timm)
from nas import zoo  # noqa: E402
from space import MODELS  # noqa: E402
from space.errors import NasError  # noqa: E402
from space.zoo import recorded_figures  # noqa: E402

NAMES = MODELS.names()


@pytest.fixture(scope="module")
def registered() -> list[str]:
    """Every named point, registered under the prefix nas_ (timm has resnet18, vgg16, ... of its own)."""
    return zoo.register_with_timm(NAMES, prefix="nas_")


@pytest.mark.parametrize("name", NAMES)
def test_named_point_through_timm(name: str, registered: list[str]) -> None:
    assert f"nas_{name}" in registered and timm.is_model(f"nas_{name}")
    with torch.device("meta"):  # full width, without spending time on weights: the figures are the point
        model = timm.create_model(f"nas_{name}")
    assert sum(p.numel() for p in model.parameters()) == recorded_figures(name)["params"]
    size = MODELS.get(name).default_input
    cfg = timm.data.resolve_data_config({}, model=model)
    assert cfg["input_size"] == (3, size, size) and cfg["mean"] == zoo.IMAGENET_MEAN
    assert timm.models.get_pretrained_cfg(f"nas_{name}").input_size == (3, size, size)
    torch.manual_seed(0)
    small = timm.create_model(f"nas_{name}", num_classes=7, width_mult=0.25)  # timm's keyword, our builder
    px = 64 if size <= 224 else size // 2  # Inception-v3's stem needs more than 64 px
    assert small.eval()(torch.randn(2, 3, px, px)).shape == (2, 7)


def test_a_timm_name_is_not_overwritten() -> None:
    with pytest.raises(NasError, match=r"'resnet18' is a timm model already; register it under a prefix"):
        zoo.register_with_timm(["resnet18"])
    assert timm.create_model("resnet18").__class__.__module__.startswith("timm.")


def test_exported_entry_through_timm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setenv("NAS_ZOO_PATH", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    arch = space.get_arch("resnet18").scaled(0.125)
    torch.manual_seed(0)
    trained = space.create_model(arch, num_classes=10)
    with torch.no_grad():  # real BatchNorm statistics
        trained.train()(torch.randn(8, 3, 32, 32))
    config = {"num_classes": 10, "input_size": [3, 32, 32], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
              "interpolation": "bicubic", "crop_pct": 1.0}
    path = zoo.write_entry(tmp_path / "zoo", "tiny18", arch, config=config, card="# tiny18\n", model=trained,
                           exports=())
    assert zoo.register_with_timm() == ["tiny18"]

    model = timm.create_model("tiny18", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), trained.eval()(x))
    pcfg = timm.models.get_pretrained_cfg("tiny18")
    assert pcfg.file == str(path / zoo.WEIGHTS) and pcfg.num_classes == 10 and pcfg.interpolation == "bicubic"
    data = timm.data.resolve_data_config({}, model=model)
    assert data["input_size"] == (3, 32, 32) and data["mean"] == (0.5, 0.4, 0.3) and data["std"] == (0.2, 0.25, 0.3)
    transform = timm.data.create_transform(**data)
    image = transform(Image.new("RGB", (48, 40), (200, 120, 40)))
    assert image.shape == (3, 32, 32)
    with torch.no_grad():
        assert model(image[None]).shape == (1, 10)
    head = timm.create_model("tiny18", pretrained=True, num_classes=3)  # every weight but a new classifier
    kept = {k: v for k, v in head.state_dict().items() if not k.startswith("head.fc.")}
    assert kept and all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())
    assert head.eval()(x).shape == (2, 3)
