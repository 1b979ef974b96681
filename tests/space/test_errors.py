"""Bad input becomes one clear line naming the file and key — from the Python API and from the CLI (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import space
from nas.cli import main
from space import Arch, SpecError, UnknownNameError
from space.search_space import Space

GOOD_ARCH = """\
stem: {type: conv, width: 16}
stages:
  - {block: basic, depth: 1, width: 16, stride: 1}
head: {type: classifier}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, expected", [
    ("stem: {type: conv, width: 16\n", r"arch\.yaml: malformed YAML"),
    (GOOD_ARCH.replace("width: 16, stride", "widht: 16, stride"),
     r"arch\.yaml: stages\[0\]\.widht: unknown key for block type 'basic'; did you mean 'width'\?"),
    (GOOD_ARCH.replace("block: basic", "block: basik"),
     r"stages\[0\]\.block: unknown block type 'basik'; did you mean 'basic'\?"),
    (GOOD_ARCH.replace("depth: 1", "depth: two"), r"stages\[0\]\.depth: expected int, got str 'two'"),
    (GOOD_ARCH.replace("depth: 1", "depth: 0"), r"stages\[0\]\.depth: must be >= 1"),
    (GOOD_ARCH.replace("stride: 1}", "stride: 1, kernel: 4}"), r"stages\[0\]\.kernel: 4 is not allowed"),
    (GOOD_ARCH.replace("stride: 1}", "stride: 1, act_n: 2}"),
     r"stages\[0\]\.act_n: only applies when act is one of \['series'\]"),
    (GOOD_ARCH.replace("stride: 1}", "stride: 1, se: 1.5}"), r"stages\[0\]\.se: 1\.5 is above the maximum 1\.0"),
    (GOOD_ARCH.replace("head: {type: classifier}", ""), r"head: missing"),
    ("- 1\n- 2\n", r"an architecture must be a mapping"),
])
def test_arch_file_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "arch.yaml", text)
    with pytest.raises(SpecError, match=expected):
        Arch.load(path)


def test_groups_not_dividing_channels_rejected_at_validation() -> None:
    text = """\
stem: {type: conv, width: 16}
stages:
  - {block: bottleneck, depth: 1, width: 48, stride: 1, bot_mul: 0.5, groups: 5}
head: {type: classifier}
"""
    with pytest.raises(SpecError, match=r"stages\[0\]\.groups: mid width 24 .* is not divisible by groups 5"):
        Arch.from_yaml(text, source="x.yaml")


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'resnet5'; did you mean 'resnet50'"):
        space.create_model("resnet5")


@pytest.mark.parametrize("text, expected", [
    ("stem: [1, 2\n", r"sp\.yaml: malformed YAML"),
    ("nme: x\nstem: {type: conv, width: 16}\nstages: {block: basic, width: 16}\nhead: {type: classifier}\n",
     r"sp\.yaml: nme: unknown key; did you mean 'name'\?"),
    ("stem: {type: conv, width: 16}\nstages: {block: basic, width: 16, basic: {kernal: [3]}}\n"
     "head: {type: classifier}\n",
     r"stages\.basic\.kernal: unknown parameter of block type 'basic'; did you mean 'kernel'\?"),
    ("stem: {type: conv, width: 16}\nstages: {block: basic, width: {int: [64, 16]}}\nhead: {type: classifier}\n",
     r"stages\.width\.int: low 64 is above high 16"),
    ("stem: {type: conv, width: 16}\nstages: {block: [basic], width: 16, bottleneck: {}}\nhead: {type: classifier}\n",
     r"stages\.bottleneck: parameters given for block type 'bottleneck', which is not among the choices"),
    ("stem: {type: conv, width: 16}\nstages: {block: basic, width: []}\nhead: {type: classifier}\n",
     r"stages\.width: an empty choice list"),
    ("contains: [resnet18]\nstem: {type: conv, width: 16}\nstages: {block: basic, width: 16}\n"
     "head: {type: classifier}\n",
     None),
])
def test_space_file_errors(tmp_path: Path, text: str, expected: str | None) -> None:
    path = write(tmp_path, "sp.yaml", text)
    if expected is None:  # valid file, but its declared named point is not in it: `nas space check` must say so
        Space.load(path)
        return
    with pytest.raises(SpecError, match=expected):
        Space.load(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "arch.yaml", GOOD_ARCH.replace("width: 16, stride", "widht: 16, stride"))
    for args, needle in [
        (("show", str(bad)), "stages[0].widht: unknown key"),
        (("show", "resnet5"), "did you mean 'resnet50'"),
        (("space", "check", str(tmp_path / "missing.yaml")), "no such space file"),
        (("show", str(tmp_path / "nope.yaml")), "no such file"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_cli_space_check_refuses_a_declared_point_it_does_not_contain(tmp_path: Path) -> None:
    sp = write(tmp_path, "sp.yaml", "contains: [resnet18]\nstem: {type: conv, width: 16}\n"
                                    "stages: {block: basic, width: 16}\nhead: {type: classifier}\n")
    proc = run_cli("space", "check", str(sp))
    assert proc.returncode == 2
    assert "declared named point(s) not in the space: resnet18: not in this space" in proc.stderr


def test_cli_usage_error_exit_2() -> None:
    proc = run_cli("show")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
