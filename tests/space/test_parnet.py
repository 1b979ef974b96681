"""ParNet: exact deploy folding (odd sizes included), stream resolutions, derived depth/stride, the streams space."""

from __future__ import annotations

import copy

import optuna
import pytest
import torch
from torch import nn

import space
from space import Arch, SpecError, create_model
from space.blocks.parnet import AvgDown, Fusion, ParBlock, ParNetParams, ParNetStage
from space.search_space import Space
from tests.conftest import randomize_bn

optuna.logging.set_verbosity(optuna.logging.WARNING)


def deploy_diff(model: nn.Module, size: int | tuple[int, int], seed: int = 0, chans: int = 3) -> float:
    """max |Δoutput| between the eval-mode training form and the deploy form, after randomizing BN statistics."""
    h, w = (size, size) if isinstance(size, int) else size
    torch.manual_seed(seed)
    randomize_bn(model, seed)
    model.eval()
    x = torch.randn(2, chans, h, w)
    with torch.no_grad():
        ref = model(x)
        dep = space.deploy(copy.deepcopy(model))(x)
    assert ref.shape == dep.shape
    return (ref - dep).abs().max().item()


def arch(streams: int, *, depths: tuple[int, ...] | None = None, widths: tuple[int, ...] | None = None,
         stem_width: int | None = None, **params: object) -> Arch:
    """A small ParNet with `streams` streams (widths 16, 24, 32, ...)."""
    widths = widths or tuple(16 + 8 * k for k in range(streams))
    depths = depths or tuple(1 + k % 2 for k in range(streams))
    return Arch.from_dict({
        "stem": {"type": "parnet", "width": stem_width or widths[0], "mid": 8},
        "stages": [{"block": "parnet", "width": 40, "streams": streams, "depths": list(depths),
                    "widths": list(widths), **params}],
        "head": {"type": "classifier"},
    })


# -- deploy ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["parnet_s", "parnet_m"])
@pytest.mark.parametrize("size", [64, 61])
def test_named_points_deploy_exactly(name: str, size: int) -> None:
    model = create_model(name, num_classes=10, width_mult=0.25)
    assert deploy_diff(model, size) <= 1e-4


def test_deploy_keeps_identity_bns_gates_and_fusion_bns_only() -> None:
    model = space.deploy(create_model("parnet_s", num_classes=10, width_mult=0.25))
    blocks = [m for m in model.modules() if isinstance(m, ParBlock)]
    assert blocks and all(b.point is None and b.pool is None and isinstance(b.dense, nn.Conv2d) for b in blocks)
    assert all(b.dense.kernel_size == (3, 3) and b.dense.bias is not None for b in blocks)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    identity = [b.identity for b in blocks if b.identity is not None]
    fusion = [bn for f in model.modules() if isinstance(f, Fusion) for bn in (f.bn_stream, f.bn_fused)]
    assert len(bns) == len(identity) + len(fusion) == 14 + 4  # one identity BN per stream block, two per fusion


@pytest.mark.parametrize("down", ["avgpool", "conv"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (9, 6), (1, 1)])
def test_downsampling_block_folds_exactly_on_any_size(down: str, groups: int, size: tuple[int, int]) -> None:
    block = ParBlock(8, 12, 2, groups=groups, down=down)
    assert deploy_diff(block, size, chans=8) <= 1e-5


