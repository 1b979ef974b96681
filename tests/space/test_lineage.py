"""Inception branches, dense connectivity, pre-activation and auxiliary classifiers: the grammar, derived widths,
one-line errors, the train/deploy contract of auxiliary heads, the proxy-training loss, and random points of the
new dimensions that build, train a step and deploy to the same function."""

from __future__ import annotations

import copy
import re

import optuna
import pytest
import torch

import space
from evaluators.data import Data
from evaluators.train import TrainConfig, train_model
from space import Arch, SpecError, count_params, create_model
from space.blocks.inception import Conv, Fork, Pool, parse_branch
from space.heads import AuxConv
from space.reparam import drop_training_only
from space.search_space import Space
from tests.conftest import randomize_bn

optuna.logging.set_verbosity(optuna.logging.WARNING)

STEM = {"type": "conv", "width": 16, "kernel": 3, "stride": 1}


def arch(stages: list[dict], head: dict | None = None) -> Arch:
    """A small architecture on the 16-wide conv stem."""
    return Arch.from_dict({"stem": STEM, "stages": stages, "head": head or {"type": "classifier"}})


# -- the branch grammar and derived widths --------------------------------------------------------------------------
def test_branch_grammar() -> None:
    assert parse_branch("1x1:48 5x5:64") == (Conv(1, 1, 48), Conv(5, 5, 64))
    assert parse_branch("avg3 1x1:32") == (Pool("avg", 3), Conv(1, 1, 32))
    assert parse_branch("1x1:384 (1x3:384|3x1:384)") == (Conv(1, 1, 384), Fork((Conv(1, 3, 384), Conv(3, 1, 384))))


@pytest.mark.parametrize(("branch", "message"), [
    ("3x4:16", r"'3x4:16' in branch '3x4:16': kernel sizes must be odd"),
    ("conv3:16", r"'conv3:16' in branch 'conv3:16' is not an op; ops are KxL:W convs"),
    ("max4", r"'max4' in branch 'max4': pool sizes are odd"),
    ("1x1:8 (1x3:8|pool)", r"'pool' in branch .* is not an op"),
])
def test_bad_branch_is_a_one_line_error_naming_the_key(branch: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"^stages\[0\]\.branches: " + message) as e:
        arch([{"block": "inception", "depth": 1, "paths": 1, "branches": [branch]}])
    assert "\n" not in str(e.value)


def test_concatenating_widths_are_derived_and_checked() -> None:
    a = arch([{"block": "inception", "depth": 1, "paths": 3, "branches": ["1x1:8", "1x1:8 3x3:16", "max3"]},
              {"block": "dense", "depth": 3, "growth": 8, "stride": 2}])
    assert [s.width for s in a.stages] == [8 + 16 + 16, 20 + 3 * 8]  # max3 passes its 16 inputs; transition 40 → 20
    with pytest.raises(SpecError, match=r"stages\[0\]\.width: is 32, but these inception parameters make it 40; "
                                         r"set width: 40"):
        arch([{"block": "inception", "depth": 1, "width": 32, "paths": 3,
               "branches": ["1x1:8", "1x1:8 3x3:16", "max3"]}])
    model = create_model(a, num_classes=3)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    assert model.forward_features(torch.randn(2, 3, 16, 16)).shape == (2, 44, 8, 8)


def test_width_multiplier_scales_branch_widths() -> None:
    a = space.get_arch("inception_v3").scaled(0.25)
    assert a.stages[0].params.branches[1] == "1x1:16 5x5:16"
    assert a.stages[3].width == a.stages[2].width + 96 + 24  # 3x3:384 and the double 3x3 (96) scaled, plus the pool


def test_strided_branches_must_end_in_one_kernel_size() -> None:
    with pytest.raises(SpecError, match=r"stages\[1\]\.branches: with down: branch every branch's last op"):
        arch([{"block": "basic", "depth": 1, "width": 16},
              {"block": "inception", "depth": 1, "stride": 2, "down": "branch", "paths": 2,
               "branches": ["3x3:8", "1x1:8"]}])


def test_aux_stage_indices_are_checked() -> None:
    with pytest.raises(SpecError, match=r"^head\.aux_at: \[3\] names a stage beyond the last one \(1\)$"):
        arch([{"block": "basic", "depth": 1, "width": 16}, {"block": "basic", "depth": 1, "width": 32, "stride": 2}],
             {"type": "classifier", "aux": "fc", "aux_at": [3]})
    with pytest.raises(SpecError, match=r"^head\.aux_at: aux 'fc' needs the stages to tap"):
        arch([{"block": "basic", "depth": 1, "width": 16}], {"type": "classifier", "aux": "fc"})


