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

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import space
from nas.fileio import atomic_write
from nas.format import human
from nas.notes import stored_arch
from nas.report import md_table, state_of
from nas.study import Study
from nas.zoo import WEIGHTS, ZooError, read_weights, write_entry
from space import Arch
from space.errors import NasError, SpecError

Log = Callable[[str], None]
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


@dataclass(frozen=True)
class ExportOptions:
    """Where entries go and how they are made."""

    root: Path = Path("zoo")
    epochs: int | None = None  # train for this many epochs; None: export untrained
    network: str = "target"  # target (the deployed network of the front) | proxy (the copy the search trained)
    width_mult: float | None = None  # None: the chosen network's width
    force: bool = False  # replace existing entries
    restart: bool = False  # discard a training checkpoint instead of resuming it
    latency: bool = True  # measure the exported network's latency with the study's settings
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads of training (None: torch's default)


# -- choosing trials --------------------------------------------------------------------------------------------------
def parse_latency(text: str) -> float:
    """'5ms', '250us', '0.005s' or '5' (ms) → milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise NasError(f"--best-under-latency '{text}': expected a positive duration like 5ms, 250us or 0.01s")
    return float(m.group(1)) * UNITS_MS[m.group(2) or "ms"]


def get_trial(study: Study, ostudy: optuna.Study, number: int) -> FrozenTrial:
    """Trial `number`, which must be complete: failed, pruned, running and unknown trials are one-line errors."""
    trials = ostudy.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    where = f"{study.source}: study '{study.name}'"
    if not found:
        have = f"trials 0-{trials[-1].number}" if trials else "no trials"
        raise NasError(f"{where} has no trial {number} ({have}); see 'nas report {study.source}'")
    t = found[0]
    state = state_of(t)
    if t.state == TrialState.FAIL:
        reason = t.user_attrs.get("fail_reason", "no reason recorded")
        raise NasError(f"{where}: trial {number} {state} ({reason}); only complete trials can be exported")
    # An infeasible one is exported with a warning; a duplicate (stored PRUNED) stands for its complete original.
    if t.state == TrialState.PRUNED and state not in ("infeasible", "complete"):
        raise NasError(f"{where}: trial {number} was pruned (stopped early after {t.user_attrs.get('epochs', '?')} of "
                       f"{t.user_attrs.get('planned_epochs', '?')} epochs); only complete trials can be exported")
    if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        raise NasError(f"{where}: trial {number} is {state}, not finished; wait for it or pick a complete trial")
    if stored_arch(t) is None:
        raise NasError(f"{where}: trial {number} has no stored architecture (not made by 'nas search')")
    return t


def pareto_trials(study: Study, ostudy: optuna.Study) -> list[FrozenTrial]:
    """The front's trials (complete, feasible, non-dominated), by trial number."""
    from nas.search import front

    best = sorted(front(ostudy), key=lambda t: t.number)
    if not best:
        raise NasError(f"{study.source}: study '{study.name}' has no complete feasible trial yet: the front is empty")
    return best


def best_under_latency(study: Study, ostudy: optuna.Study, limit_ms: float) -> FrozenTrial:
    """The most accurate complete, feasible, trained trial whose latency is at most `limit_ms` (ties: the faster)."""
    where = f"{study.source}: study '{study.name}'"
    if "latency_ms" not in study.metrics() or "accuracy" not in study.metrics():
        raise NasError(f"{where} does not measure both accuracy and latency_ms; use --trial N or --pareto")
    ok = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if t.user_attrs.get("feasible", True) and t.user_attrs.get("trained", True) and stored_arch(t) is not None
          and isinstance(t.user_attrs.get("latency_ms"), (int, float)) and "accuracy" in t.user_attrs]
    under = [t for t in ok if t.user_attrs["latency_ms"] <= limit_ms]
    if not under:
        fastest = min(ok, key=lambda t: t.user_attrs["latency_ms"], default=None)
        hint = (f"the fastest is #{fastest.number} at {fastest.user_attrs['latency_ms']:.3f} ms" if fastest
                else "no complete feasible trial yet")
        raise NasError(f"{where}: no complete feasible trial runs in {limit_ms:g} ms or less ({hint})")
    return max(under, key=lambda t: (t.user_attrs["accuracy"], -t.user_attrs["latency_ms"]))


