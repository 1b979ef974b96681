"""The CUDA paths of space/ and evaluators/ on one GPU, in under 5 minutes: prints the ratios issue 22 accepts on.

Needs only torch and this repository (no Ray, Optuna, scikit-learn or network): data are synthetic tensors.

  train    train_model vs a hand-written loop, ms/step (ResNet-18 ×0.5, GhostNet-0.5 ×0.5; 32 px, batch 64, bf16
           autocast, channels_last, SGD; both evaluate a 1,024-image validation split after every epoch)
  packing  total training throughput of k processes on the GPU (k = 1, 2, 4, 8) and the k calibrate_packing picks
  latency  the cuda_graph backend vs a hand CUDA-graph replay; first vs fifth measurement of a fresh process
  ranking  eager vs cuda_graph batch-1 latency of ResNet-18 and MobileNetV2: which one is faster
  deploy   train vs deploy form, max relative logit difference in float32 with TF32 off (and with torch's defaults)

    python bench/gpu_check.py [--device cuda:0] [--only train,latency] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/gpu_check.py` from anywhere

try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    import space
    from evaluators.data import Data
    from evaluators.latency import LatencyConfig, time_model
    from evaluators.packing import DEFAULT_TRIALS_PER_GPU, calibrate_packing, choose_trials_per_gpu
    from evaluators.train import TrainConfig, train_model
    from space.adapt import adapt_input
except ImportError as e:  # the lent machines have torch; numpy and PyYAML come with most Python installs
    sys.exit(f"gpu_check: cannot import {e.name} ({e}); it needs torch, numpy and pyyaml")

SECTIONS = ("train", "packing", "latency", "ranking", "deploy")
TRAIN_NETS = (("resnet18", 0.5), ("ghostnet_050", 0.5))
DEPLOY_NETS = ("repvgg_a0", "vanillanet_5", "parnet_s", "googlenet")
BATCH, RES, STEPS, EPOCHS = 64, 32, 40, 3
VERDICTS: list[tuple[str, bool]] = []


def verdict(what: str, ok: bool) -> None:
    """Record and print one acceptance line."""
    VERDICTS.append((what, ok))
    print(f"  -> {what}: {'met' if ok else 'NOT met'}", flush=True)


def proxy(name: str, width: float, device: torch.device) -> nn.Module:
    """The network as a study's proxy builds it: adapted to 32 px, scaled, 10 classes, on the device."""
    arch = adapt_input(space.get_arch(name), RES).arch
    torch.manual_seed(0)
    return space.create_model(arch, num_classes=10, width_mult=width).to(device)


def synthetic(device: torch.device, n_train: int = BATCH * STEPS, n_val: int = 1024) -> Data:
    """Random 32 px images and labels held on the device (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(0)
    return Data(x_train=torch.randn(n_train, 3, RES, RES, generator=g), y_train=torch.randint(0, 10, (n_train,)),
                x_val=torch.randn(n_val, 3, RES, RES, generator=g), y_val=torch.randint(0, 10, (n_val,)),
                num_classes=10, in_chans=3, mean=(0.0,) * 3, std=(1.0,) * 3, name="synthetic").to(device)


# -- train ------------------------------------------------------------------------------------------------------------
def hand_loop(model: nn.Module, data: Data, epochs: int, eval_batch: int) -> float:
    """The loop anyone would write for the GPU (no host read but the epoch's accuracy); returns seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model = model.to(memory_format=torch.channels_last)
    n = len(data.y_train)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, device=data.device)
        for i in range(0, n - BATCH + 1, BATCH):
            idx = perm[i:i + BATCH]
            x = data.x_train[idx].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            loss = F.cross_entropy(out.float(), data.y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=data.device)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for xb, yb in zip(data.x_val.split(eval_batch), data.y_val.split(eval_batch)):
                correct += (model(xb.contiguous(memory_format=torch.channels_last)).argmax(1) == yb).sum()
        correct.item()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def check_train(device: torch.device) -> None:
    """train_model vs the hand loop, ms per step (epochs include their validation), median of 3 alternating rounds.

    Both validate in batches of 1,024 (what train_model uses at 32 px on CUDA), so the ratio is the step loop's.
    """
    data = synthetic(device)
    steps = EPOCHS * STEPS
    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=0.05, amp="bf16", channels_last="on", device=str(device))
    no_aug = dataclasses.replace(cfg, augment=False)
    for name, width in TRAIN_NETS:
        init = proxy(name, width, device)
        hand_loop(copy.deepcopy(init), data, 1, 1024)  # warm-up: cuDNN autotuning, allocator
        train_model(copy.deepcopy(init), data, dataclasses.replace(cfg, epochs=1))
        times: dict[str, list[float]] = {"hand loop": [], "train_model": [], "train_model, no augment": []}
        for _ in range(3):
            times["hand loop"].append(hand_loop(copy.deepcopy(init), data, EPOCHS, 1024))
            times["train_model"].append(train_model(copy.deepcopy(init), data, cfg).seconds)
            times["train_model, no augment"].append(train_model(copy.deepcopy(init), data, no_aug).seconds)
        ms = {k: 1e3 * statistics.median(v) / steps for k, v in times.items()}
        print(f"{name} ×{width}: " + ", ".join(f"{k} {v:.2f} ms/step" for k, v in ms.items()), flush=True)
        ratio = ms["train_model"] / ms["hand loop"]
        bare = ms["train_model, no augment"] / ms["hand loop"]
        print(f"  train_model / hand loop = {ratio:.2f} (no augment: {bare:.2f})")
        verdict(f"train_model within 1.2x of the hand loop, {name}", ratio <= 1.2)


