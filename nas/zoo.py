"""The model zoo: exported networks as directories others load in one line, next to the built-in named points.

An entry `zoo/NAME/` holds `arch.yaml` (the same schema as the named points, so an entry can seed a search),
`config.json` (input size, mean/std, classes, classifier name: the PyTorch image-model conventions), optional
`weights.safetensors` (training form), the deploy form as `model.ts` (TorchScript) and `model.onnx`, and a model card
`README.md`. Loading never executes pickled code: weights are safetensors only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import space
from space.arch import Arch
from space.errors import NasError, did_you_mean
from space.zoo import MODELS, ZOO_PATH_ENV, entry_names, find_entry, zoo_dirs

WEIGHTS = "weights.safetensors"

__all__ = ["Entry", "create_model", "list_models", "load_entry", "write_entry", "zoo_dirs", "ZooError"]


class ZooError(NasError):
    """A zoo entry that is missing, incomplete, corrupted, or would be overwritten."""


@dataclass
class Entry:
    """A loaded zoo entry: where it is, its architecture and its config."""

    name: str
    path: Path
    arch: Arch
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        """Whether the entry has weights."""
        return (self.path / WEIGHTS).is_file()


def list_models() -> list[str]:
    """Built-in named points and exported entries on the search path."""
    return sorted(set(MODELS.names()) | set(entry_names()))


def load_entry(name_or_path: str | Path) -> Entry:
    """Read an entry by directory, or by name (search path: ./zoo, then $NAS_ZOO_PATH)."""
    path = Path(name_or_path).expanduser()
    if not (path / "arch.yaml").is_file():
        if path.is_dir():
            raise ZooError(f"{path}: not a zoo entry (no arch.yaml in it); give the folder 'nas export' wrote, "
                           "e.g. zoo/NAME")
        found = find_entry(str(name_or_path))
        if found is None:
            where = ", ".join(str(d) for d in zoo_dirs())
            hint = did_you_mean(str(name_or_path), list_models())
            raise ZooError(f"no zoo entry '{name_or_path}' (searched {where}); " + (f"{hint} " if hint else "")
                           + f"give the entry's folder, add the folder that holds it to ${ZOO_PATH_ENV}, or export "
                           "one with 'nas export'")
        path = found
    path = path.resolve()  # the config's weight file must be found from any working directory
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    except json.JSONDecodeError as e:
        raise ZooError(f"{config_file}: malformed JSON ({e.msg} at line {e.lineno}); re-export the entry") from None
    arch = Arch.load(path / "arch.yaml")
    name = path.name
    return Entry(name=name, path=path, arch=Arch(arch.stem, arch.stages, arch.head, name=name), config=config)


def create_model(name: str | Path, *, pretrained: bool = False, deploy: bool = False,
                 num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a zoo entry or a built-in named point, optionally with its trained weights, in train or deploy form.

    `name` is a named point, an entry's name (found in ./zoo, then in the folders of $NAS_ZOO_PATH) or the path of an
    entry's folder, from any working directory. `num_classes` defaults to the entry's own; asking for another class
    count with `pretrained=True` loads every weight except the classifier, which is re-initialised.
    """
    if str(name) in MODELS:
        if pretrained:
            raise ZooError(f"'{name}' is a built-in named point without weights (nas never downloads weights); "
                           "export a trained entry with 'nas export --train' or use pretrained=False")
        model = space.create_model(str(name), deploy=deploy, num_classes=num_classes or 1000, **kwargs)
        model.pretrained_cfg = {**named_cfg(str(name)), "num_classes": num_classes or 1000}
        return model
    path = Path(name).expanduser()
    if path.is_file() or path.suffix in (".yaml", ".yml", ".json"):  # an architecture file: no weights
        if pretrained:
            raise ZooError(f"{name}: an architecture file has no weights; give a trained zoo entry's name or folder, "
                           "or use pretrained=False")
        return space.create_model(str(path), deploy=deploy, num_classes=num_classes or 1000, **kwargs)
    entry = load_entry(name)
    own_classes = int(entry.config.get("num_classes", 1000))
    model = space.create_model(entry.arch, num_classes=own_classes, in_chans=int(entry.config.get("in_chans", 3)),
                               **kwargs)
    if pretrained:
        if not entry.trained:
            raise ZooError(f"zoo entry '{entry.name}' is untrained (exported without --train): no {WEIGHTS} in "
                           f"{entry.path}; use pretrained=False or re-export with --train")
        model.load_state_dict(read_weights(entry.path / WEIGHTS))
        lam = entry.config.get("deep_training_lambda")
        if lam is not None:
            space.set_lambda(model, float(lam))
    if num_classes is not None and num_classes != own_classes:
        model.reset_classifier(num_classes)
    if deploy:
        space.set_lambda(model, 1.0)
        space.deploy(model)
    model.pretrained_cfg = pretrained_cfg(entry)
    return model


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file (never pickle); a corrupted file is a one-line ZooError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ZooError(f"{path}: corrupted or unreadable weights ({str(e).splitlines()[0]}); re-export the entry "
                       "with 'nas export --train --force'") from None