def entry_name(study: Study, t: FrozenTrial, name: str | None, *, several: bool) -> str:
    """NAME; with several trials (or no NAME) each gets `<NAME or study>_t<N>`."""
    base = name or study.name
    out = f"{base}_t{t.number}" if several or not name else name
    if not NAME.match(out):
        raise NasError(f"entry name '{out}': use letters, digits, '_', '-' and '.', starting with a letter or '_'")
    if out in space.MODELS:
        raise ZooError(f"'{out}' is a built-in named point; choose another --name")
    return out


# -- the trial's network ----------------------------------------------------------------------------------------------
def trial_arch(t: FrozenTrial) -> Arch:
    """The architecture the trial sampled (its named tag kept), from the YAML the engine stored on it."""
    try:
        return Arch.from_yaml(stored_arch(t), source=f"trial {t.number}")
    except SpecError as e:
        raise NasError(f"trial {t.number}: its stored architecture no longer builds ({e})") from None


def network_of(study: Study, network: str) -> Any:
    """The study's target or proxy `Network` (width multiplier, resolution)."""
    return study.evaluator.target if network == "target" else study.evaluator.proxy


def exported_arch(study: Study, t: FrozenTrial, width_mult: float | None = None, network: str = "target") -> Arch:
    """What an export of `t` holds: the trial's target (or proxy) network, or the architecture at `width_mult`."""
    mult = network_of(study, network).width_mult if width_mult is None else width_mult
    arch = trial_arch(t).scaled(mult)
    return Arch(arch.stem, arch.stages, arch.head)  # the entry names it


def trial_seed_of(study: Study, t: FrozenTrial) -> int:
    """The seed the trial trained its proxy with (recorded; derived again for trials that predate the record)."""
    from nas.trial import trial_seed

    seed = t.user_attrs.get("seed")
    return int(seed) if isinstance(seed, int) else trial_seed(study.seed, t.user_attrs.get("hash", ""), 0)


def trial_model(study: Study, t: FrozenTrial, *, num_classes: int, in_chans: int) -> nn.Module:
    """The proxy the trial trained, initialised as the trial initialised it (its seed, the proxy width)."""
    torch.manual_seed(trial_seed_of(study, t))
    return space.create_model(trial_arch(t), num_classes=num_classes, in_chans=in_chans,
                              width_mult=study.evaluator.proxy.width_mult,
                              drop_path_rate=float(study.evaluator.train.get("drop_path_rate", 0.0)))


# -- exporting --------------------------------------------------------------------------------------------------------
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
    if opts.epochs:
        model, training = train_entry(arch, study, t, name, data, opts, log)
    cost = measure_cost(arch, input_size=res, num_classes=data.num_classes, in_chans=data.in_chans)
    latency = _latency(arch, study, data, res) if opts.latency else None
    probe = space.create_model(arch, num_classes=data.num_classes, in_chans=data.in_chans)
    record = ostudy if ostudy is not None else _ostudy_of(study)  # read once: seed repeats and the fidelity verdict
    config = entry_config(study, t, arch, data, mult, cost, latency, training, probe, opts.network, record)
    card = model_card(study, t, name, arch, data, mult, cost, latency, training, probe, opts.network, record)
    with _quiet_exporters():
        path = write_entry(opts.root, name, arch, config=config, card=card, model=model, force=opts.force)
    if opts.epochs:
        Checkpoint(opts.root / f".{name}.partial", {}).remove()
    what = (f"trained {training['epochs']} epochs, val acc {training['accuracy']:.4f}" if training else "untrained")
    log(f"  #{t.number} → {path} ({what}, {human(cost.params_deploy or cost.params)} params"
        + (f", {latency.median_ms:.3f} ms" if latency else "") + ")")
    return path


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


# -- training ---------------------------------------------------------------------------------------------------------
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




# -- config and model card --------------------------------------------------------------------------------------------
def module_names(model: nn.Module) -> tuple[str, str]:
    """(first conv, classifier) module names, as timm's pretrained_cfg records them."""
    first = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), "")
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    name = next((n for n, m in model.named_modules() if m is classifier), "head.fc")
    return first, name


