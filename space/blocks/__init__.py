"""Block families: importing this package registers every family and its named points (one line per family)."""

from space.blocks import resnet  # noqa: F401
from space.blocks import plain  # noqa: F401
from space.blocks import ghost  # noqa: F401
from space.blocks import gghost  # noqa: F401
from space.blocks import mbconv  # noqa: F401
from space.blocks import regnet  # noqa: F401
from space.blocks import convnext  # noqa: F401
from space.blocks import repvgg  # noqa: F401
from space.blocks import vanillanet  # noqa: F401
from space.blocks import parnet  # noqa: F401
