"""The CLI answers at once: building the parser imports no heavy library, and `nas zoo list` builds no network."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from nas.cli import main

HEAVY = ("torch", "ray", "optuna", "optuna_dashboard", "pandas", "sqlalchemy", "matplotlib", "numpy", "space",
         "evaluators")


def test_building_the_parser_imports_nothing_heavy() -> None:
    code = ("import sys, nas.cli; nas.cli.make_parser(); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["zoo", "list", "--help"]])
def test_help_and_usage_errors_import_nothing_heavy(argv: list[str]) -> None:
    code = ("import sys, nas.cli\ntry:\n    nas.cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            f"print('exit', code, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "exit 0 []"


def test_zoo_list_reads_recorded_figures_without_building(capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluators.cost
    import space.factory

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nas zoo list built a network for a recorded figure")

    monkeypatch.setattr(space.factory, "build", refuse)
    monkeypatch.setattr(evaluators.cost, "measure_cost", refuse)
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^resnet50\s+resnet\s+25\.6M\s+4\.09G\s+224\s+76\.13$", out, re.M)
    assert re.search(r"^mobilenet_v2\s+mobilenet\s+3\.5M\s+301M\s+224", out, re.M)


def test_zoo_list_measures_an_unrecorded_resolution(capsys: pytest.CaptureFixture) -> None:
    assert main(["zoo", "list", "--family", "resnet", "--input", "112"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^resnet50\s+resnet\s+25\.6M\s+1\.08G\s+112", out, re.M)


def test_zoo_list_measures_a_changed_named_point(capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import space.zoo

    stale = {**space.zoo._recorded_figures()}
    stale["resnet18"] = {**stale["resnet18"], "hash": "0" * 16, "params": 1, "macs": 1}
    monkeypatch.setattr(space.zoo, "_recorded_figures", lambda: stale)
    assert main(["zoo", "list", "--family", "resnet"]) == 0
    assert re.search(r"^resnet18\s+resnet\s+11\.7M\s+1\.81G", capsys.readouterr().out, re.M)


def test_zoo_list_unknown_family_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["zoo", "list", "--family", "resnets"]) == 2
    err = capsys.readouterr().err
    assert err == "nas: error: unknown family 'resnets'; did you mean 'resnet'?\n"