# -- packing ----------------------------------------------------------------------------------------------------------
def check_packing(device: torch.device) -> None:
    """calibrate_packing on ResNet-18 ×0.5 at 32 px: total steps/s for k = 1, 2, 4, 8 processes, and the choice."""
    arch = adapt_input(space.get_arch("resnet18"), RES).arch
    cfg = TrainConfig(batch_size=BATCH, lr=0.05, amp="bf16", channels_last="on", device=str(device))
    start = time.perf_counter()
    p = calibrate_packing(arch, cfg, resolution=RES, width_mult=0.5, ks=(1, 2, 4, 8), steps=200, warmup_steps=20,
                          min_gain=-1.0)  # measure every k; the choice is recomputed below with the real rule
    one = p.throughput[1] or float("nan")
    for k, t in p.throughput.items():
        print(f"  k={k}: {'failed' if t is None else f'{t:.1f} steps/s, {t / one:.2f}x one'}", flush=True)
    chosen = choose_trials_per_gpu(p.throughput, peak_memory=p.peak_memory, total_memory=p.total_memory)
    peak = f"{p.peak_memory / 2**30:.2f} GiB" if p.peak_memory else "?"
    print(f"  calibrated choice: {chosen} trials per GPU (gpu {1 / chosen:.3g}); one trial's peak memory {peak}; "
          f"{time.perf_counter() - start:.0f} s")
    default = (p.throughput.get(DEFAULT_TRIALS_PER_GPU) or 0.0) / one
    verdict(f"default packing ({DEFAULT_TRIALS_PER_GPU} per GPU) >= 3x one trial ({default:.2f}x)", default >= 3.0)
    chosen_gain = (p.throughput.get(chosen) or 0.0) / one
    verdict(f"calibrated packing ({chosen} per GPU) >= 3x one trial ({chosen_gain:.2f}x)", chosen_gain >= 3.0)


# -- latency ----------------------------------------------------------------------------------------------------------
def latency_cfg(device: torch.device, backend: str) -> LatencyConfig:
    """Batch 1, 224 px, float32: the figure the issue compared."""
    return LatencyConfig(device=str(device), batch_size=1, resolution=224, backend=backend, load_threshold=1e9,
                         max_attempts=1)


def deployed(name: str) -> nn.Module:
    torch.manual_seed(0)
    return space.create_model(name, deploy=True).eval()


def hand_graph_ms(model: nn.Module, device: torch.device) -> float:
    """A CUDA-graph replay timed by hand: 2 s of replays to warm up, then the median of 10 blocks of 200 replays."""
    model = model.to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad():
        with torch.cuda.stream(side):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end:
        graph.replay()
        torch.cuda.synchronize()
    blocks = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(200):
            graph.replay()
        b.record()
        b.synchronize()
        blocks.append(a.elapsed_time(b) / 200)
    return statistics.median(blocks)


