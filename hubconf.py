"""torch.hub entry points: every built-in named point and every exported zoo entry, by name.

    torch.hub.load("/path/to/nas", "resnet50", source="local")
    torch.hub.load("/path/to/nas", "my_found_net", source="local", pretrained=True)  # in ./zoo or $NAS_ZOO_PATH
    torch.hub.load("/path/to/nas", "zoo_entry", "/abs/path/zoo/my_found_net", source="local", pretrained=True)
"""

from __future__ import annotations

from typing import Any

dependencies = ["torch", "yaml", "safetensors"]


def _entry_point(name: str) -> Any:
    def load(pretrained: bool = False, **kwargs: Any) -> Any:
        from nas import zoo

        return zoo.create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = name
    load.__doc__ = f"Build '{name}' (pretrained=True loads an exported entry's weights)."
    return load


def zoo_entry(path: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Build the zoo entry in folder `path` (pretrained=True loads its weights)."""
    from nas import zoo

    return zoo.create_model(zoo.load_entry(path).path, pretrained=pretrained, **kwargs)


def __getattr__(name: str) -> Any:
    """torch.hub looks entry points up with getattr: resolve any named point or zoo entry lazily."""
    if name.startswith("__"):
        raise AttributeError(name)
    from nas import zoo

    if name in zoo.list_models():
        return _entry_point(name)
    raise AttributeError(f"no named point or zoo entry '{name}'")


def __dir__() -> list[str]:
    from nas import zoo

    return ["dependencies", "zoo_entry", *zoo.list_models()]
