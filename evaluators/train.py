"""Proxy training: train a built model for a budget on tensors held on the device and report validation top-1.

SGD-momentum or AdamW, linear warm-up then cosine decay per step, label smoothing, weight decay (not on norms and
biases), random crop/flip in batch on the device, autocast (bf16/fp16) and channels_last on CUDA, VanillaNet deep
training (lambda annealed 0 → 1 over a fraction of the budget, so the deploy form is exact at the end) and drop path.
A run can be checkpointed after every epoch (`checkpoint=`) and resumed exactly from such a state (`resume=`).

The step loop never waits for the device: an epoch's crop offsets and flips are drawn at its start (one copy to the
device), losses stay on the device and are read (and checked for NaN) once per epoch, so on CUDA the host queues
steps ahead of the GPU as a plain loop does. The one exception is fp16 with its gradient scaler, which reads the
overflow flag every step (bf16, the default where supported, has no scaler).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import Data
from space.errors import SpecError, did_you_mean
from space.layers import DropPath

OPTIMIZERS = ("sgd", "adamw")
AMP = ("auto", "off", "bf16", "fp16")
SWITCH = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig:
    """The training budget and recipe. `amp`: auto | off | bf16 | fp16; `channels_last`: auto | on | off.

    `drop_path_rate` sets a linearly increasing rate on the model's DropPath modules (build the model with
    `create_model(..., drop_path_rate=r)` so its blocks have them); `threads` pins torch's CPU threads (None: leave).
    """

    epochs: int = 5
    steps_per_epoch: int | None = None
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    augment: bool = True
    amp: str = "auto"
    channels_last: str = "auto"
    lambda_fraction: float = 0.5
    drop_path_rate: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 1


@dataclass
class TrainResult:
    """Final and per-epoch validation top-1, the budget actually used and the trained model."""

    accuracy: float
    history: list[float]
    epochs: int
    seconds: float
    model: nn.Module
    stopped_early: bool = False
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch


@dataclass
class TrainState:
    """Where a run is after `epoch` epochs: everything but the model's weights (the caller's) needed to resume it.

    `to_dict()` holds only tensors and plain Python values, so it round-trips through `torch.load(weights_only=True)`.
    """

    epoch: int
    history: list[float]
    losses: list[float]
    optimizer: dict
    scaler: dict
    generator: torch.Tensor  # data order and augmentation
    rng: torch.Tensor  # torch's global generator (dropout, drop path)
    perm: torch.Tensor | None  # the pass over the training set in progress, and the position in it
    pos: int

    def to_dict(self) -> dict:
        """Plain values and tensors."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """The inverse of `to_dict`."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def train_model(model: nn.Module, data: Data, cfg: TrainConfig,
                callback: Callable[[int, float], bool | None] | None = None, *,
                checkpoint: Callable[[TrainState], None] | None = None,
                resume: TrainState | None = None) -> TrainResult:
    """Train `model` on `data` with `cfg`; `callback(epoch, val_acc)` after each epoch may return True to stop.

    `checkpoint(state)` is called after each epoch, before `callback` (the state shares tensors with the run: save it
    at once); `resume=state` continues such a run with the model's weights of that epoch already loaded, and gives
    the same result as the run that was not interrupted.
    """
    _check(cfg, data)
    if resume is not None and not 0 <= resume.epoch <= cfg.epochs:
        raise SpecError(f"cannot resume after epoch {resume.epoch} of a {cfg.epochs}-epoch run", key="epochs",
                        source="train config")
    previous_threads = torch.get_num_threads()
    previous_benchmark = torch.backends.cudnn.benchmark
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _Trainer(model, data, cfg).run(callback, checkpoint, resume)
    finally:
        torch.set_num_threads(previous_threads)
        torch.backends.cudnn.benchmark = previous_benchmark


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> float:
    """Top-1 accuracy of `model` (in eval mode) on tensors `x`, `y` (on the model's device)."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    try:
        with torch.no_grad(), autocast:
            for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                correct += (model(xb).argmax(1) == yb).sum()
    finally:
        model.train(was)
    return correct.item() / max(1, len(y))


class _Trainer:
    """One training run; holds the resolved settings so the step loop stays small."""

    def __init__(self, model: nn.Module, data: Data, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.cuda = self.device.type == "cuda"
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and self.cuda)
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last
                              else torch.contiguous_format)
        self.data = data if data.device == self.device else data.to(self.device)
        n = len(self.data.y_train)
        self.batch_size = min(cfg.batch_size, n)
        self.steps_per_epoch = cfg.steps_per_epoch or max(1, n // self.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = min(self.total_steps, round(cfg.warmup_epochs * self.steps_per_epoch))
        self.lambda_steps = cfg.lambda_fraction * self.total_steps
        self.deep = [m for m in self.model.modules() if hasattr(m, "set_lambda")]
        self.optimizer = _optimizer(self.model, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.perm: torch.Tensor | None = None  # the current pass over the training set
        self.pos = 0
        self.pad = max(1, data.x_train.shape[-1] // 8)
        self.crops: tuple[torch.Tensor, ...] | None = None  # this epoch's crops and flips, drawn at its start
        self.forward = self.model.forward_train if hasattr(self.model, "forward_train") else None
        self.eval_batch = _eval_batch_size(self.batch_size, data.x_train.shape[-2:], self.cuda)
        if cfg.drop_path_rate > 0:
            drops = [m for m in self.model.modules() if isinstance(m, DropPath)]
            for i, m in enumerate(drops):
                m.p = cfg.drop_path_rate * i / max(1, len(drops) - 1)

    def run(self, callback: Callable[[int, float], bool | None] | None,
            checkpoint: Callable[[TrainState], None] | None = None, resume: TrainState | None = None) -> TrainResult:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # dropout and drop path draw from the global generator
        start = time.perf_counter()
        history: list[float] = []
        losses: list[float] = []
        first = 0
        if resume is not None:
            self._restore(resume)
            first, history, losses = resume.epoch, list(resume.history), list(resume.losses)
        stopped = False
        batches = self._batches()
        step = first * self.steps_per_epoch
        for epoch in range(first, cfg.epochs):
            self.model.train()
            epoch_losses = torch.zeros(self.steps_per_epoch, device=self.device)
            if cfg.augment:
                self.crops = self._draw_crops()
            for s in range(self.steps_per_epoch):
                epoch_losses[s] = self._step(step, s, next(batches))
                step += 1
            # The epoch's one read of the losses: a per-step check would make the host wait for every step.
            epoch_losses = epoch_losses.cpu()
            bad = (~torch.isfinite(epoch_losses)).nonzero()
            if len(bad):
                raise TrainingDiverged(f"training loss became non-finite at epoch {epoch} step {int(bad[0])}; "
                                       f"lower the learning rate (lr={cfg.lr})")
            losses.append(epoch_losses.mean().item())
            history.append(evaluate(self.model, self.data.x_val, self.data.y_val, batch_size=self.eval_batch,
                                    amp_dtype=self.amp_dtype, channels_last=self.channels_last))
            if checkpoint is not None:
                checkpoint(self._state(epoch + 1, history, losses))
            if callback is not None and callback(epoch, history[-1]):
                stopped = epoch < cfg.epochs - 1
                break
        if self.deep:
            # The deploy form needs lambda = 1; an early-stopped run ends here too (its accuracy was measured
            # at the lambda of its last epoch).
            self._set_lambda(self.total_steps)
        return TrainResult(accuracy=history[-1] if history else 0.0, history=history, epochs=len(history),
                           seconds=time.perf_counter() - start, model=self.model, stopped_early=stopped,
                           losses=losses)

    def _step(self, step: int, s: int, idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on batch `idx` (step `s` of the epoch); returns the loss, left on the device."""
        cfg = self.cfg
        lr = self._lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.deep:
            self._set_lambda(step + 1)
        if self.crops is not None:
            x = crop_flip(self.data.x_train, idx, *(t[s] for t in self.crops))
        else:
            x = self.data.x_train[idx]
        y = self.data.y_train[idx]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext():
            # Auxiliary classifiers (GoogLeNet, Inception-v3) train with their losses weighted into the main one.
            out, aux = self.forward(x) if self.forward is not None else (self.model(x), [])
        loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
        for weight, logits in aux:
            loss = loss + weight * F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()

    def _draw_crops(self) -> tuple[torch.Tensor, ...]:
        """The epoch's random crops and flips as `crop_flip` arguments, one row per step of the epoch, on the device.

        Drawn from the run's CPU generator (so a seed gives the same augmentation on any device) in one go and moved
        with one copy, instead of three small host-to-device copies, each a synchronization, at every step.
        """
        steps, n = self.steps_per_epoch, self.batch_size
        h, w = self.data.x_train.shape[-2:]
        span = 2 * self.pad + 1
        draws = [torch.randint(0, span, (steps, n, 1), generator=self.generator),
                 torch.randint(0, span, (steps, n, 1), generator=self.generator)]
        if self.data.hflip:
            draws.append((torch.rand(steps, n, 1, generator=self.generator) < 0.5).long())
        draws = list(torch.cat(draws, dim=-1).to(self.device).split(1, dim=-1))
        rows = draws[0] - self.pad + torch.arange(h, device=self.device)
        cols = draws[1] - self.pad + torch.arange(w, device=self.device)
        if self.data.hflip:
            cols = torch.where(draws[2].bool(), cols.flip(-1), cols)
        rows_in, cols_in = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        return rows.clamp_(0, h - 1), cols.clamp_(0, w - 1), rows_in, cols_in

    def _lr(self, step: int) -> float:
        """Linear warm-up to `lr`, then cosine decay to 0 at the end of the budget."""
        if step < self.warmup_steps:
            return self.cfg.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        return 0.5 * self.cfg.lr * (1.0 + math.cos(math.pi * (step - self.warmup_steps) / span))

    def _set_lambda(self, steps_done: int) -> None:
        """Deep-training slope after `steps_done` steps: linear, reaching 1 at `lambda_fraction` of the budget."""
        lam = 1.0 if self.lambda_steps <= 0 else min(1.0, steps_done / self.lambda_steps)
        for m in self.deep:
            m.set_lambda(lam)

    def _batches(self) -> Iterator[torch.Tensor]:
        """Index batches from an endless stream of seeded permutations (the last partial batch is dropped)."""
        n = len(self.data.y_train)
        while True:
            if self.perm is None or self.pos + self.batch_size > n:
                self.perm = torch.randperm(n, generator=self.generator).to(self.device)
                self.pos = 0
            self.pos += self.batch_size
            yield self.perm[self.pos - self.batch_size:self.pos]

    def _state(self, epoch: int, history: list[float], losses: list[float]) -> TrainState:
        return TrainState(epoch=epoch, history=list(history), losses=list(losses),
                          optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                          generator=self.generator.get_state(), rng=torch.get_rng_state(),
                          perm=None if self.perm is None else self.perm.cpu(), pos=self.pos)

    def _restore(self, state: TrainState) -> None:
        self.optimizer.load_state_dict(state.optimizer)
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)
        self.generator.set_state(state.generator)
        torch.set_rng_state(state.rng)
        self.perm = None if state.perm is None else state.perm.to(self.device)
        self.pos = int(state.pos)