def check_latency(device: torch.device, compile_too: bool) -> None:
    """cuda_graph backend vs hand replay; the first vs the fifth measurement in a fresh process."""
    for name in ("resnet18", "mobilenet_v2"):
        ours = time_model(deployed(name), latency_cfg(device, "cuda_graph")).median_ms
        hand = hand_graph_ms(deployed(name), device)
        print(f"{name}: cuda_graph backend {ours:.4f} ms, hand CUDA-graph replay {hand:.4f} ms, "
              f"ratio {ours / hand:.3f}", flush=True)
        verdict(f"cuda_graph within 10% of a hand replay, {name}", abs(ours / hand - 1) <= 0.10)
        if compile_too:
            try:
                t0 = time.perf_counter()
                comp = time_model(deployed(name), latency_cfg(device, "compile")).median_ms
                print(f"  compile backend {comp:.4f} ms ({time.perf_counter() - t0:.0f} s with compilation)")
            except Exception as e:  # report, do not stop the check
                print(f"  compile backend failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    out = subprocess.run([sys.executable, __file__, "--fresh-process", str(device)], capture_output=True, text=True,
                         timeout=240)
    if out.returncode != 0:
        print(f"  fresh process failed:\n{out.stderr[-2000:]}")
        verdict("first measurement of a process within 10% of the fifth", False)
        return
    times = json.loads(out.stdout.strip().splitlines()[-1])
    print("fresh process, resnet18 cuda_graph, 5 measurements in a row: " + ", ".join(f"{t:.4f}" for t in times)
          + " ms")
    first = times[0] / times[4]
    verdict(f"first measurement within 10% of the fifth ({first:.3f})", abs(first - 1) <= 0.1)


def fresh_process(device: str) -> None:
    """Run in a new process: five measurements of ResNet-18 with the default (auto) backend; print them as JSON."""
    cfg = LatencyConfig(device=device, batch_size=1, resolution=224, load_threshold=1e9, max_attempts=1)
    times = [time_model(deployed("resnet18"), cfg).median_ms for _ in range(5)]
    print(json.dumps(times))


def check_ranking(device: torch.device) -> None:
    """Which of ResNet-18 and MobileNetV2 is faster at batch 1, in eager mode and as a CUDA graph."""
    res = {}
    for backend in ("eager", "cuda_graph"):
        for name in ("resnet18", "mobilenet_v2"):
            res[backend, name] = time_model(deployed(name), latency_cfg(device, backend)).median_ms
        faster = min(("resnet18", "mobilenet_v2"), key=lambda n: res[backend, n])
        print(f"{backend:10s}: resnet18 {res[backend, 'resnet18']:.4f} ms, mobilenet_v2 "
              f"{res[backend, 'mobilenet_v2']:.4f} ms -> {faster} faster", flush=True)


# -- deploy -----------------------------------------------------------------------------------------------------------
def randomized(name: str, device: torch.device) -> nn.Module:
    """The training form with non-trivial BN statistics (so the fusions are exercised), lambda 1, in eval mode."""
    torch.manual_seed(0)
    model = space.create_model(name)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    space.set_lambda(model, 1.0)
    return model.to(device).eval()


def check_deploy(device: torch.device) -> None:
    """Max relative train-vs-deploy logit difference, float32, TF32 off (space.deploy_difference) and torch defaults."""
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    for name in DEPLOY_NETS:
        model = randomized(name, device)
        exact = space.deploy_difference(model, x)
        with torch.no_grad():
            ref = model(x)
            dep = space.deploy(copy.deepcopy(model))(x)
        default = ((ref - dep).abs().max() / ref.abs().max()).item()
        print(f"{name}: TF32 off {exact:.2e}, torch's default settings {default:.2e}", flush=True)
        verdict(f"deploy equivalence <= 1e-5 with TF32 off, {name}", exact <= 1e-5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--compile", action="store_true", help="also time the compile latency backend (slow to compile)")
    ap.add_argument("--fresh-process", metavar="DEVICE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fresh_process:
        fresh_process(args.fresh_process)
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine (torch "
              f"{torch.__version__}); run it on a GPU machine with a CUDA build of torch", file=sys.stderr)
        sys.exit(2)
    device = torch.device(args.device)
    props = torch.cuda.get_device_properties(device)
    print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}", flush=True)
    checks: dict[str, Callable[[], None]] = {
        "train": lambda: check_train(device), "packing": lambda: check_packing(device),
        "latency": lambda: check_latency(device, args.compile), "ranking": lambda: check_ranking(device),
        "deploy": lambda: check_deploy(device)}
    total = time.perf_counter()
    for section in SECTIONS:
        if section not in only:
            continue
        print(f"\n== {section} ==", flush=True)
        t0 = time.perf_counter()
        try:
            checks[section]()
        except Exception as e:  # one broken section must not hide the others' numbers
            print(f"  {section} FAILED: {type(e).__name__}: {e}", flush=True)
            VERDICTS.append((f"{section} ran", False))
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n== summary ({time.perf_counter() - total:.0f} s) ==")
    for what, ok in VERDICTS:
        print(f"{'met    ' if ok else 'NOT met'}  {what}")
    sys.exit(0 if all(ok for _, ok in VERDICTS) else 1)


if __name__ == "__main__":
    main()
