"""Write golden figures (params, MACs, state-dict shape multiset) of reference implementations.

Run in an environment that has the reference packages (torchvision and/or timm), not the project's own:

    python scripts/golden_reference.py tests/space/golden/resnet.yaml resnet18=torchvision:resnet18 ...

Each spec is `our_name=package:constructor` with package torchvision or timm; `timm-deploy:NAME` also records the
re-parameterized form. The project's tests then compare every named point against these files.
"""

from __future__ import annotations

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


def build(spec: str) -> tuple[torch.nn.Module, bool]:
    pkg, ctor = spec.split(":", 1)
    if pkg == "torchvision":
        import torchvision

        return getattr(torchvision.models, ctor)(), False
    import timm

    return timm.create_model(ctor, pretrained=False), pkg == "timm-deploy"


def main(out: str, *specs: str, size: int = 224) -> None:
    path = Path(out)
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    for item in specs:
        name, spec = item.split("=", 1)
        model, with_deploy = build(spec)
        entry = {"reference": spec, "input": size, **figures(model, size)}
        if with_deploy:
            from timm.utils.model import reparameterize_model

            dep = figures(reparameterize_model(model), size)
            entry.update(params_deploy=dep["params"], macs_deploy=dep["macs"], shapes_deploy=dep["shapes"])
        data[name] = entry
        print(name, entry["params"], entry["macs"], file=sys.stderr)
    path.write_text(yaml.safe_dump(data, sort_keys=True, width=120))


if __name__ == "__main__":
    main(*sys.argv[1:])
