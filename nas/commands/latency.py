"""`nas latency NAME|ENTRY|arch.yaml`: measured latency of the deploy form on this machine (cached per device).

A zoo entry is timed as it was exported: its own classes, input channels and input size (see `nas show`).
"""

from __future__ import annotations

import argparse

from nas.commands import float_in, positive_float, positive_int
from nas.commands.show import adapted, resolve_network, too_small


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas latency`."""
    p = sub.add_parser("latency", help="measure the deploy-form latency of a named architecture or a file")
    p.add_argument("model", help="a named point (see 'nas zoo list'), a zoo entry (name or folder) or an "
                   "architecture .yaml")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--backend", default="auto", help="auto (cuda_graph on CUDA, eager on the CPU), eager, torchscript, "
                   "onnxruntime, cuda_graph (a CUDA-graph replay: the GPU's own time) or compile (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="images per timed call (default 1)")
    p.add_argument("--input", type=positive_int, default=None, help="input resolution (default: the model's own, "
                   "or 224)")
    p.add_argument("--dtype", default="float32", help="float32; float16 or bfloat16 on CUDA (bfloat16 also on cpu)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1: stable, unaffected by "
                   "load)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--adapt", action="store_true", help="time the small-input form a study trains at this input")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier outputs (default: the "
                   "model's own: a zoo entry's classes, else 1000)")
    p.add_argument("--in-chans", type=positive_int, default=None, help="input channels (default: the model's own: "
                   "a zoo entry's, else 3)")
    p.add_argument("--width-mult", type=float_in(0, 4, open_lo=True), default=1.0, help="scale every channel count")
    p.add_argument("--max-seconds", type=positive_float, default=5.0, help="time budget of one measurement attempt")
    p.add_argument("--load-threshold", type=float_in(0), default=0.5, help="re-measure while other processes use more "
                   "than this many cores (default 0.5)")
    p.add_argument("--cpus", default=None, help="pin the measurement to these cores, e.g. '1' or '2,3'")
    p.add_argument("--cache", default="default", help="latency cache file (default: $NAS_CACHE_DIR or "
                   "~/.cache/nas/latency.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="measure again and do not store the result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure (or read from the cache) and print one summary."""
    from evaluators.latency import LatencyConfig, LatencyError, device_info, measure_latency
    from space import create_model
    from space.errors import NasError

    net = resolve_network(args.model)
    size = args.input or net.input
    classes = args.num_classes or net.num_classes
    in_chans = args.in_chans or net.in_chans
    arch, label, note = adapted(net, size, args.adapt, verb="time")
    try:
        cpus = tuple(int(c) for c in args.cpus.split(",")) if args.cpus else None
    except ValueError:
        raise LatencyError(f"--cpus '{args.cpus}': expected core numbers separated by commas, e.g. '1' or '2,3'"
                           ) from None
    cfg = LatencyConfig(device=args.device, batch_size=args.batch_size, resolution=size, dtype=args.dtype,
                        threads=args.threads, channels_last=args.channels_last, backend=args.backend,
                        max_seconds=args.max_seconds, load_threshold=args.load_threshold, cpus=cpus)
    try:
        r = measure_latency(arch, cfg, num_classes=classes, in_chans=in_chans, width_mult=args.width_mult,
                            cache=None if args.no_cache else args.cache)
    except RuntimeError:
        model = create_model(arch, num_classes=classes, in_chans=in_chans, width_mult=args.width_mult)
        why = too_small(model, label, size, in_chans, net, args.adapt)
        if why is None:
            raise
        raise NasError(why) from None
    s = r.settings
    info = device_info(s["device"], s["threads"], s["backend"])
    where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    threads = f"{s['threads']} thread" + ("s" if s["threads"] > 1 else "")
    print(f"{label} (deploy form, hash {arch.scaled(args.width_mult).hash}): "
          f"{r.median_ms:.3f} ms median, IQR {r.iqr_ms:.3f} ms ({100 * r.rel_iqr:.1f}%), {r.runs} runs"
          + (" [cached]" if r.cached else ""))
    print(f"  settings: {s['device']}, {s['backend']}, batch {s['batch_size']}, {s['resolution']}x{s['resolution']}, "
          f"{s['dtype']}, {threads}" + (", channels_last" if s["channels_last"] else "")
          + f", {s['num_classes']} classes, {r.params:,} params")
    print(f"  device: {where}, torch {info['torch']} (fingerprint {r.fingerprint})")
    print(f"  load from other processes: {r.load:.2f} cores"
          + (f" — above the {cfg.load_threshold} threshold on every attempt; the figure may be inflated"
             if r.loaded else ""))
    if note:
        print(note)
    return 0

