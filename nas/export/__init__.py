"""`nas export`: trials of a study as zoo entries — a found network as a normal model others load in one line.

An entry (see `nas.zoo`) holds the trial's *target* network by default: the architecture at the target width,
for the target resolution — the network whose latency, params and MACs are on the front. `--proxy` exports the
cheaper copy the search trained instead (labelled so in the model card and config). Weights come only from
`--train`: a run of the study's recipe on the study's data at the exported network's resolution, seeded like the
trial, checkpointed after every epoch under `<zoo>/.NAME.partial/` so that running the same command again resumes
it; without `--train` the entry says it is untrained. Every entry gets its deploy form as TorchScript and ONNX
(checked with onnxruntime), a model card, and a config in the PyTorch image-model conventions.

`trial_model` builds a trial's proxy the way the trial started it (its seed, the proxy width and drop path); training
is deterministic for a seed on a CPU, so `--proxy --train --epochs E` with the study's epochs reproduces the trial.
"""

from nas.export.card import entry_config, model_card
from nas.export.select import (
    ExportOptions,
    best_under_latency,
    entry_name,
    exported_arch,
    get_trial,
    pareto_trials,
    parse_latency,
    trial_arch,
    trial_model,
    trial_seed_of,
)
from nas.export.train import Checkpoint, train_config, train_entry
from nas.export.write import export, export_trial

__all__ = ["ExportOptions", "best_under_latency", "entry_name", "exported_arch", "get_trial", "pareto_trials",
           "parse_latency", "trial_arch", "trial_model", "trial_seed_of", "Checkpoint", "train_config", "train_entry",
           "entry_config", "model_card", "export", "export_trial"]
