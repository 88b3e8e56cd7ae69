"""The benchmark tables of README.md and benchmarks/README.md, rebuilt from the JSON results (``vibe-rt bench
tables``).

The tables go between the markers ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` (everything
between them is replaced; a file without the markers is left alone and reported). Sources, per machine:
``latency-*.json``, ``stream-*.json``, ``throughput-*.json``, ``inference_latency-*.json``, ``comparator-*.json``,
``experiment_timing*-*.json``, ``quality-*.json`` (``vibe-rt bench``) and ``quality.json`` (``vibe-rt train
default``). ``check`` writes nothing and reports the files that are out of date (CI runs
``python benchmarks/make_table.py --check``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._logs import logger
from ..errors import ConfigError
from .common import checkout_root

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def _f(x: Any, digits: int = 1) -> str:
    """A number for a table cell ("-" when missing)."""
    if x is None or isinstance(x, str):
        return "-" if x is None else x
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def _table(header: list[str], rows: list[list[str]]) -> str | None:
    """A Markdown table (None without rows: the section is left out)."""
    if not rows:
        return None
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _load(results: Path, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(results.glob(pattern)):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("tables: skipping %s: %s", path.name, err)
            continue
        machine = doc.get("machine_info", {}).get("machine") or path.stem.split("-", 1)[-1]
        out.append((machine, doc))
    return out


_LATENCY_STAGES = ("capture", "dispatch", "queue_wait", "preprocess", "inference", "synth_add", "push")


def latency_table(results: Path) -> str | None:
    rows, references = [], {}
    for machine, doc in _load(results, "latency*-*.json"):
        events = doc.get("config", {}).get("events", "rate")
        rate = doc.get("config", {}).get("event_rate_hz")
        load = (doc.get("loadavg_before") or [None])[0]
        for r in doc.get("results", {}).values():
            if "error" in r:
                continue
            st, g, la = r["stages_ms"], r["glass_to_lsl_ms"], r["lookahead"]
            stages = " / ".join(_f(st.get(k, {}).get("p50"), 2) for k in _LATENCY_STAGES)
            lookahead = f"{la['mode']} {_f(la['final_ms'])}" + (" (grown)" if la["grown"] else "")
            rows.append([machine, r["model"], r["variant"], f"{'every frame' if events == 'every' else 'rate'} "
                         f"{_f(rate)}/s, {_f(doc['config'].get('duration_s'), 0)} s", lookahead, stages,
                         _f(g["ready"].get("p50")), _f(g["ready"].get("p99")), _f(g["emitted"].get("p50")),
                         _f(g["emitted"].get("p99")), _f(g["emitted"].get("max")),
                         f"{r['counters'].get('late', '-')}/{g['ready'].get('n', '-')}",
                         _f(r.get("epoch_r_vs_fp32"), 5), _f(r.get("cpu_steal_ms"), 0), _f(load)])
        references.update(doc.get("references_ms", {}).get("amplifier_to_lsl", {}))
    for name, ms in references.items():
        rows.append(["reference", name, "amplifier -> LSL", "-", "-", "-", "-", "-", _f(ms), "-", "-", "-", "-",
                     "-", "-"])
    return _table(["machine", "model", "backend", "onsets", "lookahead ms", "p50 ms: " + " / ".join(_LATENCY_STAGES),
                   "ready p50 ms", "p99", "emitted p50 ms", "p99", "max", "late/onsets", "int8 epoch r",
                   "CPU steal ms", "load avg"],
                  rows if len(rows) > len(references) else [])


def _wall_rate_error(rec: dict) -> float:
    """Arrival rate vs nominal on the receiver's clock, %: the result field, or from the drift of older files."""
    if "wall_rate_error_pct" in rec:
        return rec["wall_rate_error_pct"]
    return -rec["latency_drift_ms_per_min"] / 60e3 * 100


