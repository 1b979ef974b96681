"""`evaluators`: measured cost, measured latency, proxy training and zero-cost proxies of architectures."""

from evaluators.cost import Cost, measure_cost

__all__ = ["Cost", "measure_cost"]