def objective_values(study: Study, t: FrozenTrial) -> dict[str, float]:
    """The trial's objectives and recorded metrics as the search measured them."""
    out: dict[str, float] = {}
    for m, v in zip(study.metric_names, t.values or ()):
        if m != "accuracy" or t.user_attrs.get("trained", True):  # an untrained trial was told the worst accuracy
            out[m] = float(v)
    for k in ("accuracy", "latency_ms", "params", "macs", "activations", "synflow", "naswot", "snip"):
        if isinstance(t.user_attrs.get(k), (int, float)) and not isinstance(t.user_attrs.get(k), bool):
            out.setdefault(k, float(t.user_attrs[k]))
    return out


def entry_config(study: Study, t: FrozenTrial, arch: Arch, data: Any, mult: float, cost: Any, latency: Any,
                 training: dict | None, probe: nn.Module, network: str = "target",
                 ostudy: optuna.Study | None = None) -> dict:
    """config.json: the timm pretrained_cfg keys (input size, mean/std, classes, classifier) plus where it came from."""
    from evaluators.latency import device_info
    from nas.repeats import spread_of, stored

    first_conv, classifier = module_names(probe)
    res = network_of(study, network).resolution
    record = ostudy if ostudy is not None else _ostudy_of(study)
    spread = spread_of(t, stored(record)) if t.user_attrs.get("trained", True) else None
    cfg: dict[str, Any] = {
        "num_classes": data.num_classes, "in_chans": data.in_chans, "input_size": [data.in_chans, res, res],
        "mean": [round(v, 6) for v in data.mean], "std": [round(v, 6) for v in data.std],
        "interpolation": "bilinear", "crop_pct": 1.0, "first_conv": first_conv, "classifier": classifier,
        "params": cost.params_deploy or cost.params, "macs": cost.macs_deploy or cost.macs,
        "params_train_form": cost.params, "width_mult": mult, "network": network,
        "input_adaptation": t.user_attrs.get("adaptation"),
        "source": {"study": study.name, "study_file": study.source, "storage": study.storage, "trial": t.number,
                   "trial_arch_hash": t.user_attrs.get("hash"), "named": t.user_attrs.get("named"),
                   "state": state_of(t), "duplicate_of": t.user_attrs.get("duplicate_of")},
        "search": {"objectives": objective_values(study, t),
                   "labels": {m: study.metric_label(m) for m in objective_values(study, t)},
                   "accuracy_seeds": list(spread.values) if spread else None,
                   "target": study.evaluator.describe_target(), "proxy": study.evaluator.describe_proxy(),
                   "latency_loaded": bool(t.user_attrs.get("latency_loaded")),
                   "directions": dict(zip(study.metric_names, study.directions)),
                   "constraints": [c.describe() for c in study.constraints], "epochs": t.user_attrs.get("epochs"),
                   "latency_fingerprint": t.user_attrs.get("fingerprint"), "host": t.user_attrs.get("host")},
        "dataset": dict(study.evaluator.data), "training": training,
        "exported": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if latency is not None:
        s = latency.settings
        cfg["latency"] = {"median_ms": latency.median_ms, "iqr_ms": latency.iqr_ms, "fingerprint": latency.fingerprint,
                          "settings": s, "device": device_info(s["device"], s["threads"], s["backend"])}
    return cfg


def model_card(study: Study, t: FrozenTrial, name: str, arch: Arch, data: Any, mult: float, cost: Any, latency: Any,
               training: dict | None, probe: nn.Module, network: str = "target",
               ostudy: optuna.Study | None = None) -> str:
    """README.md of the entry: what it is, how good and fast, what it was trained on, and its architecture."""
    from evaluators.latency import device_info
    from nas.repeats import spread_of, stored

    res = network_of(study, network).resolution
    named = t.user_attrs.get("named")
    ev = study.evaluator
    out = [f"# {name}", ""]
    origin = f"trial #{t.number} of study `{study.name}` (`{study.source}`, storage `{study.storage}`)"
    out.append(f"Found by `nas search`: {origin}" + (f", the seeded named architecture `{named}`" if named else "")
               + ".")
    if network == "target":
        out += ["", f"This entry is the study's **target** network ({ev.target.short()}): the network whose latency, "
                "params and MACs the search measured and put on the front."
                + ("" if ev.proxy_is_target else " The search's accuracy is of a cheaper **proxy** "
                   f"({ev.describe_proxy()}), trained instead of it.")]
    else:
        out += ["", f"This entry is the study's **proxy** network ({ev.proxy.short()}), the cheaper copy the search "
                f"trained to estimate accuracy — not the target ({ev.target.short()}) whose latency is on the front."]
    if t.user_attrs.get("adaptation"):
        out += ["", f"Input adaptation (applied to every network of the study): {t.user_attrs['adaptation']}."]
    if training:
        out += ["", f"**Trained** for {training['epochs']} epochs on `{data.name}` with the study's recipe: final "
                f"validation top-1 {training['accuracy']:.4f}."]
    else:
        out += ["", f"**Untrained**: this entry holds the architecture and its deploy exports, not weights (no "
                f"`{WEIGHTS}`). `zoo.create_model(\"{name}\")` builds it freshly initialised; train it with "
                f"`nas export {study.source} --trial {t.number} --name {name} --train --force`."]
    out += ["", "## Use", "", "```python", "from nas import zoo", "",
            f"model = zoo.create_model(\"{name}\"{', pretrained=True' if training else ''})  # training form",
            f"fast = zoo.create_model(\"{name}\"{', pretrained=True' if training else ''}, deploy=True)  "
            "# re-parameterized", "", "import torch", "",
            f"model = torch.hub.load(\"<path to the nas repository>\", \"{name}\", source=\"local\""
            + (", pretrained=True" if training else "") + ")", "```", "",
            f"By name, `{name}` is found in `./zoo` and then in each folder listed in `$NAS_ZOO_PATH` (e.g. "
            "`export NAS_ZOO_PATH=/path/to/zoo`); from any directory, the path of this entry's folder works too: "
            "`zoo.create_model(\"/path/to/zoo/" + name + "\")`, or `torch.hub.load(\"<path to the nas repository>\", "
            "\"zoo_entry\", \"/path/to/zoo/" + name + "\", source=\"local\")`.", "",
            f"Input: {data.in_chans}×{res}×{res}, normalized with mean {_vec(data.mean)} and std {_vec(data.std)} "
            f"(pixels in [0, 1]); output: {data.num_classes} logits. The deploy form is also in `model.ts` "
            "(TorchScript) and `model.onnx`. With timm installed, `nas.zoo.register_with_timm()` makes "
            f"`timm.create_model(\"{name}\")` work. To seed a search with this architecture, add `{name}` to a study's "
            "`named:` list."]
    out += ["", "## Objectives (as measured by the search)", ""]
    values = objective_values(study, t)
    directions = dict(zip(study.metric_names, study.directions))
    record = ostudy if ostudy is not None else _ostudy_of(study)
    spread = spread_of(t, stored(record)) if "accuracy" in values else None
    rows = [[study.metric_label(k), spread.text() if k == "accuracy" and spread else _fmt(k, v),
             directions.get(k, "recorded")] for k, v in values.items()]
    out += md_table(["metric (network, fidelity)", "value", "objective"], rows)
    from nas.proxy_fidelity import latest

    if "accuracy" in values:  # how far the proxy's accuracy can be trusted to rank this network
        fidelity = latest(record)
        out += ["", "Proxy fidelity of the search: " + (
            f"{fidelity['verdict']} (proxy vs {fidelity['high_fidelity']}, {fidelity['seeds']} seed(s); "
            "`nas fidelity`)." if fidelity else "not measured (`nas fidelity` measures it).")]
    if t.user_attrs.get("latency_loaded"):
        out += ["", "**Note:** the search's latency of this trial was measured under load from other processes and "
                "stayed so after a re-measurement; the figure below, measured at export, is the one to trust."]
    feasible = t.user_attrs.get("feasible", True)
    if study.constraints:
        why = t.user_attrs.get("infeasible") or "see the trial"
        out += ["", f"Constraints: {', '.join(c.describe() for c in study.constraints)} — "
                + ("satisfied." if feasible else f"**violated** ({why}).")]
    fp = t.user_attrs.get("fingerprint")
    if "latency_ms" in values:
        out += ["", f"Search latency measured on host `{t.user_attrs.get('host', '?')}` (device fingerprint "
                f"`{fp or '?'}`) with {_settings(study.evaluator.latency)}."]
    out += ["", "## This network", ""]
    rows = [["params (deploy form)", f"{cost.params_deploy or cost.params:,}"],
            ["params (training form)", f"{cost.params:,}"],
            [f"MACs at {res}×{res} (deploy form)", human(cost.macs_deploy or cost.macs)],
            ["activations", human(cost.activations)], ["width multiplier", f"{mult:g}"],
            ["architecture hash", f"`{arch.hash}`"]]
    if latency is not None:
        s = latency.settings
        info = device_info(s["device"], s["threads"], s["backend"])
        where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
        rows += [["latency (median)", f"{latency.median_ms:.3f} ms per batch of {s['batch_size']} (IQR "
                                      f"{latency.iqr_ms:.3f} ms)"],
                 ["measured on", f"{where}; {s['device']}, {s['backend']}, {s['threads']} thread(s), {s['dtype']}, "
                                 f"torch {info['torch']} (fingerprint `{latency.fingerprint}`)"
                                 + (" — same device as the search" if latency.fingerprint == fp else "")]]
    out += md_table(["", ""], rows)
    out += ["", "## Data and training", ""]
    out.append(f"- dataset: `{data.name}` ({_kv(study.evaluator.data)}), {data.num_classes} classes, "
               f"{len(data.y_train)} training / {len(data.y_val)} validation images at {res}×{res}")
    recipe = {"epochs": study.evaluator.epochs, **study.evaluator.train}
    out.append(f"- search (proxy) training: {_kv(recipe)}; the trial ran {t.user_attrs.get('epochs', '?')} epoch(s)")
    if training:
        history = ", ".join(f"{a:.4f}" for a in training["history"])
        out.append(f"- this entry: {_kv(training['recipe'])} on {training['device']}, {training['seconds']} s"
                   + (f" (resumed at epoch {training['resumed_from']})" if training.get("resumed_from") else ""))
        out.append(f"- validation top-1 per epoch: {history}")
    out += ["", "## Architecture", ""]
    out += arch_table(arch, probe, res, data.in_chans)
    out += ["", "```yaml", Arch(arch.stem, arch.stages, arch.head, name=name).to_yaml().rstrip(), "```", ""]
    return "\n".join(out)


def arch_table(arch: Arch, model: nn.Module, res: int, in_chans: int) -> list[str]:
    """Markdown rows: stem, each stage, head — block family, depth, width, stride, settings, output, params, MACs."""
    from evaluators.cost import module_breakdown

    rows = {r["name"]: r for r in module_breakdown(model, res, in_chans)}

    def figures(key: str) -> list[str]:
        r = rows.get(key) or {}
        shape = "×".join(str(d) for d in (r.get("shape") or ())[1:])
        return [shape, f"{r.get('params', 0):,}", human(r.get("macs", 0))]

    d = arch.to_dict()
    stem = {k: v for k, v in d["stem"].items() if k not in ("type", "width")}
    lines = [["stem", d["stem"]["type"], "", str(arch.stem.width), "", _kv(stem), *figures("stem")]]
    for i, (st, sd) in enumerate(zip(arch.stages, d["stages"])):
        extra = {k: v for k, v in sd.items() if k not in ("block", "depth", "width", "stride")}
        lines.append([f"stage {i}", st.block, str(st.depth), str(st.width), str(st.stride), _kv(extra),
                      *figures(f"stages.{i}")])
    head = {k: v for k, v in d["head"].items() if k != "type"}
    lines.append(["head", d["head"]["type"], "", "", "", _kv(head), *figures("head")])
    return md_table(["", "type", "depth", "width", "stride", "settings", "output", "params", "MACs"], lines)


def _ostudy_of(study: Study) -> optuna.Study:
    """The study's record (for the seed repeats shown with the accuracy)."""
    from nas.report import load_results

    return load_results(study)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "defaults"


def _vec(v: Any) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"


def _fmt(metric: str, v: float) -> str:
    if metric == "accuracy":
        return f"{v:.4f}"
    if metric == "latency_ms":
        return f"{v:.3f} ms"
    if metric in ("params", "macs", "activations"):
        return human(v)
    return f"{v:.4g}"


def _settings(latency: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in latency.items()) or "the default latency settings"