def stream_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "stream-*.json") + _load(results, "stream_artifacts-*.json"):
        cfg = doc.get("config", {})
        art = cfg.get("artifacts_given")
        names = ((("vibe_rt", f"vibe-rt + artifacts {art}"), ("vibe_rt_plain", "vibe-rt, no artifacts"))
                 if art else (("vibe_rt", "vibe-rt"),)) + (("mne_lsl_player", "MNE-LSL PlayerLSL"),)
        for key, name in names:
            part = doc.get(key)
            if not part or "error" in part or "error" in part.get("receiver", {}):
                continue
            rec, strm = part["receiver"], part.get("streamer", {})
            lat = rec["receive_latency_ms"]
            rows.append([machine, name, f"{_f(cfg.get('duration_s'), 0)} s, {cfg.get('channels')} ch @ "
                                        f"{_f(cfg.get('srate'), 0)} Hz",
                         f"{rec['rate_error_pct']:.1e}", f"{_wall_rate_error(rec):.1e}", _f(lat.get("p50"), 2),
                         _f(lat.get("p99"), 2),
                         _f(rec.get("latency_drift_ms_per_min"), 3), str(rec.get("gaps", "-")),
                         _f(strm.get("push_lag_ms", {}).get("p99"), 2),
                         _f(strm.get("outlet_thread_cpu_pct")), _f(strm.get("process_cpu_pct")),
                         _f((doc.get("load_average_before") or [None])[0], 1)])
    return _table(["machine", "streamer", "run", "timestamp rate error %", "wall-clock rate error %",
                   "receive latency p50 ms", "p99",
                   "drift ms/min", "gaps", "push lag p99 ms", "outlet CPU %", "process CPU %", "load avg"], rows)


def throughput_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "throughput-*.json"):
        target = doc.get("config", {}).get("target_p99_ms")
        for label, r in doc.get("results", {}).items():
            if "sweep" not in r:
                continue
            rows.append([machine, label, _f(r.get("batch1_p99_ms"), 2), str(r.get("best_batch") or "-"),
                         _f(r.get("best_batch_p99_ms"), 2), _f(r.get("max_events_per_s"), 0), _f(target, 0)])
    return _table(["machine", "backend", "batch-1 p99 ms", "best batch", "its p99 ms", "max events/s",
                   "target p99 ms"], rows)


def inference_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "inference_latency-*.json"):
        for model, per in doc.get("results", {}).items():
            for label, r in per.get("variants", {}).items():
                if "batch1" not in r:
                    continue
                sp = doc.get("summary", {}).get(model, {}).get("speedup_vs_torch_fp32_p50", {}).get(label)
                tot = r["batch1"]["total_ms"]
                stages = r["batch1"].get("stages_ms", {})
                per_stage = " / ".join(_f(stages[s]["p50"], 2) for s in ("encoder", "qformer", "decoder")
                                       if s in stages) or "(one graph)"
                rows.append([machine, model, label, _f(tot["p50"], 2), _f(tot.get("p95"), 2), _f(tot["p99"], 2),
                             _f(tot["min"], 2), per_stage, f"{sp:.2f}x" if sp else "-",
                             f"{r.get('best_batch', '-')}: {_f(r.get('best_throughput_per_s'), 0)}",
                             f"{_f(r.get('epoch_r_vs_fp32'), 5)} / {_f(r.get('epoch_image_specific_r_vs_fp32'), 4)}"
                             if "epoch_r_vs_fp32" in r else "-", f"{doc.get('threads', '-')}"])
    return _table(["machine", "model", "variant", "batch-1 p50 ms", "p95", "p99", "min",
                   "encoder / Q-Former / decoder p50 ms", "vs torch (p50)", "best batch: images/s",
                   "int8 epoch r vs fp32 (all / image-specific)", "threads"], rows)


