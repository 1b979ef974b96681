"""What an entry says about itself: its config (PyTorch image-model conventions) and its model card (figures with the
network and fidelity they are of, seed spread, proxy fidelity, the layer table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from torch import nn

from nas.export.select import network_of
from nas.format import human, md_table
from nas.record import latency as lat
from nas.record.fidelity import latest
from nas.record.final import table as final_table
from nas.record.repeats import spread_of, stored
from nas.record.store import load_results
from nas.record.trials import state_of
from nas.study import Study
from nas.views import final as final_view
from nas.zoo import WEIGHTS
from space import Arch

Log = Callable[[str], None]


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
    first_conv, classifier = module_names(probe)
    res = network_of(study, network).resolution
    record = ostudy if ostudy is not None else load_results(study)
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
                   "latency_iqr_ms": t.user_attrs.get("latency_iqr_ms"),
                   "latency_noisy": bool(t.user_attrs.get("latency_noisy")),
                   "latency_remeasured": _interval_config(lat.interval_of(t, lat.stored(record))),
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
    if training and training.get("final"):
        f = training["final"]
        out += ["", f"**Trained in the study's final stage** ({f['setting']}): final validation top-1 "
                f"{f['mean']:.4f}" + (f" ± {f['std']:.4f}" if f["std"] is not None else "") + f" over {f['n']} "
                f"seed(s), {f['status']}. These weights are seed {f['seed_index']}'s "
                f"(top-1 {training['accuracy']:.4f})."]
    elif training:
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
    record = ostudy if ostudy is not None else load_results(study)
    spread = spread_of(t, stored(record)) if "accuracy" in values else None
    interval = lat.interval_of(t, lat.stored(record))
    rows = [[study.metric_label(k), spread.text() if k == "accuracy" and spread else
             _latency_cell(t, v) if k == "latency_ms" else _fmt(k, v), directions.get(k, "recorded")]
            for k, v in values.items()]
    if interval is not None:
        rows.append(["latency re-measured at the end of the search (target)", interval.text(), "interval"])
    out += md_table(["metric (network, fidelity)", "value", "objective"], rows)
    if interval is not None:
        out += ["", f"The latency interval is the range of {len(interval.rounds)} round medians of the front's and the "
                f"named networks' targets timed in interleaved rounds at the end of the search: it holds the median "
                f"with probability {100 * interval.coverage:.0f} %. Against a network whose interval overlaps it, "
                "this one is neither faster nor slower."]
    elif t.user_attrs.get("latency_noisy"):
        out += ["", f"**Note:** the search's latency of this trial stayed noisy (IQR / median above "
                f"{lat.NOISY_REL_IQR:g}) after a re-measurement; its order against networks within that spread is "
                "not established."]
    if "accuracy" in values:  # how far the proxy's accuracy can be trusted to rank this network
        fidelity = latest(record)
        out += ["", "Proxy fidelity of the search: " + (
            f"{fidelity['verdict']} (proxy vs {fidelity['high_fidelity']}, {fidelity['seeds']} seed(s); "
            "`nas fidelity`)." if fidelity else "not measured (`nas fidelity` measures it).")]
    rows = final_table(study, record)
    if rows:
        mine = [r for r in rows if r.trial == t.number]
        out += ["", "## Final stage (the study's paper table)", ""]
        out += md_table(final_view.HEADER, [final_view.cells(r) for r in rows])
        out += ["", f"This network is row `{mine[0].network}` (trial #{t.number})." if mine else
                f"Trial #{t.number} was not among the networks the final stage trained.", "",
                *final_view.caption(study, rows)]
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




def _latency_cell(t: FrozenTrial, v: float) -> str:
    """'1.123 ms (IQR 0.050 ms)', with 'noisy' when the measurement stayed so."""
    iqr = t.user_attrs.get("latency_iqr_ms")
    return (f"{v:.3f} ms" + (f" (IQR {iqr:.3f} ms)" if isinstance(iqr, (int, float)) else "")
            + (", noisy" if t.user_attrs.get("latency_noisy") else ""))


def _interval_config(interval: lat.Interval | None) -> dict | None:
    """config.json's record of the re-measured latency: median, interval, rounds, coverage."""
    if interval is None:
        return None
    return {"median_ms": interval.median_ms, "low_ms": interval.low_ms, "high_ms": interval.high_ms,
            "rounds": list(interval.rounds), "coverage": round(interval.coverage, 4)}


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
