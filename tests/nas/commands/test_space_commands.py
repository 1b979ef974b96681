"""`nas zoo list`, `nas show`, `nas space check` print what a person expects."""

from __future__ import annotations

import re

import pytest

from nas.cli import main


def test_show_resnet50_layer_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet50 (train form) at 224x224, 1000 classes")
    assert re.search(r"stem\s+Sequential\s+64x56x56\s+9,536", out)
    assert re.search(r"stages\s+Sequential\s+2048x7x7", out)
    assert "total: 25,557,032 params, 4.09G MACs" in out


def test_show_yaml_round_trips(capsys: pytest.CaptureFixture, tmp_path) -> None:
    assert main(["show", "resnet18", "--yaml"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "r18.yaml"
    path.write_text(text)
    assert main(["show", str(path), "--input", "64"]) == 0
    assert "total: 11,689,512 params" in capsys.readouterr().out


def test_zoo_list_has_every_named_point(capsys: pytest.CaptureFixture) -> None:
    import space

    assert main(["zoo", "list", "--no-macs"]) == 0
    out = capsys.readouterr().out
    for name in space.list_models():
        assert re.search(rf"^{name}\s", out, re.M), name
    assert re.search(r"^resnet50\s+resnet\s+25\.6M", out, re.M)


def test_space_check_lists_named_points_and_size(capsys: pytest.CaptureFixture) -> None:
    assert main(["space", "check", "small"]) == 0
    out = capsys.readouterr().out
    assert "valid space 'small'" in out and re.search(r"size: about 10\^\d+\.\d points", out)