def int8_methods_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "inference_latency-*.json"):
        for model, per in doc.get("results", {}).items():
            methods = per.get("int8_methods", {})
            if "fp32" not in methods:
                continue
            for name in ("fp32", "dynamic", "static"):
                m = methods[name]
                rows.append([machine, model, name, _f(m["batch1_ms"]["p50"], 2), _f(m["batch1_ms"]["min"], 2),
                             f"{m['speedup_vs_fp32_p50']:.2f}x" if "speedup_vs_fp32_p50" in m else "-",
                             _f(m.get("tokens_r_vs_fp32"), 5), f"{m['relative_error_vs_fp32']:.1e}"
                             if "relative_error_vs_fp32" in m else "-", _f(m.get("quantize_s"), 1)])
    return _table(["machine", "model", "encoder", "batch-1 p50 ms", "min", "vs fp32 (p50)", "tokens r vs fp32",
                   "relative error", "quantize s"], rows)


def quality_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "quality-*.json"):
        for model, r in doc.get("results", {}).items():
            if "error" in r:
                continue
            ridge = {k: v for k, v in r["r"].items() if k.startswith("ridge")}
            own = [v for k, v in r["r"].items() if not k.startswith("ridge")]
            nc = r["noise_ceiling"]
            rows.append([machine, model, _f(own[0] if own else None, 3),
                         ", ".join(f"{k[6:]} {v:.3f}" for k, v in ridge.items()) or "-",
                         f"{nc['lower']:.3f} - {nc['upper']:.3f}", _f(r.get("reconstruction_r"), 3),
                         "quick" if doc.get("config", {}).get("quick") else str(r["dataset"].get("n_images", "-"))
                         + " test images"])
    d = _json(results / "quality.json")
    if d is not None:
        try:
            nc = d["noise_ceiling"]
            rows.append(["(training run)", "vibe-default", _f(d["stage2_encoding_r"], 3),
                         ", ".join(f"{k} {v:.3f}" for k, v in d.get("ridge_baseline_r", {}).items()),
                         f"{nc['lower']:.3f} - {nc['upper']:.3f}", _f(d.get("stage1_reconstruction_r"), 3),
                         f"{d.get('dataset', {}).get('n_test', '-')} test images"])
        except KeyError as err:
            logger.warning("tables: skipping quality.json: %s", err)
    return _table(["machine", "model", "encoding r", "ridge baseline r", "noise ceiling", "reconstruction r",
                   "data"], rows)


