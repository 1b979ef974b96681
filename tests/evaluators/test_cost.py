"""measure_cost: the reference figures of named points, at the study's resolution and class count, meta == CPU."""

from __future__ import annotations

import pytest

import space
from evaluators.cost import _measure, count_activations, count_macs, measure_cost
from space import UnknownNameError, count_params, create_model, resolve_arch

# Train / deploy figures from /work/shared/reference/ARCHITECTURES.md (reference implementations, 224 px, 1000
# classes); MACs there are rounded to 1e6, so they are compared at that precision.
REFERENCE = {
    "resnet18": (11_689_512, None, 1.814e9, None),
    "resnet50": (25_557_032, None, 4.089e9, None),
    "mobilenet_v2": (3_504_872, None, 0.301e9, None),
    "repvgg_a0": (9_108_968, 8_309_384, 1.513e9, 1.361e9),
    "vanillanet_5": (22_328_800, 15_523_304, 8.451e9, 5.161e9),
    "parnet_s": (20_930_936, 19_128_980, 5.260e9, 4.734e9),
}


def _registered(name: str) -> None:
    if name not in space.MODELS:
        pytest.skip(f"named point {name} is not registered")


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_figures(name: str) -> None:
    _registered(name)
    params, params_deploy, macs, macs_deploy = REFERENCE[name]
    c = measure_cost(name)
    assert c.params == params and c.input_size == 224
    assert c.macs == pytest.approx(macs, abs=0.5e6)
    if params_deploy is not None:  # (the others' deploy form only folds BN, which the table does not list)
        assert c.params_deploy == params_deploy
        assert c.macs_deploy == pytest.approx(macs_deploy, abs=0.5e6)


def test_activations_reference() -> None:
    # ResNet-18: every conv and the fc output, counted by hand from the layer shapes.
    by_hand = 64 * 112**2 + 4 * 64 * 56**2 + 5 * 128 * 28**2 + 5 * 256 * 14**2 + 5 * 512 * 7**2 + 1000
    assert measure_cost("resnet18").activations == by_hand == 2_484_712
    # ResNet-50: 11.1M activations in pycls's model zoo (conv and linear outputs, rounded to 0.1M).
    assert round(measure_cost("resnet50").activations / 1e6, 1) == 11.1


def test_study_resolution_and_classes() -> None:
    c = measure_cost("resnet18", input_size=32, num_classes=10)
    assert c.params == 11_689_512 - 512 * 990 - 990
    assert c.activations == (64 * 16**2 + 4 * 64 * 8**2 + 5 * 128 * 4**2 + 5 * 256 * 2**2 + 5 * 512 * 1 + 10)
    model = create_model("resnet18", num_classes=10)
    assert c.macs == count_macs(model, 32)
    narrow = measure_cost("resnet18", input_size=32, num_classes=10, width_mult=0.5)
    assert narrow.params == count_params(create_model("resnet18", num_classes=10, width_mult=0.5))
    assert narrow.macs < c.macs


def test_deploy_form_figures_and_memo() -> None:
    c = measure_cost("resnet18", input_size=64, num_classes=10)
    model = space.deploy(create_model("resnet18", num_classes=10))
    assert c.params_deploy == count_params(model) < c.params  # BN folded into the convs
    assert c.macs_deploy == count_macs(model, 64)
    assert c.activations_deploy == count_activations(model, 64)
    assert measure_cost("resnet18", input_size=64, num_classes=10) is c
    bare = measure_cost("resnet18", input_size=64, num_classes=10, deploy=False)
    assert bare.params_deploy is None and bare.params == c.params


def _one_per_family() -> list[str]:
    seen: dict[str, str] = {}
    for name, point in space.MODELS.items():
        seen.setdefault(point.family, name)
    return sorted(seen.values())


@pytest.mark.parametrize("name", _one_per_family())
def test_meta_device_matches_cpu(name: str) -> None:
    arch = resolve_arch(name).scaled(0.25)
    assert _measure(arch, 64, 10, 3, True, "meta") == _measure(arch, 64, 10, 3, True, "cpu")


def test_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        measure_cost("resnet19")
