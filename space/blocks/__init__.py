"""Block families: importing this package registers every family and its named points (one line per family)."""

from space.blocks import (
    convnext,  # noqa: F401
    densenet,  # noqa: F401
    gghost,  # noqa: F401
    ghost,  # noqa: F401
    inception,  # noqa: F401
    mbconv,  # noqa: F401
    parnet,  # noqa: F401
    plain,  # noqa: F401
    regnet,  # noqa: F401
    repvgg,  # noqa: F401
    resnet,  # noqa: F401
    vanillanet,  # noqa: F401
)