def _json(path: Path) -> dict[str, Any] | None:
    """A results document, or None (with a warning) when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("tables: skipping %s: %s", path.name, err)
        return None
    return doc if isinstance(doc, dict) else None


def quality_summary_table(results: Path) -> str | None:
    doc = _json(results / "quality.json")
    s = (doc or {}).get("summary")
    if not s:
        return None
    lo, hi = s["encoding_r_ci95"]
    return _table(["encoding r (95 % CI)", "truth r", "ratio to truth", "PCA-ridge r", "shuffled r", "RMSE uV",
                   "seeds"],
                  [[f"{s['encoding_r']:.3f} ({lo:.3f} - {hi:.3f})", _f(s["truth_r"], 3), _f(s["ratio_to_truth"], 2),
                    _f(s["ridge_pca_r"], 3), _f(s["shuffled_r"], 3), _f(s["rmse_uv"], 2), str(s["n_seeds"])]])


def ablation_table(results: Path) -> str | None:
    doc = _json(results / "ablations.json")
    if not doc:
        return None
    rows = []
    for name, v in doc["variants"].items():
        lo, hi = v["test_r_ci95"]
        rows.append([name, f"{v['test_r']:.3f} ({lo:.3f} - {hi:.3f})", _f(v.get("val_r"), 4)])
    rows.append([f"SWD weight chosen on validation: {doc['swd_curve']['chosen_on_validation']:g}",
                 f"{doc['n_seeds']} seeds", "-"])
    return _table(["variant", "test r (95 % CI)", "validation r"], rows)


def comparator_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "comparator-*.json"):
        for r in doc.get("recovery", []):
            rows.append([machine, _f(r.get("soa_s"), 1), _f(r["latency_true_ms"]), _f(r["noise_uv"]),
                         _f(r["latency_est_ms"], 2), _f(r["gain_error_max_pct"]), _f(r["erp_r"], 3),
                         _f(r["erp_r_aligned"], 3), _f(r.get("erp_r_calibrated"), 3),
                         _f(r["expected_r_noise_free"], 3), _f(r["noise_ceiling"], 3),
                         f"{r['n_events']}/{r['n_lost']}"])
    return _table(["machine", "SOA s", "true latency ms", "noise uV", "estimated ms", "max gain error %", "ERP r",
                   "latency-aligned r", "calibrated r", "noise-free r", "noise ceiling", "events/lost"], rows)


def calibration_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "comparator-*.json"):
        c, a = doc.get("calibration"), doc.get("adapter")
        if c:
            rows.append([machine, "gain + latency (24 ms, 3 uV session)",
                         f"{c['in_sample']['before']['erp_r']:.3f} -> {c['in_sample']['after']['erp_r']:.3f}",
                         f"{c['held_out']['before']['erp_r']:.3f} -> {c['held_out']['after']['erp_r']:.3f}", "-"])
        if a:
            i, h = a["in_sample_r"], a["held_out_r"]
            rows.append([machine, f"+ latent adapter ({a['n_images']} images whose latent differs, fit "
                                  f"{a['fit_seconds']:.0f} s, {'kept' if a['kept'] else 'not kept'})",
                         f"{i['before']:.3f} -> {i['gain_latency']:.3f} -> {_f(i['adapter'], 3)}",
                         f"{h['before']:.3f} -> {h['gain_latency']:.3f} -> {h['adapter']:.3f}",
                         _f(a["ceiling_r"], 3)])
        for u in doc.get("update_cost", []):
            ms = u["ms"]
            rows.append([machine, f"cost of one comparison, {u['n_images']} images", f"mean {ms['mean']:.1f} ms",
                         f"p99 {ms['p99']:.1f} ms", f"max {ms['max']:.0f} ms"])
    return _table(["machine", "what", "ERP r in sample (or cost)", "held out", "ceiling"], rows)


def experiment_table(results: Path) -> str | None:
    rows = []
    for machine, doc in _load(results, "experiment_timing*-*.json"):
        def pc(key: str, doc: dict[str, Any] = doc) -> str:
            d = doc.get(key) or {}
            return f"{_f(d.get('p50'), 2)} / {_f(d.get('p99'), 2)}"
        mode = "synthesized stream" if doc.get("synthesized_stream") else "markers only"
        display = f"{doc.get('display', '-')}, {doc.get('pacing')} at {_f(doc.get('refresh_hz'), 1)} Hz"
        rows.append([machine, mode, display,
                     f"{doc.get('n_presented')}/{doc.get('n_trials')}", str(doc.get("n_markers_received")),
                     str(doc.get("dropped_frames")), pc("push_delay_ms"), pc("receive_delay_ms"),
                     pc("onset_error_ms"), pc("soa_error_ms")])
    return _table(["machine", "run", "display", "presented", "markers received", "dropped frames",
                   "flip -> marker pushed p50 / p99 ms", "-> received", "onset vs frame grid", "SOA error"], rows)


SECTIONS: list[tuple[str, Callable[[Path], str | None], str]] = [
    ("Latency inside the pipeline (`vibe-rt bench latency`)", latency_table,
     "ready = capture -> response in the synthesizer (must stay below the lookahead); emitted = capture -> push "
     "of the first LSL sample holding the response (glass-to-LSL; the lookahead by design + up to one push "
     "interval). Lookahead: fixed (`--lookahead`) or auto (`vibe-rt stream`'s default: p99 of a timed warm-up "
     "x 1.5 + 10 ms + one push interval). Threads as in the stream: torch every core, ONNX Runtime cores - 1. "
     "Stages: capture = frame stamp -> onset taken by the inference thread (= dispatch: frame stamp -> onset "
     "queued, + queue_wait), preprocess, inference (all three networks), synth_add (resampling to the output "
     "rate + overlap-add), push (one LSL push call). The demo source stamps frames at their nominal time; a "
     "camera's own exposure-to-frame delay (1-3 frame periods for a USB webcam) comes before the stamp and is "
     "in no row. Reference rows: an amplifier's own delay to its LSL samples."),
    ("Stream timing (`vibe-rt bench stream`)", stream_table,
     "Received by a pylsl inlet in another process; receive latency = arrival - intended push time; timestamp "
     "rate error = samples received vs the span of their timestamps (catches lost samples); wall-clock rate error "
     "= arrival rate on the receiver's clock vs nominal (from the drift: does the stream keep time?). "
     "`vibe-rt + artifacts LIST` rows inject that `--artifacts` list (`realistic,saccades:30/min`: all seven kinds, "
     "saccades at random since there are no onsets), beside a run of the same shape without them and PlayerLSL "
     "on that shape."),
    ("Throughput (`vibe-rt bench throughput`)", throughput_table,
     "Events/s sustained (batch / mean latency of back-to-back predictor calls, preprocessing included) at the "
     "best batch size whose p99 latency per call stays below the target (half the lookahead); batch sizes double "
     "until the target breaks. Threads: torch uses every core, ONNX Runtime cores - 1 (one left for capture and "
     "the outlet), as in the stream."),
    ("Inference latency per backend (`vibe-rt bench inference`)", inference_table,
     "default: the embedded model; base: ViT-B-32 chain with random weights (latency does not depend on them); "
     "torch eager fp32 is the reference; best batch: the highest throughput of the batch sizes tried; int8 "
     "epoch r: Pearson r of the ONNX Runtime int8 chain's epochs vs the fp32 chain's on the calibration images, "
     "over all values and over their deviations from the mean across images (engines are refused when either is "
     "below 0.99)."),
    ("INT8 quantization methods on the image encoder (`vibe-rt bench inference`)", int8_methods_table,
     "ONNX Runtime on a CPU: the fp32 encoder graph vs its dynamic quantization (int8 weights per channel, "
     "activations quantized per call: what `--precision int8` engines use) and its static quantization (QDQ, "
     "activation ranges calibrated on the 32 built-in calibration images); r and relative error of the tokens "
     "on those images."),
    ("Comparator on ground truth (`vibe-rt bench comparator`)", comparator_table,
     "Offline comparison (the live mode shares the code) of a synthesized run as the stream renders it "
     "(responses overlap-added at their onsets, 1 kHz) recorded as gain[c] x run(t - latency) + 1/f noise at "
     "500 Hz, 12 images x 8 repetitions, gains 0.7-1.4, against the model mode (the isolated responses, "
     "overlap-added by the comparator); at SOA 0.6 and 0.2 s every epoch (-0.2..0.79 s) holds its neighbours' "
     "responses. Latency and gains are fitted jointly (calibrated r: gain x the synthesized signal cut at "
     "onset - latency); the latency is recovered to a fraction of a model sample (10 ms), gain errors grow with "
     "the noise (their standard errors come from the calibration's block bootstrap)."),
    ("Calibration (`vibe-rt bench comparator`)", calibration_table,
     "Held out: fitted on the odd repetitions, scored on the even ones. The comparison cost is per event, one "
     "core; snapshots of the running metrics thin out as images accumulate, so the mean stays flat."),
    ("PsychoPy RSVP timing (`vibe-rt bench experiment-timing`)", experiment_table,
     "Under Xvfb (no vsync: frames paced by the clock at an emulated refresh): this measures the software path "
     "(flip time -> LSL marker -> inlet) and the frame logic, not a monitor's photon timing; the marker timestamp "
     "is the flip time by construction. With the synthesized stream its markers are pushed once the response "
     "is placed in the signal (after inference), so they are received a few ms later than markers-only ones."),
    ("Quality of the embedded model on a fresh test seed (`vibe-rt train default`)", quality_summary_table,
     "Encoding r: split-half protocol (below); CI: bootstrap over test images. Truth r: the simulator's noise-free "
     "responses scored the same way (the best any model can do on these data); ratio = encoding r / truth r. "
     "PCA-ridge: ridge on 100 PCA components of the same image tokens (Gifford et al. 2022). Shuffled: ViBE's "
     "predictions with the images permuted (what the shared ERP alone earns). RMSE: against the noise-free truth."),
    ("Ablations (`vibe-rt train ablations`)", ablation_table,
     "Encoding r against the test images' repetition average (fresh test seed per training seed), mean over "
     "training seeds; 95 % CI: bootstrap over seeds, then test images. Validation r: the stage-2 criterion on "
     "held-out training images (the only one used for choices). truth: the noise-free responses."),
    ("Quality (`vibe-rt bench quality`, `vibe-rt train default`)", quality_table,
     "Encoding r: mean over channels x time of the Pearson r across test images vs a random half of the "
     "repetitions (100 splits); the ridge baseline uses the same image features."),
]


def render(results: Path) -> str:
    """All tables, in Markdown, from the JSON files in ``results``."""
    parts = ["_Generated by `vibe-rt bench tables` from `benchmarks/results/`; do not edit by hand._"]
    for title, fn, note in SECTIONS:
        table = fn(results)
        if table is None:
            continue
        parts += [f"**{title}**", note, table]
    if len(parts) == 1:
        parts.append("No results yet: run `vibe-rt bench all`.")
    return "\n\n".join(parts)


def replace_between_markers(text: str, content: str) -> str | None:
    """``text`` with the part between the markers replaced by ``content`` (None when the markers are absent)."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        return None
    return text[: i + len(START)] + "\n" + content.strip() + "\n" + text[j:]


