"""`nas show` and `nas latency`: a zoo entry is the network its card describes, the small-input form a study trains is
one flag away, a too small input names the layer that runs out of pixels, and argument errors point to the
sub-command's help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nas import zoo
from nas.cli import main
from nas.format import human
from tests.nas.export.test_export import study_dir  # noqa: F401  (fixture: a fresh working directory and caches)
from tests.nas.views.test_report import filled


def run(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """stdout of `nas argv`, which must succeed."""
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """The one stderr line of `nas argv`, which must exit 2."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("nas: error: "), err
    return err


def test_an_entry_is_shown_and_timed_as_its_card_says(study_dir: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    # The proxy of a trial: quarter width, one input channel, 10 classes, 16 px — nothing like the defaults.
    assert main(["export", "tiny.yaml", "--trial", str(n["best"]), "--proxy", "--name", "quarter",
                 "--no-latency"]) == 0
    entry = zoo.load_entry("quarter")
    c = entry.config
    assert c["in_chans"] == 1 and c["num_classes"] == 10 and c["input_size"] == [1, 16, 16]
    card = (entry.path / "README.md").read_text()
    assert f"| params (deploy form) | {c['params']:,} |" in card and human(c["macs"]) in card

    out = run(capsys, ["show", "quarter"])
    assert out.startswith("quarter (train form) at 16x16, 10 classes, 1 input channels, hash ")
    assert out.splitlines()[-1].startswith(f"total: {c['params_train_form']:,} params, ")
    out = run(capsys, ["show", str(entry.path), "--deploy"])  # by folder too
    assert out.splitlines()[-1] == f"total: {c['params']:,} params, {human(c['macs'])} MACs"

    out = run(capsys, ["latency", "quarter", "--no-cache", "--max-seconds", "0.2"])
    assert re.search(rf"16x16, float32, 1 thread, 10 classes, {c['params']:,} params$", out.splitlines()[1])


def test_the_adapted_form_is_one_flag_away(capsys: pytest.CaptureFixture) -> None:
    plain = run(capsys, ["show", "resnet18", "--input", "16", "--num-classes", "10"])
    assert plain.startswith("resnet18 (train form) at 16x16")
    note = plain.splitlines()[-1]
    assert note == ("note: at 16 px a study trains resnet18 (small-input stem: stem pooling removed, stem stride "
                    "2→1); add --adapt to see that form")
    adapted = run(capsys, ["show", "resnet18", "--input", "16", "--num-classes", "10", "--adapt"])
    assert adapted.startswith("resnet18 (small-input stem: stem pooling removed, stem stride 2→1) (train form) "
                              "at 16x16")
    assert not adapted.splitlines()[-1].startswith("note:")
    macs = [float(re.search(r"params, ([\d.]+)M MACs", t).group(1)) for t in (plain, adapted)]
    assert macs[1] > 8 * macs[0]  # the stem keeps 16x16 maps instead of 4x4: the cost a study actually measures
    # At its own input nothing is adapted and nothing is noted.
    assert "note:" not in run(capsys, ["show", "resnet18"])


@pytest.mark.parametrize("command", ["show", "latency"])
def test_an_input_too_small_names_the_layer(command: str, capsys: pytest.CaptureFixture) -> None:
    err = error(capsys, [command, "alexnet", "--input", "16", *(["--no-cache"] if command == "latency" else [])])
    assert re.fullmatch(r"nas: error: alexnet at 16 px: stages\.0\.1 \(MaxPool2d, kernel 3\) gets a 1x1 map, smaller "
                        r"than its window; give --input 63 or more\n", err), err
    assert "Output size" not in err and "Given input size" not in err  # not torch's wording
    # The smallest input it names does fit.
    assert run(capsys, ["show", "alexnet", "--input", "63"]).splitlines()[-2].startswith("total: ")
    err = error(capsys, ["show", "alexnet", "--input", "62"])
    assert "stages.2.2 (MaxPool2d, kernel 3) gets a 2x2 map" in err and "or --adapt for the small-input form" in err


@pytest.mark.parametrize("argv, prog", [
    (["show"], "nas show"),
    (["show", "resnet18", "--bogus"], "nas show"),
    (["show", "resnet18", "--input", "x"], "nas show"),
    (["latency", "resnet18", "--batch-size", "0"], "nas latency"),
    (["zoo", "list", "--bogus"], "nas zoo list"),
    (["search"], "nas search"),
    (["bogus"], "nas"),
])
def test_argument_errors_point_to_the_sub_command_help(argv: list[str], prog: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert error(capsys, argv).endswith(f" (see '{prog} --help')\n")
