"""Proxy-training throughput of `evaluators.train_model` ÷ a minimal hand-written PyTorch loop (target >= 0.9).

Same model (one initialization, copied), same data (digits at 32x32 held as tensors), same number of steps, same
batch size, one thread each; both evaluate on the validation split after every epoch, since the evaluator's job is
to report that. Runs alternate between the two so that load from other processes hits both alike; the ratio uses
the median time of each. With `--device cuda` both run on the GPU with bf16 autocast and channels_last (train_model's
defaults there), the data held on the GPU, and the hand loop reads nothing back but each epoch's accuracy.

    python bench/train_throughput.py [--epochs 3] [--rounds 3] [--batch-size 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import Data, DataConfig, load_data
from evaluators.train import TrainConfig, train_model
from space import Arch, create_model

ARCH = Arch.from_dict({
    "stem": {"type": "conv", "width": 16, "kernel": 3, "stride": 1},
    "stages": [{"block": "basic", "depth": 1, "width": 16, "stride": 1},
               {"block": "basic", "depth": 1, "width": 32, "stride": 2},
               {"block": "basic", "depth": 1, "width": 64, "stride": 2}],
    "head": {"type": "classifier"},
})


def minimal_loop(model: nn.Module, data: Data, epochs: int, batch_size: int, lr: float) -> tuple[float, float]:
    """The loop anyone would write: shuffle, batch, forward, loss, backward, step; validate each epoch."""
    cuda = data.device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(data.device, memory_format=fmt)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (len(data.y_train) // batch_size))
    g = torch.Generator().manual_seed(0)
    acc = 0.0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(data.y_train), generator=g).to(data.device)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                out = model(data.x_train[idx].contiguous(memory_format=fmt))
            loss = F.cross_entropy(out.float(), data.y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=data.device)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
            for x, y in zip(data.x_val.split(2 * batch_size), data.y_val.split(2 * batch_size)):
                correct += (model(x.contiguous(memory_format=fmt)).argmax(1) == y).sum()
        acc = correct.item() / len(data.y_val)
    sync()
    return time.perf_counter() - start, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("train_throughput: --device cuda, but CUDA is not available on this machine")
    torch.set_num_threads(1)
    data = load_data(DataConfig(), device=args.device)
    torch.manual_seed(0)
    init = create_model(ARCH, num_classes=data.num_classes, in_chans=data.in_chans)
    steps = args.epochs * (len(data.y_train) // args.batch_size)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, augment=False, device=args.device)
    cfg_aug = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, augment=True, device=args.device)
    print(f"model: small ResNet, {sum(p.numel() for p in init.parameters()):,} params; digits 32x32, "
          f"{len(data.y_train)} train / {len(data.y_val)} val; {steps} steps of batch {args.batch_size}; 1 thread; "
          f"{args.device}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    minimal_loop(copy.deepcopy(init), data, 1, args.batch_size, 0.1)  # warm-up (first-call allocations)
    times: dict[str, list[float]] = {"minimal loop": [], "train_model": [], "train_model + augment": []}
    accs: dict[str, float] = {}
    for r in range(args.rounds):
        t, accs["minimal loop"] = minimal_loop(copy.deepcopy(init), data, args.epochs, args.batch_size, 0.1)
        times["minimal loop"].append(t)
        for name, c in (("train_model", cfg), ("train_model + augment", cfg_aug)):
            res = train_model(copy.deepcopy(init), data, c)
            times[name].append(res.seconds)
            accs[name] = res.accuracy
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    base = statistics.median(times["minimal loop"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:24s} median {med:6.2f} s  {steps * args.batch_size / med:7.0f} samples/s  "
              f"throughput ratio {base / med:.3f}  (val acc {accs[name]:.3f})")
    ratio = base / statistics.median(times["train_model"])
    print(f"RESULT train_model throughput / minimal loop = {ratio:.3f} (target >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'}); load average after: {os.getloadavg()[0]:.2f}")
    assert math.isfinite(ratio)


if __name__ == "__main__":
    main()