def update(path: Path, content: str, *, check: bool = False) -> bool:
    """Write ``content`` between the markers of ``path``; returns True when the file changed (or, with
    ``check``, would change)."""
    text = path.read_text(encoding="utf-8")
    new = replace_between_markers(text, content)
    if new is None:
        logger.warning("tables: %s has no %s ... %s markers; left alone", path, START, END)
        return False
    if new == text:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def run(*, results: str | Path | None = None, files: Sequence[str | Path] = (), check: bool = False,
        print_only: bool = False) -> tuple[dict[str, Any], None]:
    """Rebuild the tables in ``files`` from the JSON results in ``results``.

    Parameters
    ----------
    results : path-like | None
        Folder of JSON results (default: ``benchmarks/results/`` of the source checkout).
    files : sequence of path-like
        Markdown files to update (default: README.md and benchmarks/README.md of the source checkout).
    check : bool
        Write nothing; ``stale`` lists the files that are out of date.
    print_only : bool
        Render only (``content``), touch no file.

    Returns
    -------
    result : dict
        ``content`` (the Markdown of all tables), ``stale`` (files updated, or out of date with ``check``) and
        ``check``; no file is written as a result (the path is None).
    """
    root = checkout_root()
    if root is not None:
        folder = Path(results) if results is not None else root / "benchmarks" / "results"
        targets = [Path(f) for f in files] or [root / "README.md", root / "benchmarks" / "README.md"]
    elif results is not None and files:
        folder, targets = Path(results), [Path(f) for f in files]
    else:
        raise ConfigError("not a source checkout: pass --results DIR and the Markdown files whose tables to rebuild")
    content = render(folder)
    stale = [] if print_only else [str(p) for p in targets if update(p, content, check=check)]
    return {"content": content, "stale": stale, "check": check,
            "summary": {"out of date" if check else "updated": stale}}, None
