"""`space`: the design space — architecture values, the YAML search space, the builder, and the named points."""

from space import blocks as _blocks  # noqa: F401  (registers every block family and named point)
from space import heads as _heads  # noqa: F401
from space import stems as _stems  # noqa: F401
from space.arch import Arch, Head, Stage, Stem
from space.builder import Net, build
from space.errors import DeployError, NasError, NotInSpaceError, SpecError, UnknownNameError
from space.factory import count_params, create_model, resolve_arch
from space.params import BLOCKS, HEADS, STEMS, Params
from space.reparam import deploy, deploy_difference, drop_training_only, exact_float32, get_lambda, set_lambda
from space.zoo import MODELS, get_arch, list_models, register_model

__all__ = [
    "Arch", "Stem", "Stage", "Head", "Params", "Net", "build", "create_model", "resolve_arch", "count_params",
    "deploy", "deploy_difference", "exact_float32", "drop_training_only", "set_lambda", "get_lambda", "list_models",
    "get_arch", "register_model", "MODELS",
    "STEMS", "BLOCKS", "HEADS", "NasError", "SpecError", "NotInSpaceError", "UnknownNameError", "DeployError",
]