def pretrained_cfg(entry: Entry) -> dict[str, Any]:
    """The entry's config in the PyTorch image-model `pretrained_cfg` conventions (sizes and statistics as tuples)."""
    c = entry.config
    size = int(c.get("input_size", [3, 224, 224])[-1])
    mean, std = c.get("mean"), c.get("std")
    return {
        "architecture": entry.name, "num_classes": c.get("num_classes", 1000),
        "input_size": tuple(c.get("input_size", [3, size, size])), "mean": tuple(mean) if mean else None,
        "std": tuple(std) if std else None,
        "interpolation": c.get("interpolation", "bilinear"), "crop_pct": c.get("crop_pct", 1.0),
        "classifier": c.get("classifier", "head.fc"), "first_conv": c.get("first_conv"),
        "file": str(entry.path / WEIGHTS) if entry.trained else None,
    }


# timm files registered models under their function's module, and appends them to that module's __all__ and reads its
# default_cfgs: a module of their own keeps nas.zoo's public surface as it is.
TIMM_MODULE = "nas.zoo_timm"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def register_with_timm(names: list[str] | None = None, *, prefix: str = "") -> list[str]:
    """Register zoo entries (default: every one on the search path) or named points as timm models; return the names.

    Each is registered as `prefix + name` with its pretrained config, so `timm.create_model(NAME, pretrained=True)`
    loads the entry's weights and `timm.data.resolve_data_config(model=model)` finds its input size, mean and std. A
    name timm already has (the named point `resnet18`, say) is refused unless `prefix` sets it apart, e.g. "nas_".
    """
    import sys
    import types

    try:
        import timm.models
    except ImportError as e:
        raise NasError("timm is not installed; `pip install timm` to register zoo entries with it") from e
    mod = sys.modules.get(TIMM_MODULE)
    if mod is None:
        mod = sys.modules[TIMM_MODULE] = types.ModuleType(TIMM_MODULE, "nas zoo entries registered with timm")
        mod.default_cfgs, mod.__all__ = {}, []
    done = []
    for name in (entry_names() if names is None else names):
        key = prefix + name
        if timm.models.is_model(key) and key not in mod.default_cfgs:
            raise NasError(f"'{key}' is a timm model already; register it under a prefix, e.g. "
                           f"register_with_timm([{name!r}], prefix='nas_') for timm.create_model('nas_{name}')")
        cfg = {k: v for k, v in _cfg_of(name).items() if k != "architecture" and v is not None}
        mod.default_cfgs[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}

        def make(pretrained: bool = False, _name: str = name, **kwargs: Any) -> nn.Module:
            for timm_only in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's own loading options
                kwargs.pop(timm_only, None)
            return create_model(_name, pretrained=pretrained, **kwargs)

        make.__name__ = make.__qualname__ = key
        make.__module__ = TIMM_MODULE
        make.__doc__ = f"nas zoo '{name}' (pretrained=True loads an exported entry's weights)."
        timm.models.register_model(make)
        done.append(key)
    return done