def test_fields_added_to_families_keep_the_hashes_of_existing_points() -> None:
    # Recorded before `order`, `preact`, `prenorm`, `aux`, ... were added: latency caches and studies key on them.
    assert space.get_arch("resnet50").hash == "b4a55179c7d5c287"
    assert space.get_arch("convnext_tiny").hash == "d5edcc4f6d5d1574"
    pre = Arch.from_dict({**space.get_arch("resnet50").to_dict(),
                          "stages": [{**s, "order": "pre"} for s in space.get_arch("resnet50").to_dict()["stages"]]})
    assert pre.hash != space.get_arch("resnet50").hash


# -- auxiliary classifiers: training form only ----------------------------------------------------------------------
def test_aux_heads_exist_in_training_and_leave_in_deploy() -> None:
    model = create_model("googlenet", num_classes=5, width_mult=0.25)
    x = torch.randn(2, 3, 64, 64)
    out, aux = model.forward_train(x)
    assert out.shape == (2, 5) and [w for w, _ in aux] == [0.3, 0.3] and all(a.shape == (2, 5) for _, a in aux)
    assert torch.equal(model.eval()(x), model.forward_train(x)[0]) and model.forward_train(x)[1] == []
    bare = drop_training_only(copy.deepcopy(model))
    assert bare.head.aux is None and not any(".aux." in k for k in bare.state_dict())
    dep = space.deploy(model)
    assert dep.head.aux is None and count_params(dep) < count_params(bare)  # BN folded too


def test_inception_v3_aux_head_pools_like_the_paper_at_17_and_adaptively_below() -> None:
    p = space.get_arch("inception_v3").scaled(0.25).head.params
    aux = AuxConv(16, p, num_classes=4).eval()
    assert aux(torch.randn(1, 16, 17, 17)).shape == (1, 4)  # 17 → 5 by the 5/3 pool, → 1 by the 5x5 conv
    assert aux(torch.randn(1, 16, 4, 4)).shape == (1, 4)


def test_reset_classifier_resets_aux_heads() -> None:
    model = create_model("googlenet", num_classes=5, width_mult=0.25)
    model.reset_classifier(3)
    _, aux = model.forward_train(torch.randn(2, 3, 64, 64))
    assert all(a.shape == (2, 3) for _, a in aux)


def tiny_data(n: int = 16, classes: int = 3, size: int = 16) -> Data:
    """Random tensors shaped like a dataset."""
    g = torch.Generator().manual_seed(0)
    return Data(x_train=torch.randn(n, 3, size, size, generator=g), y_train=torch.randint(classes, (n,), generator=g),
                x_val=torch.randn(4, 3, size, size, generator=g), y_val=torch.randint(classes, (4,), generator=g),
                num_classes=classes, in_chans=3, mean=(0.0,) * 3, std=(1.0,) * 3, name="tiny", hflip=False)


def test_proxy_training_weights_the_aux_losses_in() -> None:
    a = arch([{"block": "inception", "depth": 1, "paths": 2, "branches": ["1x1:8", "1x1:8 3x3:8"]},
              {"block": "basic", "depth": 1, "width": 16, "stride": 2}],
             {"type": "classifier", "aux": "fc", "aux_at": [0], "aux_width": 8, "aux_hidden": 16, "aux_grid": 2})
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=8, augment=False, warmup_epochs=0.0, lr=0.1,
                      weight_decay=0.0)
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = create_model(Arch.from_dict({**a.to_dict(), "head": {**a.to_dict()["head"], "aux_weight": weight}}),
                             num_classes=3)
        before = copy.deepcopy(dict(model.head.aux.named_parameters()))
        losses[weight] = train_model(model, tiny_data(), cfg).losses[0]
        moved = any(not torch.equal(before[k], v) for k, v in model.head.aux.named_parameters())
        assert moved == (weight > 0)  # the aux heads learn only through their weighted loss
    assert losses[1.0] > losses[0.0]


def test_nas_show_lists_aux_heads_only_in_the_training_form(capsys: pytest.CaptureFixture) -> None:
    from nas.cli import main

    assert main(["show", "googlenet", "--input", "64"]) == 0
    train = capsys.readouterr().out
    assert main(["show", "googlenet", "--input", "64", "--deploy"]) == 0
    deploy = capsys.readouterr().out
    assert "total: 13,004,888 params" in train and re.search(r"^\s+aux\s+AuxHeads", train, re.M)
    assert re.search(r"^\s+2\s+AuxFC", train, re.M) and re.search(r"^\s+5\s+AuxFC", train, re.M)
    assert "aux" not in deploy.lower() and "(deploy form)" in deploy