def test_avg_down_is_the_plain_pool_on_even_sizes_and_zero_pads_odd_ones() -> None:
    x = torch.randn(1, 3, 6, 8)
    assert torch.equal(AvgDown()(x), nn.AvgPool2d(2, 2)(x))
    odd = torch.ones(1, 1, 3, 3)
    assert AvgDown()(odd).flatten().tolist() == [1.0, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("gate", ["sse", "none"])
def test_stride_one_blocks_fold_exactly(gate: str) -> None:
    same = ParBlock(8, 8, 1, gate=gate)
    assert deploy_diff(same, 9, chans=8) <= 1e-5
    wider = ParBlock(8, 12, 1, groups=2, gate=gate)
    assert deploy_diff(wider, 9, chans=8) <= 1e-5
    dep = space.deploy(copy.deepcopy(same))
    assert (dep.identity is None) == (gate == "none")  # an ungated identity BN folds into the 3x3 kernel


def test_gates_multiply_what_the_reference_multiplies() -> None:
    torch.manual_seed(0)
    block = randomize_bn(ParBlock(4, 4, 1)).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        skip = block.identity(x)
        sse = torch.sigmoid(block.gate.conv(skip.mean((2, 3), keepdim=True)))
        want = nn.functional.silu(block.dense(x) + block.point(x) + skip * sse)
        assert torch.allclose(block(x), want, atol=1e-6)
        down = randomize_bn(ParBlock(4, 6, 2)).eval()
        gate = 2 * torch.sigmoid(down.gate.conv(x.mean((2, 3), keepdim=True)))
        want = nn.functional.silu((down.dense(x) + down.point(down.pool(x))) * gate)
        assert torch.allclose(down(x), want, atol=1e-6)


def test_fusion_interleaves_stream_and_running_channels() -> None:
    fusion = Fusion(3, 4, 1, groups=2).eval()
    seen: list[torch.Tensor] = []
    fusion.block.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    a, b = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    with torch.no_grad():
        fusion(a, b)
        assert torch.allclose(seen[0][:, 0::2], fusion.bn_stream(a))
        assert torch.allclose(seen[0][:, 1::2], fusion.bn_fused(b))


# -- streams --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("streams", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [64, 60])
def test_stream_k_runs_at_one_over_two_to_the_k(streams: int, size: int) -> None:
    model = create_model(arch(streams), num_classes=3).eval()
    stage = model.stages[0]
    assert isinstance(stage, ParNetStage) and len(stage.streams) == streams
    shapes: dict[str | int, tuple[int, ...]] = {}

    def record(key: str | int):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor | None = None) -> None:
            shapes[key] = tuple((args[0] if out is None else out).shape)
        return hook

    stage.register_forward_pre_hook(record("in"))
    for k, stream in enumerate(stage.streams):
        stream.register_forward_hook(record(k))
    out = model.forward_features(torch.randn(1, 3, size, size))
    side = shapes["in"][-1]
    for k in range(streams):
        expect = -(-side // 2**k)  # ceil: every stride-2 block maps n to ceil(n / 2)
        assert shapes[k] == (1, 16 + 8 * k, expect, expect)
    assert out.shape[-1] == -(-side // 2**streams) and out.shape[1] == 40


def test_derived_depth_and_stride() -> None:
    s = space.get_arch("parnet_s")
    assert (s.stages[0].depth, s.stages[0].stride, s.total_stride) == (9, 8, 32)
    assert 2 + s.stages[0].depth + 1 == 12  # stem blocks + longest path through the streams + the Linear: depth 12
    for streams, depths, depth in ((1, (3,), 4), (2, (2, 4), 7), (4, (1, 2, 6, 1), 11)):
        a = arch(streams, depths=depths)
        assert (a.stages[0].depth, a.stages[0].stride) == (depth, 2**streams)
    raw = s.to_dict()
    raw["stages"][0]["stride"] = 16
    with pytest.raises(SpecError, match=r"stages\[0\]\.stride: is 16, but these parnet parameters make it 8"):
        Arch.from_dict(raw)


def test_stem_width_other_than_stream_zero_is_adapted() -> None:
    model = create_model(arch(3, stem_width=24, widths=(16, 32, 48)), num_classes=3).eval()
    first = model.stages[0].streams[0][0]
    assert (first.w_in, first.w_out, first.identity) == (24, 16, None)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert deploy_diff(model, 33) <= 1e-4


def test_fusion_widths_must_split_into_fusion_groups() -> None:
    with pytest.raises(SpecError, match="widths: fusion output width 21 is not divisible by fuse_groups 2"):
        arch(3, widths=(16, 20, 21))
    assert arch(3, widths=(16, 20, 21), fuse_groups=1).stages[0].params.fuse_groups == 1
    assert ParNetParams(streams=1, depths=(2,), widths=(7,)).fusion_widths() == []


# -- the streams space ----------------------------------------------------------------------------------------------
def test_space_random_points_deploy_exactly() -> None:
    sp = Space.load("space/parnet.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    for streams in (1, 2, 4, 1, 2, 3, 4):
        study.enqueue_trial({"s0.parnet.streams": streams})
    seen = set()
    for i in range(10):
        trial = study.ask()
        a = sp.sample(trial)
        st = a.stages[0]
        seen.add(st.params.streams)
        assert st.stride == 2**st.params.streams and sp.decode(trial.params) == a and sp.encode(a) == trial.params
        widest = max(a.stem.width, st.width, *st.params.widths)
        model = create_model(a, num_classes=5, width_mult=24 / widest)
        size = a.total_stride * 2 + (i % 2)  # every other point at an odd size
        assert deploy_diff(model, size, seed=i) <= 1e-4, a.to_yaml()
        study.tell(trial, 0.0)
    assert {1, 2, 3, 4} <= seen