def _cfg_of(name: str) -> dict[str, Any]:
    """The pretrained config of an entry or a named point."""
    if name in MODELS:
        return named_cfg(name)
    return pretrained_cfg(load_entry(name))


def named_cfg(name: str) -> dict[str, Any]:
    """A built-in named point's config: its own input size, ImageNet's classes, mean and std; no weights."""
    size = MODELS.get(name).default_input
    return {"architecture": name, "num_classes": 1000, "input_size": (3, size, size), "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD, "interpolation": "bilinear", "crop_pct": 0.875, "classifier": "head.fc",
            "first_conv": None, "file": None}


# -- writing entries ------------------------------------------------------------------------------------------------
def write_entry(root: str | Path, name: str, arch: Arch, *, config: dict[str, Any], card: str,
                model: nn.Module | None = None, force: bool = False, exports: tuple[str, ...] = ("torchscript", "onnx"),
                check_onnx: bool = True) -> Path:
    """Write `root/name/` atomically: a new directory is filled, then moved into place (nothing overwritten on error).

    `model` (training form, trained) is saved as safetensors; the deploy form of `model` (or of a fresh build when
    untrained) is exported to TorchScript and ONNX, and the ONNX file is checked against PyTorch with onnxruntime when
    that is installed (the max |Δ| lands in config.json).
    """
    if name in MODELS:
        raise ZooError(f"'{name}' is a built-in named point; choose another --name")
    dest = Path(root) / name
    if dest.exists() and not force:
        raise ZooError(f"{dest} exists; pass --force to replace it")
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        named = Arch(arch.stem, arch.stages, arch.head, name=name)
        named.save(tmp / "arch.yaml")
        config = {**config, "architecture": name, "arch_hash": arch.hash, "trained": model is not None}
        size = int(config.get("input_size", [3, 224, 224])[-1])
        in_chans = int(config.get("in_chans", 3))
        num_classes = int(config.get("num_classes", 1000))
        if model is not None:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS), metadata={"architecture": name, "arch_hash": arch.hash})
            lam = space.get_lambda(model)
            if lam is not None:
                config["deep_training_lambda"] = lam
        deployed = _deploy_copy(named, model, num_classes, in_chans)
        example = torch.randn(1, in_chans, size, size)
        if "torchscript" in exports:
            export_torchscript(deployed, example, tmp / "model.ts")
        if "onnx" in exports:
            export_onnx(deployed, example, tmp / "model.onnx")
            if check_onnx:
                config["onnx_max_abs_diff"] = check_onnx_matches(deployed, tmp / "model.onnx", example)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(card)
        if dest.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=root))
            shutil.rmtree(backup)
            dest.rename(backup)
            tmp.rename(dest)
            shutil.rmtree(backup)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _deploy_copy(arch: Arch, model: nn.Module | None, num_classes: int, in_chans: int) -> nn.Module:
    fresh = space.create_model(arch, num_classes=num_classes, in_chans=in_chans)
    if model is not None:
        fresh.load_state_dict(model.state_dict())
    space.set_lambda(fresh, 1.0)
    return space.deploy(fresh).eval()


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace and freeze the (deploy-form) model to TorchScript."""
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(model.eval(), example))
    traced.save(str(path))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export the (deploy-form) model to ONNX with a dynamic batch dimension."""
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}}, dynamo=True,
                          external_data=False, verbose=False)


def check_onnx_matches(model: nn.Module, path: Path, example: torch.Tensor, atol: float = 1e-4) -> float | None:
    """max |Δ| between onnxruntime and PyTorch on `example` (None when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.cat([example, torch.randn_like(example)])
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    diff = (got - ref).abs().max().item()
    if diff > atol * max(1.0, ref.abs().max().item()):
        raise ZooError(f"{path}: ONNX output differs from PyTorch by {diff:.3g}; the export is not faithful")
    return diff
