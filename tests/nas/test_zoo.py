"""Zoo entries: written atomically, loaded safely in one line, deploy exports faithful, bad entries refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import space
from nas import zoo


@pytest.fixture()
def zoo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "myzoo"
    monkeypatch.setenv("NAS_ZOO_PATH", str(d))
    monkeypatch.chdir(tmp_path)
    return d


def small_arch() -> space.Arch:
    return space.get_arch("resnet18").scaled(0.125)


def config() -> dict:
    return {"num_classes": 10, "input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_written_entry_loads_with_the_same_outputs(zoo_dir: Path) -> None:
    torch.manual_seed(0)
    model = space.create_model(small_arch(), num_classes=10)
    with torch.no_grad():  # give BN real statistics so train/deploy/ONNX are all exercised
        model.train()(torch.randn(8, 3, 32, 32))
    path = zoo.write_entry(zoo_dir, "tiny18", small_arch(), config=config(), card="# tiny18\n", model=model)
    assert {p.name for p in path.iterdir()} == {"arch.yaml", "config.json", "weights.safetensors", "model.ts",
                                               "model.onnx", "README.md"}
    assert "tiny18" in zoo.list_models() and "resnet18" in zoo.list_models()
    loaded = zoo.create_model("tiny18", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(loaded(x), ref)
        deployed = zoo.create_model("tiny18", pretrained=True, deploy=True)
        assert (deployed(x) - ref).abs().max() < 1e-4
        scripted = torch.jit.load(str(path / "model.ts"))
        assert (scripted(x) - ref).abs().max() < 1e-4
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["trained"] and cfg["arch_hash"] == small_arch().hash
    assert cfg["onnx_max_abs_diff"] is not None and cfg["onnx_max_abs_diff"] < 1e-4
    # An exported entry is a named point: space resolves it, and it re-seeds searches.
    assert space.resolve_arch("tiny18") == small_arch()
    assert loaded.pretrained_cfg["classifier"] == "head.fc"


def test_hub_loads_named_points_and_entries(zoo_dir: Path) -> None:
    zoo.write_entry(zoo_dir, "hubnet", small_arch(), config=config(), card="x", exports=())
    repo = str(Path(__file__).resolve().parents[2])
    m = torch.hub.load(repo, "hubnet", source="local", trust_repo=True)
    assert m.num_classes == 10
    m = torch.hub.load(repo, "resnet18", source="local", num_classes=3)
    assert m.num_classes == 3


def test_bad_entries_are_one_line_errors_and_nothing_is_overwritten(zoo_dir: Path) -> None:
    path = zoo.write_entry(zoo_dir, "plain", small_arch(), config=config(), card="first", exports=())
    with pytest.raises(zoo.ZooError, match="untrained .* no weights.safetensors"):
        zoo.create_model("plain", pretrained=True)
    with pytest.raises(zoo.ZooError, match="exists; pass --force"):
        zoo.write_entry(zoo_dir, "plain", small_arch(), config=config(), card="second", exports=())
    assert (path / "README.md").read_text() == "first"
    with pytest.raises(zoo.ZooError, match="built-in named point"):
        zoo.write_entry(zoo_dir, "resnet18", small_arch(), config=config(), card="x", exports=())
    with pytest.raises(zoo.ZooError, match="no zoo entry 'nothere'"):
        zoo.load_entry("nothere")
    with pytest.raises(zoo.ZooError, match="built-in named point without weights"):
        zoo.create_model("resnet18", pretrained=True)
    model = space.create_model(small_arch(), num_classes=10)
    trained = zoo.write_entry(zoo_dir, "broken", small_arch(), config=config(), card="x", model=model, exports=())
    (trained / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(zoo.ZooError, match="corrupted or unreadable weights"):
        zoo.create_model("broken", pretrained=True)


def test_force_replaces_atomically(zoo_dir: Path) -> None:
    zoo.write_entry(zoo_dir, "net", small_arch(), config=config(), card="first", exports=())
    zoo.write_entry(zoo_dir, "net", small_arch(), config=config(), card="second", exports=(), force=True)
    assert (zoo_dir / "net" / "README.md").read_text() == "second"
    assert [p.name for p in zoo_dir.iterdir()] == ["net"]  # no temporary directories left behind
