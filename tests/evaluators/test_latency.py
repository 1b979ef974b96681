"""Measured latency: cache hit/miss, fingerprints, the deploy form is timed, load is detected, lock, runtimes, CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import space
from evaluators.latency import (
    CLOCK_WINDOW,
    LatencyCache,
    LatencyConfig,
    LatencyError,
    clocks_steady,
    default_backend,
    device_fingerprint,
    device_lock,
    latency_settings,
    measure_latency,
    time_model,
    timed_model,
    warm_up,
)
from nas.cli import main
from space import count_params, create_model

# Tiny and quick: 32 px, a quarter of the widths, a short budget; a threshold no load reaches, so nothing retries.
FAST = LatencyConfig(resolution=32, warmup=1, min_runs=3, max_seconds=0.2, min_seconds=0.05, load_threshold=1e9,
                     max_attempts=1)
SMALL = {"num_classes": 10, "width_mult": 0.25}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncached measurements still take the per-device lock in the cache directory: keep it out of $HOME."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache-dir"))


def test_cache_miss_then_hit(tmp_path: Path) -> None:
    cache = LatencyCache(tmp_path / "lat.sqlite")
    first = measure_latency("resnet18", FAST, cache=cache, **SMALL)
    assert not first.cached and first.median_ms > 0 and first.runs >= 3 and len(cache) == 1
    again = measure_latency("resnet18", FAST, cache=str(tmp_path / "lat.sqlite"), **SMALL)
    assert again.cached and again.median_ms == first.median_ms and again.runs == first.runs
    assert again.fingerprint == first.fingerprint and again.settings == first.settings
    # the same architecture under another name is the same entry (the key is the content hash)
    arch = space.Arch.from_dict({**space.get_arch("resnet18").to_dict(), "name": "mine"})
    assert measure_latency(arch, FAST, cache=cache, **SMALL).cached
    # other settings, another width, or another class count are other entries
    assert not measure_latency("resnet18", dataclasses.replace(FAST, batch_size=2), cache=cache, **SMALL).cached
    assert not measure_latency("resnet18", FAST, cache=cache, num_classes=10, width_mult=0.5).cached
    assert not measure_latency("resnet18", FAST, cache=cache, num_classes=5, width_mult=0.25).cached
    assert len(cache) == 4


def test_fingerprint_change_is_a_miss(tmp_path: Path) -> None:
    fp = device_fingerprint("cpu", 1)
    assert fp == device_fingerprint("cpu", 1) and len(fp) == 16
    assert fp != device_fingerprint("cpu", 2) and fp != device_fingerprint("cpu", 1, "onnxruntime")
    cache = LatencyCache(tmp_path / "lat.sqlite")
    r = measure_latency("resnet18", FAST, cache=cache, **SMALL)
    arch_hash = space.get_arch("resnet18").scaled(0.25).hash
    settings = latency_settings(FAST, num_classes=10)
    assert cache.get(arch_hash, fp, settings) is not None
    assert cache.get(arch_hash, "0123456789abcdef", settings) is None  # e.g. another machine or torch version
    two = measure_latency("resnet18", dataclasses.replace(FAST, threads=2), cache=cache, **SMALL)
    assert not two.cached and two.fingerprint != r.fingerprint and len(cache) == 2


def test_deploy_form_is_timed(tmp_path: Path) -> None:
    name = "repvgg_a0" if "repvgg_a0" in space.MODELS else "resnet18"
    model = timed_model(name, FAST, **SMALL)
    assert not model.training and model.deployed
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    train_params = count_params(create_model(name, **SMALL))
    deploy_params = count_params(create_model(name, deploy=True, **SMALL))
    assert deploy_params < train_params
    r = measure_latency(name, FAST, cache=None, **SMALL)
    assert r.params == deploy_params and r.settings["form"] == "deploy"
    # timing the training form is possible, but only on request
    trained = time_model(create_model(name, **SMALL), FAST)
    assert trained.params == train_params and trained.settings["form"] == "train"


def test_vanillanet_deploy_form_is_timed() -> None:
    if "vanillanet_5" not in space.MODELS:
        pytest.skip("vanillanet_5 is not registered")
    model = timed_model("vanillanet_5", FAST, num_classes=10, width_mult=1 / 32)
    assert space.get_lambda(model) == 1.0 and model.deployed
    assert count_params(model) == count_params(create_model("vanillanet_5", deploy=True, num_classes=10,
                                                            width_mult=1 / 32))


def test_under_parallel_load_still_returns_and_says_so(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "print('busy', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "busy"
        cfg = dataclasses.replace(FAST, load_threshold=0.5, max_attempts=2, max_seconds=0.3)
        cache = LatencyCache(tmp_path / "lat.sqlite")
        r = measure_latency("resnet18", cfg, cache=cache, **SMALL)
    finally:
        busy.kill()
        busy.wait()
    assert r.median_ms > 0 and r.loaded and r.load > 0.5
    stored = cache.get(space.get_arch("resnet18").scaled(0.25).hash, r.fingerprint, r.settings)
    assert stored is not None and stored.loaded and stored.load == r.load


def test_pinned_measurement_counts_load_on_its_own_cores_only() -> None:
    import os

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    train_core, measure_core = cores[0], cores[1]
    busy = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{train_core}}})\n"
                             "print('busy', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "busy"
        cfg = dataclasses.replace(FAST, max_seconds=0.3, min_seconds=0.3)
        anywhere = measure_latency("resnet18", cfg, cache=None, **SMALL)
        pinned = measure_latency("resnet18", dataclasses.replace(cfg, cpus=(measure_core,)), cache=None, **SMALL)
    finally:
        busy.kill()
        busy.wait()
    # the busy "training" process saturates its own core: load for an unpinned measurement, not for a pinned one
    assert anywhere.load > pinned.load + 0.5


def test_measurements_are_serialized_by_a_lock(tmp_path: Path) -> None:
    cache = LatencyCache(tmp_path / "lat.sqlite")
    results = []
    worker = threading.Thread(target=lambda: results.append(measure_latency("resnet18", FAST, cache=cache, **SMALL)))
    with device_lock("cpu", tmp_path) as lock:
        assert lock.parent == tmp_path
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and not results  # waiting for the lock we hold
    worker.join(timeout=120)
    assert len(results) == 1 and not results[0].cached


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_other_runtimes(backend: str) -> None:
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    r = measure_latency("resnet18", dataclasses.replace(FAST, backend=backend), cache=None, **SMALL)
    assert r.median_ms > 0 and r.settings["backend"] == backend and r.params is not None


def test_channels_last_and_threads_are_settings() -> None:
    r = measure_latency("resnet18", dataclasses.replace(FAST, channels_last=True, threads=2), cache=None, **SMALL)
    assert r.settings["channels_last"] and r.settings["threads"] == 2 and r.median_ms > 0
    import torch

    assert torch.get_num_threads() == 1  # restored


@pytest.mark.parametrize(("change", "message"), [
    ({"backend": "onnx"}, "backend 'onnx' unknown"),
    ({"dtype": "float8"}, "dtype 'float8' unknown"),
    ({"dtype": "fp16"}, "float16 is for CUDA"),
    ({"device": "tpu"}, "device 'tpu'"),
    ({"backend": "onnxruntime", "channels_last": True}, "channels_last"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"cpus": (999,)}, "cpus [999] are not all available"),
])
def test_bad_settings(change: dict, message: str) -> None:
    with pytest.raises(LatencyError) as e:
        measure_latency("resnet18", dataclasses.replace(FAST, **change), cache=None, **SMALL)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cuda_unavailable_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(LatencyError, match="CUDA is not available"):
        measure_latency("resnet18", dataclasses.replace(FAST, device="cuda"), cache=None, **SMALL)


def test_malformed_cache_file(tmp_path: Path) -> None:
    bad = tmp_path / "lat.sqlite"
    bad.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(LatencyError) as e:
        measure_latency("resnet18", FAST, cache=str(bad), **SMALL)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_default_cache_location(tmp_path: Path) -> None:
    r = measure_latency("resnet18", FAST, **SMALL)  # cache="default": $NAS_CACHE_DIR/latency.sqlite
    assert not r.cached and len(LatencyCache(tmp_path / "cache-dir" / "latency.sqlite")) == 1
    assert (tmp_path / "cache-dir" / "latency-cpu.lock").exists()


def test_pinned_cores() -> None:
    import os

    before = os.sched_getaffinity(0)
    core = min(before)
    r = measure_latency("resnet18", dataclasses.replace(FAST, cpus=(core,)), cache=None, **SMALL)
    assert r.median_ms > 0 and os.sched_getaffinity(0) == before


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["latency", "resnet18", "--input", "32", "--width-mult", "0.25", "--num-classes", "10",
            "--max-seconds", "0.2", "--load-threshold", "1e9", "--cache", str(tmp_path / "lat.sqlite")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resnet18 (deploy form" in out and "ms median" in out and "1 thread" in out and "[cached]" not in out
    assert main(args) == 0
    assert "[cached]" in capsys.readouterr().out
    assert main(["latency", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'resnet18'" in err
    assert main(["latency", "resnet18", "--backend", "tensorrt", "--no-cache"]) == 2
    assert "backend 'tensorrt' unknown" in capsys.readouterr().err


def test_default_backend_per_device() -> None:
    assert default_backend("cuda") == "cuda_graph" and default_backend("cuda:1") == "cuda_graph"
    assert default_backend("cpu") == "eager"
    with pytest.raises(LatencyError, match="device 'tpu' unknown"):
        default_backend("tpu")


def test_auto_backend_on_cpu_is_eager_and_stored_as_such(tmp_path: Path) -> None:
    assert LatencyConfig().backend == "auto"
    r = measure_latency("resnet18", FAST, cache=str(tmp_path / "lat.sqlite"), **SMALL)
    assert r.settings["backend"] == "eager" and r.fingerprint == device_fingerprint("cpu", 1, "eager")
    assert device_fingerprint("cpu", 1, "auto") == r.fingerprint  # what a caller holding the raw config looks up
    assert latency_settings(FAST, **{"num_classes": 10}) == r.settings | {"form": "deploy"}
    again = measure_latency("resnet18", dataclasses.replace(FAST, backend="eager"), cache=str(tmp_path / "lat.sqlite"),
                            **SMALL)
    assert again.cached


def test_cuda_graph_is_refused_on_cpu_in_one_line() -> None:
    with pytest.raises(LatencyError) as e:
        measure_latency("resnet18", dataclasses.replace(FAST, backend="cuda_graph"), cache=None, **SMALL)
    assert "needs device cuda" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("blocks", "steady"), [
    ([], False),
    ([2.0, 1.0, 1.0, 1.0], False),  # too few blocks to say
    ([3.0, 2.0, 1.01, 1.0, 1.0, 0.99, 1.0], True),  # clocks ramped up, then five blocks within 3 %
    ([1.3, 1.2, 1.1, 1.05, 1.0], False),  # still ramping: 30 % apart
    ([1.0, 1.01, 0.99, 1.005, 0.995], True),  # 2 % apart
    ([1.0, 1.0, 1.0, 1.0, 1.1], False),  # the last block jumped
    ([0.0] * 5, False),
])
def test_clock_warm_up_stops_when_blocks_agree(blocks: list[float], steady: bool) -> None:
    assert clocks_steady(blocks) is steady


def test_warm_up_runs_until_steady_or_the_cap() -> None:
    model = create_model("resnet18", deploy=True, num_classes=10, width_mult=0.25).eval()
    x = torch.randn(1, 3, 32, 32)

    def block() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(x)
        return time.perf_counter() - t0

    start = time.perf_counter()
    times = warm_up(block, max_seconds=0.3)
    assert len(times) >= 1 and time.perf_counter() - start < 0.3 + 5 * max(times)  # one block past the cap at most
    assert clocks_steady(times) or sum(times) >= 0.3 * 0.5
    assert len(warm_up(block, max_seconds=0.0)) == 1  # a zero cap still times one block
    assert len(warm_up(block, max_seconds=60.0, tolerance=1e9)) == CLOCK_WINDOW  # any five agree: stop at five


@pytest.mark.slow
def test_compile_backend_on_cpu() -> None:
    arch = space.Arch.from_dict({"stem": {"type": "conv", "width": 8, "kernel": 3, "stride": 2},
                                 "stages": [{"block": "basic", "depth": 1, "width": 16, "stride": 2}],
                                 "head": {"type": "classifier"}})
    r = measure_latency(arch, dataclasses.replace(FAST, backend="compile", max_seconds=0.5), cache=None,
                        num_classes=10)
    assert r.median_ms > 0 and r.settings["backend"] == "compile"
    assert r.fingerprint == device_fingerprint("cpu", 1, "compile") != device_fingerprint("cpu", 1, "eager")
