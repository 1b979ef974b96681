"""Write golden figures (params, MACs, state-dict shape multiset) of reference implementations.

Run in an environment that has the reference packages (torchvision and/or timm), not the project's own:

    python scripts/golden_reference.py tests/space/golden/resnet.yaml resnet18=torchvision:resnet18 ...
    python scripts/golden_reference.py --input 299 tests/space/golden/inception.yaml \
        inception_v3=torchvision-aux:inception_v3

Each spec is `our_name=package:constructor` with package torchvision or timm; `timm-deploy:NAME` also records the
re-parameterized form; `torchvision-aux:NAME` builds the training form with its auxiliary classifiers
(`aux_logits=True`) and records the network without them (`aux_logits=False`) as `params_noaux` / `shapes_noaux`;
`timm-gen:MODULE.FUNCTION:VARIANT:MULT` calls one of timm's model generators for a width timm registers no model at
(`timm-gen:efficientnet._gen_mobilenet_v1:mobilenetv1_050:0.5` is MobileNetV1 0.5, built like mobilenetv1_100).
MACs are counted in eval mode, where auxiliary classifiers do not run. The project's tests then compare every named
point against these files.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode


def figures(model: torch.nn.Module, size: int) -> dict:
    """params, MACs and the shape multiset of `model`."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, size, size))
    shapes = Counter(str(list(v.shape)) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": fc.get_total_flops() // 2,
            "shapes": dict(sorted(shapes.items()))}


def build(spec: str, **kwargs: object) -> torch.nn.Module:
    """The reference model of `package:constructor` (random weights)."""
    pkg, ctor = spec.split(":", 1)
    if pkg == "timm-gen":
        import importlib
        import warnings

        where, variant, mult = ctor.split(":")
        module, fn = where.rsplit(".", 1)
        import logging

        logging.getLogger("timm").setLevel(logging.ERROR)  # "no pretrained configuration for <variant>": none wanted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(importlib.import_module(f"timm.models.{module}"), fn)(variant, float(mult), **kwargs)
    if pkg.startswith("torchvision"):
        import torchvision

        return getattr(torchvision.models, ctor)(weights=None, **kwargs)
    import timm

    return timm.create_model(ctor, pretrained=False, **kwargs)


def entry(spec: str, size: int) -> dict:
    """Golden figures of one reference spec at input `size`."""
    pkg = spec.split(":", 1)[0]
    if pkg == "torchvision-aux":
        out = {"reference": spec, "input": size, **figures(build(spec, aux_logits=True), size)}
        bare = figures(build(spec, aux_logits=False), size)
        return {**out, "params_noaux": bare["params"], "shapes_noaux": bare["shapes"]}
    model = build(spec)
    out = {"reference": spec, "input": size, **figures(model, size)}
    if pkg == "timm-deploy":
        from timm.utils.model import reparameterize_model

        dep = figures(reparameterize_model(model), size)
        out.update(params_deploy=dep["params"], macs_deploy=dep["macs"], shapes_deploy=dep["shapes"])
    return out


def main(argv: list[str]) -> None:
    """Add (or replace) the entries of the given specs in the golden file."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=int, default=224, help="input resolution (default 224)")
    ap.add_argument("out", help="golden YAML file to update")
    ap.add_argument("specs", nargs="+", help="our_name=package:constructor")
    args = ap.parse_args(argv)
    path = Path(args.out)
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    for item in args.specs:
        name, spec = item.split("=", 1)
        data[name] = entry(spec, args.input)
        print(name, data[name]["params"], data[name]["macs"], file=sys.stderr)
    path.write_text(provenance() + yaml.safe_dump(data, sort_keys=True, width=120))


def provenance() -> str:
    """A comment line naming this script and the reference packages' versions."""
    versions = [f"torch {torch.__version__}"]
    for pkg in ("torchvision", "timm"):
        try:
            versions.append(f"{pkg} {__import__(pkg).__version__}")
        except ImportError:
            pass
    return f"# written by scripts/golden_reference.py ({', '.join(versions)})\n"


if __name__ == "__main__":
    main(sys.argv[1:])
