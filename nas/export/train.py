"""Training an entry: the study's recipe for `--train`, checkpointed after every epoch under `<zoo>/.NAME.partial/` so
that running the same command again resumes it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

import space
from nas.export.select import ExportOptions, Log, trial_seed_of
from nas.fileio import atomic_write
from nas.study import Study
from nas.zoo import ZooError, read_weights
from space import Arch


def train_config(study: Study, opts: ExportOptions, seed: int = 0) -> Any:
    """The study's training recipe with the export's epochs, device, threads and seed."""
    from evaluators import TrainConfig

    return TrainConfig(**{**study.evaluator.train, "epochs": int(opts.epochs or study.evaluator.epochs),
                          "device": opts.device, "threads": opts.threads, "seed": seed})


def train_entry(arch: Arch, study: Study, t: FrozenTrial, name: str, data: Any, opts: ExportOptions,
                log: Log = print) -> tuple[nn.Module, dict]:
    """Train `arch` with the study's recipe for `opts.epochs`, resuming from `<root>/.name.partial/` when there."""
    from evaluators import train_model

    cfg = train_config(study, opts, trial_seed_of(study, t))
    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "threads")}
    key = {"arch": arch.hash, "train": recipe, "data": {"name": data.name, "train": len(data.y_train),
                                                         "val": len(data.y_val), "shape": list(data.x_train.shape[1:])},
           "study": study.name, "trial": t.number}
    ckpt = Checkpoint(opts.root / f".{name}.partial", key)
    if opts.restart:
        ckpt.remove()
    torch.manual_seed(cfg.seed)
    model = space.create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans,
                               drop_path_rate=cfg.drop_path_rate)
    resume = ckpt.load(model)
    start = resume.epoch if resume else 0
    if resume:
        log(f"  {name}: resuming from epoch {start} of {cfg.epochs} ({ckpt.directory})")
    bar = Progress(name, cfg.epochs, start, log)
    try:
        result = train_model(model, data, cfg, callback=bar, checkpoint=lambda s: ckpt.save(model, s), resume=resume)
    except KeyboardInterrupt:
        bar.close()
        log(f"  {name}: interrupted after epoch {ckpt.epoch} of {cfg.epochs}; run the same command again to resume")
        raise
    finally:
        bar.close()
    return model, {"epochs": result.epochs, "accuracy": result.accuracy, "history": result.history,
                   "seconds": round(ckpt.seconds, 1), "resumed_from": start or None,
                   "recipe": recipe, "device": cfg.device}


class Progress:
    """A progress bar over epochs on a terminal (tqdm), else one line per epoch."""

    def __init__(self, name: str, epochs: int, start: int, log: Log):
        self.name, self.epochs, self.log = name, epochs, log
        self.start = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, initial=start, desc=f"training {name}", unit="epoch", file=sys.stderr)

    def __call__(self, epoch: int, accuracy: float) -> None:
        """After epoch `epoch` (0-based)."""
        if self.bar is not None:
            self.bar.set_postfix(val_acc=f"{accuracy:.4f}", refresh=False)
            self.bar.update(1)
        else:
            self.log(f"  {self.name}: epoch {epoch + 1}/{self.epochs}  val acc {accuracy:.4f}  "
                     f"({time.perf_counter() - self.start:.1f} s)")

    def close(self) -> None:
        """End the bar."""
        if self.bar is not None:
            self.bar.close()


class Checkpoint:
    """`<root>/.NAME.partial/`: weights (safetensors) and training state after the last finished epoch.

    Each save writes `weights-E.safetensors` and `state-E.pt`, then points `progress.json` at them (an atomic rename),
    so an interruption at any moment leaves the previous epoch's checkpoint whole. The state is loaded with
    `weights_only=True`: no pickled code runs.
    """

    def __init__(self, directory: Path, key: dict):
        self.directory = Path(directory)
        self.key = key
        self.seconds = 0.0  # training time of the whole run, across resumptions
        self.epoch = 0  # the last epoch saved
        self._since = time.perf_counter()

    def load(self, model: nn.Module) -> Any:
        """The state to resume from (weights loaded into `model`), or None when there is no checkpoint."""
        from evaluators.train import TrainState

        progress = self.directory / "progress.json"
        if not progress.is_file():
            return None
        fix = f"pass --restart to discard it (or remove {self.directory})"
        try:
            saved = json.loads(progress.read_text())
            files = saved["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ZooError(f"{progress}: unreadable training checkpoint ({type(e).__name__}); {fix}") from None
        if saved.get("key") != self.key:
            diff = _differences(saved.get("key") or {}, self.key)
            raise ZooError(f"{self.directory}: a checkpoint of another training run ({diff}); {fix}")
        try:
            model.load_state_dict(read_weights(self.directory / files["weights"]))
        except ZooError as e:
            raise ZooError(f"{str(e).split(';')[0]}; {fix}") from None
        try:
            raw = torch.load(self.directory / files["state"], map_location="cpu", weights_only=True)
            state = TrainState.from_dict(raw)
        except Exception as e:  # torch raises many types for a truncated or foreign file
            raise ZooError(f"{self.directory / files['state']}: unreadable training state "
                           f"({type(e).__name__}); {fix}") from None
        self.seconds = float(saved.get("seconds", 0.0))
        self._since = time.perf_counter()
        self.epoch = state.epoch
        return state

    def save(self, model: nn.Module, state: Any) -> None:
        """Write the checkpoint of epoch `state.epoch` (called by `train_model` after each epoch)."""
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.perf_counter()
        self.seconds += now - self._since
        self._since = now
        files = {"weights": f"weights-{state.epoch}.safetensors", "state": f"state-{state.epoch}.pt"}
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write(self.directory / files["weights"], lambda p: save_file(weights, str(p)))
        atomic_write(self.directory / files["state"], lambda p: torch.save(state.to_dict(), p))
        record = {"key": self.key, "epoch": state.epoch, "history": state.history, "seconds": self.seconds,
                  "files": files}
        atomic_write(self.directory / "progress.json", lambda p: p.write_text(json.dumps(record, indent=1)))
        self.epoch = state.epoch
        for f in self.directory.iterdir():
            if f.name not in (*files.values(), "progress.json"):
                f.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the checkpoint (training finished and exported, or --restart)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _differences(old: dict, new: dict) -> str:
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            parts += [f"{k}.{f}: {a.get(f)} → {b.get(f)}" for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
        elif a != b:
            parts.append(f"{k}: {a} → {b}")
    return ", ".join(parts) or "different settings"