def crop_flip(x: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, rows_in: torch.Tensor,
              cols_in: torch.Tensor) -> torch.Tensor:
    """Samples `idx` of `x` (N×C×H×W), cropped and flipped in one gather: pixel (i, c, r, q) of the result is
    x[idx[i], c, rows[i, r], cols[i, q]] where rows_in[i, r] and cols_in[i, q], else 0 (the zero padding)."""
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = x[idx[:, None, None, None], chans, rows[:, None, :, None], cols[:, None, None, :]]
    return out.masked_fill_(~(rows_in[:, None, :, None] & cols_in[:, None, None, :]), 0.0)


def _eval_batch_size(batch_size: int, size: tuple[int, int] | torch.Size, cuda: bool) -> int:
    """Validation batch: twice the training batch; on CUDA at least ~1M pixels per sample plane (fewer launches)."""
    if not cuda:
        return 2 * batch_size
    return max(2 * batch_size, min(4096, (1 << 20) // max(1, size[0] * size[1])))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD-momentum or AdamW; weight decay on weights only (not on norm scales and biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: auto is bf16 on CUDA when supported, else fp16, and off on other devices."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _check(cfg: TrainConfig, data: Data) -> None:
    """Reject settings that cannot work, naming the key and the choices."""
    src = "train config"
    for key, value, choices in (("optimizer", cfg.optimizer, OPTIMIZERS), ("amp", cfg.amp, AMP),
                                ("channels_last", cfg.channels_last, SWITCH)):
        if value not in choices:
            raise SpecError(f"unknown value '{value}'", key=key, source=src, hint=did_you_mean(value, choices))
    if cfg.epochs < 1:
        raise SpecError(f"must be >= 1, got {cfg.epochs}", key="epochs", source=src)
    if cfg.batch_size < 2:
        raise SpecError(f"must be >= 2 (BatchNorm needs two samples per batch), got {cfg.batch_size}",
                        key="batch_size", source=src)
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1:
        raise SpecError(f"must be >= 1 (or None for one pass), got {cfg.steps_per_epoch}", key="steps_per_epoch",
                        source=src)
    if not 0.0 <= cfg.lambda_fraction <= 1.0:
        raise SpecError(f"must be in [0, 1], got {cfg.lambda_fraction}", key="lambda_fraction", source=src)
    if not 0.0 <= cfg.drop_path_rate < 1.0:
        raise SpecError(f"must be in [0, 1), got {cfg.drop_path_rate}", key="drop_path_rate", source=src)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine", key="device", source=src, hint="use 'cpu'")
    if len(data.y_train) < 2:
        raise SpecError(f"dataset '{data.name}' has {len(data.y_train)} training sample(s); BatchNorm needs >= 2",
                        key="batch_size", source=src)
