"""`evaluators`: measured cost, measured latency, proxy training and zero-cost proxies of architectures."""

from evaluators.cost import Cost, measure_cost
from evaluators.data import Data, DataConfig, DataError, load_data
from evaluators.latency import (
    LatencyCache,
    LatencyConfig,
    LatencyError,
    LatencyResult,
    default_backend,
    device_fingerprint,
    device_info,
    measure_latency,
    time_model,
)
from evaluators.train import TrainConfig, TrainingDiverged, TrainResult, evaluate, train_model
from evaluators.zero_cost import PROXIES, score

__all__ = [
    "Cost", "measure_cost", "Data", "DataConfig", "DataError", "load_data", "LatencyCache", "LatencyConfig",
    "LatencyError", "LatencyResult", "default_backend", "device_fingerprint", "device_info", "measure_latency",
    "time_model",
    "TrainConfig", "TrainResult", "TrainingDiverged", "train_model", "evaluate", "PROXIES", "score",
]
