"""`nas export`: trials of a real SQLite-backed study become zoo entries that load in one line and match the trial.

The study is recorded through the engine's searcher (see tests/nas/views/test_report.py); the last test runs the real
`nas search` end to end.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import space
from nas import zoo
from nas.cli import main
from nas.export import (
    ExportOptions,
    export,
    exported_arch,
    get_trial,
    parse_latency,
    train_config,
    trial_model,
    trial_seed_of,
)
from nas.record.store import load_results
from nas.record.trials import stored_arch
from nas.views.report import write_report
from tests.nas.views.test_report import Recording, filled

X = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture()
def study_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory as the working directory (./zoo is the first place entries are looked up)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_ZOO_PATH", "")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], pattern: str) -> None:
    """`nas argv` exits 2 with one line on stderr matching `pattern`."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: "), err
    assert re.search(pattern, err), err


def outputs(model: torch.nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_parse_latency_units() -> None:
    assert parse_latency("5ms") == 5.0 and parse_latency("800us") == pytest.approx(0.8)
    assert parse_latency("0.01s") == pytest.approx(10.0) and parse_latency("2") == 2.0
    assert parse_latency(" 1.5 ms ") == 1.5
    for bad in ("fast", "-1ms", "0", "5 min"):
        with pytest.raises(space.NasError, match="expected a positive duration"):
            parse_latency(bad)


def test_pareto_export_gives_the_trial_models(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    study = rec.study
    assert main(["export", "tiny.yaml", "--pareto", "--no-latency"]) == 0
    out = capsys.readouterr().out
    names = [f"tiny_t{n['fast']}", f"tiny_t{n['best']}"]
    assert sorted(p.name for p in (study_dir / "zoo").iterdir()) == sorted(names)
    assert f"#{n['best']} → zoo/tiny_t{n['best']} (untrained" in out
    assert set(names) <= set(zoo.list_models()) and "resnet18" in zoo.list_models()
    for key, name in zip(("fast", "best"), names):
        t = get_trial(study, rec.ostudy, n[key])
        entry = zoo.load_entry(name)
        assert not entry.trained and entry.config["trained"] is False
        # By default the entry is the trial's target: the network whose latency, params and MACs are on the front.
        assert entry.config["source"]["trial"] == n[key] and entry.config["width_mult"] == 1.0
        assert entry.config["network"] == "target" and entry.config["params"] == t.user_attrs["params"]
        assert entry.config["input_size"] == [1, 16, 16] and entry.config["num_classes"] == 10
        assert entry.config["classifier"] == "head.fc" and entry.config["first_conv"]
        assert entry.arch == space.Arch.from_yaml(stored_arch(t))
        assert entry.arch.hash == entry.config["arch_hash"] and entry.arch.name == name
        card = (entry.path / "README.md").read_text()
        assert "**Untrained**" in card and f"trial #{n[key]} of study `tiny`" in card
        assert "| accuracy (proxy ×0.25 @16px, 2 ep) |" in card and "| stage 0 |" in card and f"name: {name}" in card
        assert "**target** network (target ×1 @16px)" in card
        # The deploy exports are faithful to PyTorch (whatever their weights: untrained here).
        scripted = torch.jit.load(str(entry.path / "model.ts"))
        assert scripted(X).shape == (4, 10)
        assert entry.config["onnx_max_abs_diff"] is not None and entry.config["onnx_max_abs_diff"] < 1e-4
    assert not list((study_dir / "zoo").glob(".*"))  # no temporary directories left behind

    # --proxy: the network the trial trained, labelled so; the trial's weights load strictly, same outputs.
    assert main(["export", "tiny.yaml", "--trial", str(n["best"]), "--proxy", "--name", "proxy_best",
                 "--no-latency"]) == 0
    t = get_trial(study, rec.ostudy, n["best"])
    entry = zoo.load_entry("proxy_best")
    assert entry.config["network"] == "proxy" and entry.config["width_mult"] == 0.25
    assert entry.arch == space.Arch.from_yaml(stored_arch(t)).scaled(0.25)
    ref = trial_model(study, t, num_classes=10, in_chans=1)
    mine = zoo.create_model("proxy_best")
    mine.load_state_dict(ref.state_dict(), strict=True)
    assert torch.equal(outputs(mine), outputs(ref))
    assert "**proxy** network (proxy ×0.25 @16px)" in (entry.path / "README.md").read_text()


def test_trained_export_matches_and_resumes_after_an_interruption(study_dir: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    study, ostudy = rec.study, load_results(rec.study)
    t = get_trial(study, ostudy, n["best"])
    opts = ExportOptions(root=study_dir / "zoo", epochs=2, threads=1, latency=True)

    lines: list[str] = []

    def interrupt_after_first_epoch(line: str) -> None:
        lines.append(line.strip())
        if "epoch 1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(study, ostudy, [(t, "tnet")], opts, log=interrupt_after_first_epoch)
    partial = study_dir / "zoo" / ".tnet.partial"
    assert json.loads((partial / "progress.json").read_text())["epoch"] == 1
    assert not (study_dir / "zoo" / "tnet").exists()

    assert main(["export", "tiny.yaml", "--trial", str(n["best"]), "--name", "tnet", "--train", "--epochs", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "tnet: interrupted after epoch 1 of 2; run the same command again to resume" in lines, lines
    assert "tnet: resuming from epoch 1 of 2" in out and "tnet: epoch 2/2  val acc" in out
    assert "epoch 1/2" not in out and not partial.exists()

    # The same run without interruption, of the target seeded like the trial: identical weights.
    from evaluators import DataConfig, load_data, train_model

    data = load_data(DataConfig(**study.evaluator.data))
    torch.manual_seed(trial_seed_of(study, t))
    ref = space.create_model(exported_arch(study, t), num_classes=10, in_chans=1)
    result = train_model(ref, data, train_config(study, opts, trial_seed_of(study, t)))
    model = zoo.create_model("tnet", pretrained=True)
    ref_state = ref.state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())
    expected = outputs(ref)
    assert torch.equal(outputs(model), expected)

    entry = zoo.load_entry("tnet")
    assert entry.trained and entry.config["training"]["epochs"] == 2
    assert entry.config["training"]["accuracy"] == pytest.approx(result.accuracy)
    assert entry.config["training"]["resumed_from"] == 1
    assert entry.config["latency"]["median_ms"] > 0 and entry.config["latency"]["device"]["cpu"]
    card = (entry.path / "README.md").read_text()
    assert "**Trained** for 2 epochs on `digits`" in card and "measured on" in card and "resumed at epoch 1" in card

    # Deploy form, TorchScript and ONNX match PyTorch.
    deployed = zoo.create_model("tnet", pretrained=True, deploy=True)
    assert (outputs(deployed) - expected).abs().max() < 1e-4
    scripted = torch.jit.load(str(entry.path / "model.ts"))
    assert (scripted(X) - expected).abs().max() < 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(entry.path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: X.numpy()})[0])
    assert (got - expected).abs().max() < 1e-4

    # torch.hub loads it from the repository's hubconf.
    repo = str(Path(__file__).resolve().parents[3])
    hub = torch.hub.load(repo, "tnet", source="local", pretrained=True, trust_repo=True)
    assert torch.equal(outputs(hub), expected)


def test_best_under_latency(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    assert main(["export", "tiny.yaml", "--best-under-latency", "1ms", "--name", "quick", "--no-latency"]) == 0
    assert zoo.load_entry("quick").config["source"]["trial"] == n["fast"]  # 0.70 at 0.4 ms; pruned 0.9 ms excluded
    capsys.readouterr()
    # Under 5 ms: the infeasible 3 ms trial is not eligible; the best feasible one is.
    assert main(["export", "tiny.yaml", "--best-under-latency", "5000us", "--no-latency"]) == 0
    assert zoo.load_entry(f"tiny_t{n['best']}").config["source"]["trial"] == n["best"]
    one_line_error(capsys, ["export", "tiny.yaml", "--best-under-latency", "0.1ms"],
                   rf"no complete feasible trial runs in 0.1 ms or less \(the fastest is #{n['fast']} at 0.400 ms\)")
    one_line_error(capsys, ["export", "tiny.yaml", "--best-under-latency", "soon"], "expected a positive duration")


def test_bad_input_is_one_line_and_overwrites_nothing(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    running = rec.start()
    base = ["export", "tiny.yaml", "--no-latency"]
    one_line_error(capsys, [*base, "--trial", "99"], r"study 'tiny' has no trial 99 \(trials 0-7\)")
    one_line_error(capsys, [*base, "--trial", str(n["failed"])], r"trial \d+ failed \(RuntimeError: boom")
    one_line_error(capsys, [*base, "--trial", str(n["pruned"])], r"was pruned \(stopped early after 1 of 2 epochs\)")
    one_line_error(capsys, [*base, "--trial", str(rec.started[running]["number"])], "is running, not finished")
    one_line_error(capsys, [*base, "--trial", str(n["best"]), "--name", "resnet18"], "built-in named point")
    one_line_error(capsys, [*base, "--trial", str(n["best"]), "--name", "../up"], "entry name '../up'")
    with pytest.raises(SystemExit) as usage:
        main(["export", "tiny.yaml"])
    err = capsys.readouterr().err
    assert usage.value.code == 2 and err.count("\n") == 1 and "one of the arguments --trial --pareto" in err

    assert main([*base, "--trial", str(n["best"]), "--name", "keep"]) == 0
    card = study_dir / "zoo" / "keep" / "README.md"
    card.write_text("mine")
    one_line_error(capsys, [*base, "--trial", str(n["fast"]), "--name", "keep"], r"zoo/keep exists; pass --force")
    assert card.read_text() == "mine"
    # With several trials, one existing destination refuses them all before anything is written.
    shutil.copytree(study_dir / "zoo" / "keep", study_dir / "zoo" / f"keep_t{n['best']}")
    one_line_error(capsys, [*base, "--pareto", "--name", "keep"], rf"zoo/keep_t{n['best']} exists; pass --force")
    assert not (study_dir / "zoo" / f"keep_t{n['fast']}").exists()
    assert main([*base, "--trial", str(n["fast"]), "--name", "keep", "--force"]) == 0
    assert zoo.load_entry("keep").config["source"]["trial"] == n["fast"]

    # Missing weights: an untrained entry cannot be loaded pretrained.
    with pytest.raises(zoo.ZooError, match="untrained"):
        zoo.create_model("keep", pretrained=True)
    # A corrupted safetensors file is a one-line error, never a pickle load.
    shutil.copytree(study_dir / "zoo" / "keep", study_dir / "zoo" / "broken")
    (study_dir / "zoo" / "broken" / "weights.safetensors").write_bytes(b"\x00garbage, not safetensors")
    with pytest.raises(zoo.ZooError, match=r"weights.safetensors: corrupted or unreadable weights") as e:
        zoo.create_model("broken", pretrained=True)
    assert "\n" not in str(e.value)

    # A corrupted training checkpoint: one line naming the file and --restart; --restart trains from scratch.
    partial = study_dir / "zoo" / ".tt.partial"
    partial.mkdir()
    (partial / "progress.json").write_text("{not json")
    train = [*base, "--trial", str(n["fast"]), "--name", "tt", "--epochs", "1", "--threads", "1"]
    one_line_error(capsys, train, r"\.tt\.partial/progress\.json: unreadable training checkpoint .* --restart")
    assert main([*train, "--restart"]) == 0
    assert zoo.load_entry("tt").trained and not partial.exists()


def test_checkpoint_of_other_settings_is_refused(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rec, n = filled(study_dir)
    study, ostudy = rec.study, load_results(rec.study)
    t = get_trial(study, ostudy, n["fast"])

    def stop(line: str) -> None:
        if "epoch 1/" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(study, ostudy, [(t, "other")], ExportOptions(root=study_dir / "zoo", epochs=3, latency=False), log=stop)
    one_line_error(capsys, ["export", "tiny.yaml", "--trial", str(n["fast"]), "--name", "other", "--epochs", "2"],
                   r"a checkpoint of another training run \(train.epochs: 3 → 2\); pass --restart")


def test_exported_architecture_seeds_a_new_study(study_dir: Path) -> None:
    rec, n = filled(study_dir)
    assert main(["export", "tiny.yaml", "--trial", str(n["best"]), "--name", "found", "--no-latency"]) == 0
    exported = zoo.load_entry("found").arch
    (study_dir / "next.yaml").write_text((study_dir / "tiny.yaml").read_text()
                                         .replace("name: tiny", "name: next")
                                         .replace("named: [resnet18, mobilenet_v2]", "named: [found]")
                                         .replace("epochs: 2", "epochs: 1")
                                         .replace("constraints: {latency_ms: {max: 2.0}}\n", ""))
    nxt = Recording(make_study_from(study_dir / "next.yaml"))
    assert [a.name for a in nxt.study.named] == ["found"] and nxt.study.named[0] == exported
    # Evaluated like any named point, by the engine's real evaluator: cost, latency, one epoch of training.
    from nas.run.trial import evaluate, run

    tid = nxt.start()
    config = nxt.started[tid]
    sent: list[dict] = []
    final = run(config, nxt.job, evaluate, sent.append)
    assert final["status"] == "complete" and final["epochs"] == 1 and final["latency_ms"] > 0
    nxt.searcher.on_trial_complete(tid, final)
    t = nxt.ostudy.trials[0]
    assert t.user_attrs["named"] == "found" and t.user_attrs["hash"] == exported.hash
    assert t.values[0] == final["accuracy"]
    r = write_report(nxt.study)
    assert "found" in [a.get_text() for a in r.figure.axes[0].texts]


def make_study_from(path: Path):  # noqa: ANN201
    from nas.study import Study

    return Study.load(path)


QUICK = """\
name: e2e
space: small
objectives: [accuracy, latency_ms]
named: [resnet18]
sampler: {type: random, seed: 0}
evaluator:
  data: {name: digits, resolution: 16}
  train: {epochs: 1, batch_size: 64}
  proxy: {width_mult: 0.25}
  latency: {max_seconds: 0.2, min_runs: 3, warmup: 1}
budget: {trials: 4}
resources: {cpu: 1}
concurrency: 1
"""


@pytest.mark.slow
def test_search_report_export_end_to_end(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """The real engine: `nas search` (Ray Tune + Optuna), then `nas report`, `nas export --pareto`, and loading."""
    import yaml

    shipped = Path(__file__).resolve().parents[3] / "studies" / "quickstart.yaml"
    if shipped.is_file():  # a tiny copy of the shipped quickstart: 1 epoch, 4 trials, storage here
        raw = yaml.safe_load(shipped.read_text())
        raw.update(name="e2e", budget={"trials": 4}, concurrency=1)
        raw.pop("storage", None)
        raw.pop("ray", None)
        raw.setdefault("evaluator", {}).setdefault("train", {})["epochs"] = 1
        if raw.get("final"):  # the shipped final stage, shortened: every front point and named point, 2 seeds
            raw["final"]["train"]["epochs"] = 3
        if isinstance(raw["space"], str) and (shipped.parent / raw["space"]).is_file():
            raw["space"] = str(shipped.parent / raw["space"])
        (study_dir / "e2e.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    else:
        (study_dir / "e2e.yaml").write_text(QUICK)
    assert main(["search", "e2e.yaml", "--status-every", "600"]) == 0
    assert main(["report", "e2e.yaml"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and (study_dir / "e2e_report" / "pareto.png").is_file()
    study = make_study_from(study_dir / "e2e.yaml")
    ostudy = load_results(study)
    named = [t.user_attrs["named"] for t in ostudy.trials if t.user_attrs.get("named")]
    from PIL import Image

    from nas.views.report import LABELS_KEY

    labels = json.loads(Image.open(study_dir / "e2e_report" / "pareto.png").text[LABELS_KEY])
    complete_named = [t.user_attrs["named"] for t in ostudy.trials if t.user_attrs.get("named")
                      and t.state.name == "COMPLETE" and t.user_attrs.get("trained", True)]
    names = {label.split(" (small-input")[0] for label in labels}  # labels carry the input adaptation
    assert set(complete_named) <= names <= set(named)

    from nas.record.final import table as final_table
    from nas.record.trials import front

    best = front(ostudy)
    if study.final is not None:  # the paper table: every front point and named point, n seeds, a mark each
        summary = (study_dir / "e2e_report" / "summary.md").read_text()
        rows = final_table(study, ostudy)
        assert {r.trial for r in rows} == {t.number for t in best} | {t.number for t in ostudy.trials
                                                                     if t.user_attrs.get("named")
                                                                     and t.state.name == "COMPLETE"}
        assert "## Final stage" in summary and (study_dir / "e2e_report" / "final.png").is_file()
        for r in rows:
            assert r.final is not None and r.final.n == study.final.seeds
            line = next(x for x in summary.splitlines() if x.startswith(f"| {r.network} | #{r.trial} |"))
            assert f"(n={study.final.seeds})" in line and r.status in line
    assert main(["export", "e2e.yaml", "--pareto", "--no-latency"]) == 0
    assert best and sorted(p.name for p in (study_dir / "zoo").iterdir()) == sorted(f"e2e_t{t.number}" for t in best)
    data_cfg = study.evaluator.data
    for t in best:
        entry = zoo.load_entry(f"e2e_t{t.number}")
        classes, chans = entry.config["num_classes"], entry.config["in_chans"]
        # The entry is the trial's target network: its recorded params and structure.
        ref = space.create_model(exported_arch(study, t), num_classes=classes, in_chans=chans)
        mine = zoo.create_model(entry.name)
        mine.load_state_dict(ref.state_dict(), strict=True)
        assert entry.config["params"] == t.user_attrs["params"] and entry.config["network"] == "target"
        x = torch.randn(2, chans, data_cfg["resolution"], data_cfg["resolution"])
        assert torch.equal(outputs(mine, x), outputs(ref, x))
        assert entry.config["onnx_max_abs_diff"] < 1e-4
        if study.final is not None:  # the entry holds the final stage's weights and says how good they are
            final = entry.config["training"]["final"]
            assert final["n"] == study.final.seeds and entry.trained
            card = (entry.path / "README.md").read_text()
            assert "Trained in the study's final stage" in card and f"over {final['n']} seed(s)" in card
            assert "## Final stage (the study's paper table)" in card
