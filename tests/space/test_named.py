"""Every registered named point matches its published network: params, shapes, MACs; and it runs and round-trips."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import space
from evaluators.cost import count_macs
from space import MODELS, Arch, count_params, create_model, list_models
from space.reparam import drop_training_only
from tests.conftest import load_golden

NAMES = list_models()
GOLDEN = load_golden()


def shape_multiset(model: torch.nn.Module) -> dict[str, int]:
    """Multiset of state-dict tensor shapes, ignoring num_batches_tracked."""
    return dict(Counter(str(list(v.shape)) for k, v in model.state_dict().items()
                        if not k.endswith("num_batches_tracked")))


def test_every_named_point_has_golden_figures() -> None:
    missing = [n for n in NAMES if n not in GOLDEN]
    assert not missing, f"named points without golden figures in tests/space/golden: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_matches_published(name: str) -> None:
    ref = GOLDEN[name]
    model = create_model(name)
    assert count_params(model) == ref["params"]
    if "shapes" in ref:
        assert shape_multiset(model) == ref["shapes"]
    macs = count_macs(model, ref.get("input", 224))
    assert macs == pytest.approx(ref["macs"], rel=0.005)
    if "params_noaux" in ref:  # the reference built without its auxiliary classifiers (and unfused)
        bare = drop_training_only(create_model(name))
        assert count_params(bare) == ref["params_noaux"]
        assert shape_multiset(bare) == ref["shapes_noaux"]
    if "params_deploy" in ref:
        dep = space.deploy(model)
        assert count_params(dep) == ref["params_deploy"]
        if "shapes_deploy" in ref:
            assert shape_multiset(dep) == ref["shapes_deploy"]
        assert count_macs(dep, ref.get("input", 224)) == pytest.approx(ref["macs_deploy"], rel=0.005)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_small(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, width_mult=0.25)
    size = 64 if MODELS.get(name).default_input <= 224 else 96  # Inception-v3's unpadded convs need more than 64
    x = torch.randn(2, 3, size, size)
    out, aux = model.forward_train(x)
    assert out.shape == (2, 7) and all(a.shape == (2, 7) for _, a in aux)
    (out.square().mean() + sum(w * a.square().mean() for w, a in aux)).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head.num_features)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_yaml_and_json_round_trip(name: str) -> None:
    arch = space.get_arch(name)
    again = Arch.from_yaml(arch.to_yaml())
    assert again == arch and again.hash == arch.hash and again.name == name
    assert Arch.from_yaml(arch.to_yaml(full=True)) == arch
    import json

    assert Arch.from_dict(json.loads(arch.to_json())) == arch


def test_hash_is_content_not_name() -> None:
    a = space.get_arch("resnet18")
    b = Arch.from_dict({**a.to_dict(), "name": "other"})
    assert a == b and a.hash == b.hash
    assert a.hash != space.get_arch("resnet34").hash
