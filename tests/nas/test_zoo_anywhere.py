"""An exported entry loads from any directory: by its folder's path, or by name through $NAS_ZOO_PATH, in nas.zoo and
torch.hub, as the export message says; exporting an infeasible trial warns."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from nas import zoo
from nas.cli import main
from tests.nas.views.test_report import filled

REPO = str(Path(__file__).resolve().parents[2])


def test_export_message_loads_from_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("NAS_ZOO_PATH", "")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    _, n = filled(work)
    assert main(["export", "tiny.yaml", "--trial", str(n["slow"]), "--name", "slownet", "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"warning: trial #{n['slow']} is infeasible \(.*latency_ms.*\); exporting it anyway", out), out
    entry = work / "zoo" / "slownet"
    assert f"load from any directory with: from nas import zoo; zoo.create_model('{entry}')" in out
    assert f"or by name, 'slownet', after: export NAS_ZOO_PATH={work / 'zoo'}  (not needed in this directory)" in out

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(zoo.ZooError, match=r"no zoo entry 'slownet' \(searched .*\); give the entry's folder"):
        zoo.create_model("slownet")
    by_path = zoo.create_model(str(entry))
    assert by_path.pretrained_cfg["architecture"] == "slownet" and by_path.num_classes == 10
    rel = os.path.relpath(entry, elsewhere)
    assert zoo.load_entry(rel).path == entry  # resolved: the config's files are found from anywhere
    monkeypatch.setenv("NAS_ZOO_PATH", str(work / "zoo"))
    by_name = zoo.create_model("slownet")
    by_name.load_state_dict(by_path.state_dict())
    assert "slownet" in zoo.list_models()

    hub = torch.hub.load(REPO, "slownet", source="local", trust_repo=True)
    monkeypatch.setenv("NAS_ZOO_PATH", "")
    hub_path = torch.hub.load(REPO, "zoo_entry", str(entry), source="local", trust_repo=True)
    assert hub_path.pretrained_cfg == hub.pretrained_cfg == by_path.pretrained_cfg
    card = (entry / "README.md").read_text()
    assert "`$NAS_ZOO_PATH`" in card and '"zoo_entry", "/path/to/zoo/slownet"' in card


def test_a_folder_that_is_not_an_entry(tmp_path: Path) -> None:
    with pytest.raises(zoo.ZooError, match=rf"^{re.escape(str(tmp_path))}: not a zoo entry \(no arch.yaml in it\)"):
        zoo.create_model(tmp_path)
