"""User mistakes at the command line are one line on stderr and exit 2: numbers out of range, operating-system errors
on given paths, damaged storage files, a taken dashboard port."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from nas.cli import main
from tests.nas.views.test_report import make_study


def one_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run `nas argv`, which must exit 2 with one line on stderr; return that line."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # usage errors exit from argparse
        code = e.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.startswith("nas: error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize("argv", [
    ["latency", "resnet18", "--input", "0"],
    ["latency", "resnet18", "--batch-size", "0"],
    ["latency", "resnet18", "--threads", "-1"],
    ["latency", "resnet18", "--num-classes", "0"],
    ["latency", "resnet18", "--in-chans", "0"],
    ["latency", "resnet18", "--width-mult", "0"],
    ["latency", "resnet18", "--width-mult", "nan"],
    ["latency", "resnet18", "--max-seconds", "0"],
    ["latency", "resnet18", "--load-threshold", "-0.5"],
    ["show", "resnet18", "--input", "0"],
    ["show", "resnet18", "--num-classes", "-3"],
    ["show", "resnet18", "--depth", "0"],
    ["zoo", "list", "--input", "-224"],
    ["search", "s.yaml", "--trials", "0"],
    ["search", "s.yaml", "--minutes", "0"],
    ["search", "s.yaml", "--minutes", "inf"],
    ["search", "s.yaml", "--status-every", "0"],
    ["export", "s.yaml", "--trial", "-1"],
    ["export", "s.yaml", "--trial", "1", "--epochs", "0"],
    ["export", "s.yaml", "--trial", "1", "--width-mult", "5"],
    ["export", "s.yaml", "--trial", "1", "--threads", "0"],
    ["dashboard", "s.yaml", "--port", "0"],
    ["dashboard", "s.yaml", "--port", "70000"],
    ["latency", "resnet18", "--input", "big"],
])
def test_out_of_range_numbers_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    flag = [a for a in argv if a.startswith("--")][-1]
    err = one_line(capsys, argv)
    assert re.match(rf"nas: error: argument {flag}: expected (an integer|a number) ", err), err


def test_a_huge_space_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = make_study(tmp_path)
    text = Path(study.source).read_text()
    huge = re.sub(r"(?m)^space: .*$", "space: " + "x" * 200_000, text)
    assert huge != text
    path = tmp_path / "huge.yaml"
    path.write_text(huge)
    err = one_line(capsys, ["search", str(path)])
    assert re.search(r" \(200,\d{3} characters\): name too long for the file system; use a shorter name or path$", err)
    assert len(err) < 300


def test_paths_that_are_folders_or_too_long(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = one_line(capsys, ["show", str(tmp_path)])
    assert err.startswith(f"nas: error: {tmp_path}: a folder where an architecture file belongs")
    err = one_line(capsys, ["latency", "a" * 300 + ".yaml"])
    assert "(305 characters): name too long" in err
    study = make_study(tmp_path)
    from nas.record.store import open_study, storage_of

    open_study(study, storage_of(study))
    (tmp_path / "taken").write_text("a file")
    err = one_line(capsys, ["report", study.source, "--out", str(tmp_path / "taken")])
    assert err.startswith(f"nas: error: {tmp_path / 'taken'}: a file where a folder belongs"), err


def damaged(study_yaml: str, how: str) -> Path:
    """Damage the SQLite file of a study that has been opened once."""
    from nas.record.store import open_study, storage_of
    from nas.study import Study

    study = Study.load(study_yaml)
    storage = storage_of(study)
    open_study(study, storage)
    storage.engine.dispose()
    db = Path(study.storage[len("sqlite:///"):])
    for extra in db.parent.glob(db.name + "-*"):  # WAL and shared-memory files
        extra.unlink()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if how == "truncated" else bytes(range(256)) * 40)
    return db


@pytest.mark.parametrize("how", ["truncated", "random"])
@pytest.mark.parametrize("command", ["report", "dashboard", "search"])
def test_a_damaged_storage_file_is_one_line(how: str, command: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    source = make_study(tmp_path).source
    db = damaged(source, how)
    err = one_line(capsys, [command, source])
    assert err.startswith(f"nas: error: {source}: storage {db}: damaged SQLite database (")
    assert "restore it from a backup, or move it aside" in err and "sqlalche" not in err


def test_a_taken_dashboard_port_is_one_line_before_any_banner(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = make_study(tmp_path)
    from nas.record.store import open_study, storage_of

    open_study(study, storage_of(study))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        capsys.readouterr()
        assert main(["dashboard", study.source, "--port", str(port)]) == 2
        out, err = capsys.readouterr()
    assert out == "" and "Listening" not in err
    assert err == f"nas: error: cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port\n"


@pytest.mark.parametrize("command", ["show", "latency"])
def test_an_input_too_small_for_the_network_is_one_line(command: str, capsys: pytest.CaptureFixture) -> None:
    # AlexNet downsamples 32x with pools that need a 3x3 map: 16 px leaves nothing for its last pool.
    assert main([command, "alexnet", "--input", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "alexnet at 16 px: stages.0.1 (MaxPool2d, kernel 3) gets a 1x1 map" in err
    assert "give --input 63 or more" in err