@pytest.mark.parametrize(("stage", "head", "key"), [
    ({"block": "inception", "depth": 1, "paths": 1, "branches": ["3x3:0"]}, {}, r"stages\[0\]\.branches"),
    ({"block": "inception", "depth": 1, "paths": 2, "branches": ["1x1:8"]}, {}, r"stages\[0\]\.branches"),
    ({"block": "dense", "depth": 2, "width": 64}, {}, r"stages\[0\]\.width"),
    ({"block": "dense", "depth": 2, "compression": 0.0}, {}, r"stages\[0\]\.compression"),
    ({"block": "basic", "depth": 1, "width": 8, "order": "before"}, {}, r"stages\[0\]\.order"),
    ({"block": "basic", "depth": 1, "width": 8}, {"aux": "conv", "aux_at": [1]}, r"head\.aux_at"),
    ({"block": "basic", "depth": 1, "width": 8}, {"aux_at": [0]}, r"head\.aux_at: only applies when aux"),
])
def test_cli_names_file_and_key_in_one_line(tmp_path, capsys: pytest.CaptureFixture, stage: dict, head: dict,
                                            key: str) -> None:
    import yaml

    from nas.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"stem": STEM, "stages": [stage], "head": {"type": "classifier", **head}}))
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(re.escape(str(path)) + ": " + key, err), err


# -- random points of the new dimensions ----------------------------------------------------------------------------
LINEAGE = Space({
    "name": "lineage",
    "stem": {"type": ["conv", "googlenet"], "width": [8, 16],
             "conv": {"kernel": 3, "stride": 1, "preact": [False, True]},
             "googlenet": {"kernel": 3, "stride": 1, "mid": [8, 16], "pool": ["none", "max"]}},
    "stages": {
        "count": {"int": [2, 3]}, "block": ["inception", "dense", "basic", "bottleneck"], "depth": {"int": [1, 2]},
        "width": [16, 32], "stride": {"per_stage": [[1], [1, 2]]},
        "inception": {"paths": [1, 2, 3], "down": ["pool", "branch"],
                      "branches": ["1x1:8", "1x1:8 3x3:8", "1x1:8 5x5:8", "1x1:8 1x3:8 3x1:8", "max3 1x1:8",
                                   "avg3 1x1:8", "1x1:8 (1x3:8|3x1:8)"]},
        "dense": {"growth": [4, 8], "bot_mul": [0.0, 2.0], "compression": [0.5, 1.0], "kernel": [3, 5]},
        "basic": {"order": ["post", "pre"], "shortcut": ["projection", "avgpool", "none"]},
        "bottleneck": {"order": ["post", "pre"], "bot_mul": [0.5]},
    },
    "head": {"type": "classifier", "classifier": {"prenorm": ["none", "batchnorm"], "conv_fc": [False, True],
                                                  "aux": ["none", "fc", "conv"], "aux_at": [[0], [0, 1]],
                                                  "aux_width": 8, "aux_hidden": 16, "aux_grid": 2}},
})


@pytest.mark.parametrize("seed", range(20))
def test_random_lineage_points_build_train_a_step_and_deploy(seed: int) -> None:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    try:
        a = LINEAGE.sample(trial)
    except SpecError as e:  # e.g. a strided 'branch' module whose branches end in different kernels
        assert re.match(r"space 'lineage' point: (stages\[\d\]|head)\.", str(e)), str(e)
        pytest.skip(f"an invalid combination, rejected with: {e}")
    assert LINEAGE.decode(LINEAGE.encode(a)) == a
    torch.manual_seed(seed)
    model = create_model(a, num_classes=3)
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=4, augment=False, warmup_epochs=0.0, lr=0.01)
    result = train_model(model, tiny_data(n=8), cfg)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    randomize_bn(model, seed)
    model.eval().double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))
        assert (ref - dep(x)).abs().max().item() <= 1e-6
    assert getattr(dep.head, "aux", None) is None


# -- the lineage's last points: SENet, MobileNetV1, SqueezeNet ------------------------------------------------------
def test_senet_gates_each_block_after_its_last_norm_with_timm_widths() -> None:
    from space.blocks.resnet import ResidualBlock
    from space.layers import ConvNormAct, SqueezeExcite

    for name, first_width, first_se in (("seresnet18", 64, 8), ("seresnet50", 256, 16)):
        block = create_model(name).stages[0][0]
        assert isinstance(block, ResidualBlock)
        se, last = block.branch[-1], block.branch[-2]
        assert isinstance(se, SqueezeExcite) and isinstance(last, ConvNormAct) and last.conv.out_channels == first_width
        assert (se.fc1.in_channels, se.fc1.out_channels) == (first_width, first_se)  # 64/16 = 4, rounded up to 8
        assert se.fc1.bias is not None and se.fc2.bias is not None
    x = torch.randn(1, 256, 8, 8)
    block = create_model("seresnet50").stages[0][1].eval()  # identity shortcut: out = relu(se(branch) + x)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(block.branch(x) + x))
        gate = block.branch[-1]
        pre = block.branch[:-1](x)
        assert torch.allclose(block.branch(x), pre * torch.sigmoid(gate.fc2(torch.relu(gate.fc1(pre.mean((2, 3),
                                                                                                    keepdim=True))))))


