"""Writing entries: each picked trial's network (trained first with `--train`), measured, described and written as a
zoo entry with its deploy form as TorchScript and ONNX.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

import space
from nas.export.card import entry_config, model_card
from nas.export.select import ExportOptions, Log, exported_arch, network_of
from nas.export.train import Checkpoint, train_entry
from nas.format import human
from nas.record.final import final_weights, setting_of
from nas.record.store import load_results
from nas.record.trials import state_of
from nas.study import Study
from nas.zoo import ZooError, read_weights, write_entry
from space import Arch
from space.errors import NasError


def export(study: Study, ostudy: optuna.Study, picks: list[tuple[FrozenTrial, str]], opts: ExportOptions,
           log: Log = print) -> list[Path]:
    """Write one zoo entry per (trial, name); every destination is checked first, so a refusal overwrites nothing."""
    from evaluators import DataConfig, load_data

    taken = [opts.root / name for _, name in picks if (opts.root / name).exists()]
    if taken and not opts.force:
        raise ZooError(f"{', '.join(map(str, taken))} exist{'s' if len(taken) == 1 else ''}; pass --force to "
                       "replace" + (" it" if len(taken) == 1 else " them"))
    if len({name for _, name in picks}) != len(picks):
        raise NasError("two trials would be exported under the same name; give distinct --name values")
    net = network_of(study, opts.network)
    settings = {**study.evaluator.data, "resolution": net.resolution}
    if opts.network == "target":
        settings.pop("limit_train", None)  # the target trains on every training image; the proxy on its subset
    data = load_data(DataConfig(**settings))
    out = []
    for t, name in picks:
        out.append(export_trial(study, t, name, data, opts, log, ostudy=ostudy))
    return out


def export_trial(study: Study, t: FrozenTrial, name: str, data: Any, opts: ExportOptions, log: Log = print, *,
                 ostudy: optuna.Study | None = None) -> Path:
    """Write `opts.root/name/` for trial `t` (trained first when `opts.epochs`)."""
    from evaluators import measure_cost

    arch = exported_arch(study, t, opts.width_mult, opts.network)
    net = network_of(study, opts.network)
    mult = net.width_mult if opts.width_mult is None else opts.width_mult
    res = net.resolution
    if state_of(t) == "infeasible":
        log(f"  warning: trial #{t.number} is infeasible ({t.user_attrs.get('infeasible') or 'violates a constraint'})"
            "; exporting it anyway")
    model, training = None, None
    record = ostudy if ostudy is not None else load_results(study)  # read once: seed repeats, fidelity, final stage
    if opts.epochs:
        model, training = train_entry(arch, study, t, name, data, opts, log)
    elif opts.network == "target" and opts.width_mult in (None, net.width_mult):
        model, training = final_entry(study, record, t, arch, data)
    cost = measure_cost(arch, input_size=res, num_classes=data.num_classes, in_chans=data.in_chans)
    latency = _latency(arch, study, data, res) if opts.latency else None
    probe = space.create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans)
    config = entry_config(study, t, arch, data, mult, cost, latency, training, probe, opts.network, record)
    card = model_card(study, t, name, arch, data, mult, cost, latency, training, probe, opts.network, record)
    with _quiet_exporters():
        path = write_entry(opts.root, name, arch, config=config, card=card, model=model, force=opts.force)
    if opts.epochs:
        Checkpoint(opts.root / f".{name}.partial", {}).remove()
    what = (f"trained {training['epochs']} epochs{' in the final stage' if training.get('final') else ''}, val acc "
            f"{training['accuracy']:.4f}" if training else "untrained")
    log(f"  #{t.number} → {path} ({what}, {human(cost.params_deploy or cost.params)} params"
        + (f", {latency.median_ms:.3f} ms" if latency else "") + ")")
    return path


def final_entry(study: Study, ostudy: optuna.Study, t: FrozenTrial, arch: Arch, data: Any) -> tuple[Any, Any]:
    """The target network with the weights the final stage trained (its first seed), and what the card says of them;
    (None, None) when the stage has not trained this trial."""
    found = final_weights(study, ostudy, t)
    if found is None:
        return None, None
    path, run, row = found
    model = space.create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans)
    try:
        model.load_state_dict(read_weights(path))
    except (RuntimeError, ZooError) as e:
        raise NasError(f"{path}: the final stage's weights do not fit trial #{t.number}'s target network ({e}); "
                       f"run 'nas final {study.source}' again after removing the file") from None
    model.eval()
    setting = setting_of(study)
    spread = row.final
    return model, {"epochs": run["epochs"], "accuracy": float(run["accuracy"]), "history": run.get("history", []),
                   "seconds": run.get("seconds"), "resumed_from": None, "recipe": dict(setting.train),
                   "device": "as run by the final stage", "final": {
                       "setting": setting.describe(), "seed_index": row.runs.index(run), "seed": run.get("seed"),
                       "weights": path.name, "mean": spread.mean, "std": spread.std, "n": spread.n,
                       "status": row.status, "rank_final": row.rank_final, "rank_proxy": row.rank_proxy}}


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the ONNX exporter's notes about optional packages and the deprecations of its internals."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _latency(arch: Arch, study: Study, data: Any, resolution: int) -> Any:
    """Latency of the exported network with the study's target settings (at the exported network's resolution)."""
    from evaluators import LatencyConfig, measure_latency

    cache = None if study.evaluator.latency_cache == "none" else study.evaluator.latency_cache
    cfg = LatencyConfig(**{**study.evaluator.latency, "resolution": resolution})
    return measure_latency(arch, cfg, num_classes=data.num_classes, in_chans=data.in_chans, cache=cache)