def test_se_width_rounds_to_8_without_the_10_percent_rule() -> None:
    from space.params import make_divisible

    assert [make_divisible(c / 16, 8, round_limit=0.0) for c in (64, 176, 256, 2048)] == [8, 8, 16, 128]
    assert make_divisible(176 / 16, 8) == 16  # the channel rule would round 11 up, the SE rule (timm's) does not


def test_senet_fields_apply_only_with_an_se_and_keep_regnety_hashes() -> None:
    with pytest.raises(SpecError, match=r"^stages\[0\]\.se_at: only applies when se is non-zero$"):
        arch([{"block": "bottleneck", "depth": 1, "width": 32, "se_at": "end"}])
    assert space.get_arch("regnety_400mf").hash == "03f089b799e5f570"  # RegNetY's SE (mid, from the input) as before
    mid = arch([{"block": "bottleneck", "depth": 1, "width": 64, "se": 0.25}])
    end = arch([{"block": "bottleneck", "depth": 1, "width": 64, "se": 0.25, "se_at": "end"}])
    assert count_params(create_model(mid)) < count_params(create_model(end))  # gating 64 channels, not the mid 16


def test_mobilenet_v1_is_plain_depthwise_separable_blocks() -> None:
    model = create_model("mobilenet_v1_050")
    assert model.stem[0].conv.out_channels == 16 and model.num_features == 512  # 32 and 1024 x 0.5, rounded to 8
    assert not any(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    block = model.stages[1][0]
    assert not block.residual and [type(m.act).__name__ for m in block.branch] == ["ReLU6", "ReLU6"]
    dw = block.branch[0].conv
    assert dw.groups == dw.in_channels == 32 and dw.stride == (2, 2)


def test_squeezenet_fire_is_a_one_branch_inception_module_with_biased_convs() -> None:
    from space.blocks.inception import Concat

    a = space.get_arch("squeezenet1_0")
    assert {s.block for s in a.stages} == {"inception"} and a.stages[0].params.branches == ("1x1:16 (1x1:64|3x3:64)",)
    assert [s.width for s in a.stages] == [128, 256, 256, 384, 512, 512]
    model = create_model("squeezenet1_0")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.ceil_mode and p.kernel_size == 3 and p.stride == 2 for p in pools)
    fire = model.stages[0][0]
    assert isinstance(fire, Concat) and len(fire) == 1 and isinstance(fire[0][1], Concat)  # squeeze, then the fork


def test_classifier_on_the_map_pools_the_activated_class_maps() -> None:
    model = create_model("squeezenet1_1", num_classes=5, width_mult=0.25).eval()
    head = model.head
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    with torch.no_grad():
        assert torch.allclose(model(x), torch.relu(head.fc(feats)).mean((2, 3)))
        assert (model(x) >= 0).all()  # ReLU before the pool: non-negative logits, as torchvision's
    assert model.forward_head(feats, pre_logits=True).shape == (2, head.num_features)
    model.reset_classifier(0)
    assert model(x).shape == (2, head.num_features)
    for bad, key in (({"norm": "layernorm"}, "norm"), ({"conv_fc": True}, "conv_fc")):
        with pytest.raises(SpecError, match=rf"^head\.{key}: "):
            arch([{"block": "basic", "depth": 1, "width": 8}], {"type": "classifier", "fc_on": "map", **bad})


def test_lineage_points_are_in_the_full_space_and_listed(capsys: pytest.CaptureFixture) -> None:
    from nas.cli import main

    assert main(["zoo", "list", "--no-macs"]) == 0
    out = capsys.readouterr().out
    for name, top1 in (("mobilenet_v1", "70.60"), ("seresnet50", "77.63"), ("seresnext50_32x4d", "79.03"),
                       ("squeezenet1_0", "58.09"), ("squeezenet1_1", "58.18")):
        assert re.search(rf"^{name}\s.*\s{re.escape(top1)}$", out, re.M), name
    sp = Space.load("full")
    for name in ("mobilenet_v1_125", "seresnet18", "seresnext101_32x4d", "squeezenet1_1"):
        assert name in sp.contains and sp.contains_arch(space.get_arch(name))[0]


def test_nas_show_squeezenet_at_16_px_is_one_line_about_the_input(capsys: pytest.CaptureFixture) -> None:
    from nas.cli import main

    assert main(["show", "squeezenet1_1", "--input", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "squeezenet1_1 at 16 px: " in err and "--adapt for the small-input form" in err
    assert main(["show", "squeezenet1_1", "--input", "32"]) == 0
    assert "total: 1,235,496 params" in capsys.readouterr().out
