"""Latency inside the real streaming pipeline: per stage and glass-to-LSL, per model, backend and lookahead.

Question: from the moment a frame is captured, how long until its response is ready in the synthesizer, and
until the first output sample holding it has been pushed to LSL; where does the time go; how much headroom is
left within the output delay (the lookahead), and what does the automatic lookahead of ``vibe-rt stream`` give
against a fixed one?

A :class:`~vibe_rt.stream.StreamPipeline` runs for real (frame source thread, event policy, inference thread,
synthesizer, outlet thread pushing to an LSL outlet) with the built-in :class:`~vibe_rt.stream.DemoSource`
(no camera needed) or a video file, onsets at a fixed rate (or every frame), and the timestamps it records itself
(:class:`~vibe_rt.stream.stats.PipelineStats`, every value of the run kept). Each model x variant runs once per
lookahead mode: ``fixed`` (``--lookahead``, 0.25 s by default) and ``auto`` (chosen at start from a timed warm-up
of the real path, grown once if responses come late: :mod:`vibe_rt.stream.lookahead`).

========================  =====================================================================================
``capture``               frame capture -> the inference thread takes the onset (``dispatch`` + ``queue_wait``)
``dispatch``              frame capture -> onset queued (the source's frame queue, the event policy)
``queue_wait``            onset queued -> taken by the inference thread
``preprocess``            uint8 frames -> normalised pixels (crop, resize)
``encoder``/``qformer``/  the three networks (``chain`` when fused), as timed by the backend (device synchronised)
``decoder``
``inference``             the whole ``predict`` call
``synth_add``             resample to the output rate, taper, overlap-add into the synthesizer
``ready``                 capture -> response in the synthesizer (``onset_to_ready``); on time while < lookahead
``emitted``               capture -> end of the push of the first sample holding the response
                          (``onset_to_emitted``): the glass-to-LSL latency
``push``, ``push_lag``    one ``push_chunk`` call; push time minus the intended push time of a chunk
========================  =====================================================================================

The emitted latency is, by design, the lookahead plus up to one push interval: a response is placed at its true
onset time in the stream and emitted ``lookahead`` after it. For a real camera add what happens before a frame is
stamped (exposure, sensor readout, USB transfer, driver: invisible to software, typically 1-3 frame periods for a
USB webcam) and, for a display, its refresh period; those are listed under ``floor``. The DemoSource stamps each
frame at its nominal time, so its capture delay is zero. The amplifiers' own delays to LSL are listed as reference
rows (``references_ms``): a simulated stream that is as late as a real amplifier's is as usable as one.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .common import cpu_steal_s, load_average, percentiles, result_path, save_histograms, write_result
from .inference import check_device, make_predictor, parse_variants, resolve_model

NAME = "latency"
#: Reported name -> PipelineStats timing name.
STAGE_KEYS = {"capture": "capture_to_dequeue", "dispatch": "capture_to_dispatch", "queue_wait": "queue_wait",
              "preprocess": "preprocess", "encoder": "encoder", "qformer": "qformer", "decoder": "decoder",
              "chain": "chain", "inference": "inference", "synth_add": "synth_add", "ready": "onset_to_ready",
              "emitted": "onset_to_emitted", "push": "push", "push_lag": "push_lag"}
_PER_CHUNK = ("push", "push_lag")


def _source(video: str | Path | None, fps: float, seed: int) -> Any:
    from ..stream import DemoSource, VideoSource

    if video is not None:
        return VideoSource(video, realtime=True, loop=True)
    return DemoSource(fps=fps, seed=seed)


def run_pipeline(predictor: Any, *, duration: float, event_rate: float, srate: float, lookahead: float | None,
                 fps: float, video: str | Path | None = None, chunk_ms: float = 5.0, max_batch: int = 4,
                 events: str = "rate", seed: int = 0) -> dict[str, Any]:
    """Stream with ``predictor`` for ``duration`` s, then until every response was emitted; return the stage
    samples (ms), counters, the effective rate and the lookahead (``lookahead`` None: chosen at start from a
    warm-up, as ``vibe-rt stream --lookahead auto`` does; ``events``: ``"rate"`` (``event_rate`` onsets/s) or
    ``"every"`` (every frame))."""
    from ..data.noise import BackgroundNoise
    from ..stream import EveryFrame, FixedRate, InferenceSpec, OutputSpec, StreamPipeline, SynthSpec

    n_chunks = duration * 1000 / chunk_ms
    policy = EveryFrame() if events == "every" else FixedRate(event_rate)
    pipe = StreamPipeline(predictor, source=_source(video, fps, seed), policy=policy,
                          output=OutputSpec(srate=srate, lookahead=lookahead, name="vibe-rt-bench-latency",
                                            source_id=f"vibe-rt-bench-latency-{uuid.uuid4().hex[:8]}",
                                            chunk_s=chunk_ms / 1000),
                          inference=InferenceSpec(max_batch=max_batch), synth=SynthSpec(seed=seed),
                          background=BackgroundNoise(predictor.montage, srate, seed=seed),
                          stats_window=int(2 * n_chunks) + 10_000)
    pipe.start()
    initial = pipe.lookahead_choice
    try:
        end = time.monotonic() + duration
        while time.monotonic() < end and pipe.error is None:
            time.sleep(0.05)
        # the last onsets need inference plus the lookahead before their first sample is pushed
        pipe.source.stop()  # type: ignore[union-attr]
        # polled cheaply: status() copies every kept sample, which would stall the last responses
        settle = time.monotonic() + pipe.lookahead + 2.0
        while time.monotonic() < settle and pipe.error is None and not pipe.idle:
            time.sleep(0.05)
        time.sleep(2 * chunk_ms / 1000)  # the last response's push is timed after it was rendered
        status = pipe.status()
    finally:
        pipe.stop()
    samples = {name: pipe.stats.samples(key) * 1e3 for name, key in STAGE_KEYS.items()}
    counters = {k: status.get(k, 0) for k in ("frames", "events", "responses", "late", "late_dropped",
                                              "late_clipped", "overload_dropped", "batches", "samples_pushed")}
    final = pipe.lookahead_choice
    assert initial is not None and final is not None  # chosen by start()
    return {"samples_ms": {k: v for k, v in samples.items() if v.size},
            "counters": counters, "effective_srate_hz": status["effective_srate"], "chunk_samples": pipe.chunk,
            "lookahead": {"mode": initial.mode, "initial_ms": 1e3 * initial.seconds, "final_ms": 1e3 * final.seconds,
                          "grown": final is not initial, "rule": final.rule}}


#: Lookahead modes: the fixed ``--lookahead`` and the automatic one of ``vibe-rt stream``.
LOOKAHEAD_MODES = ("fixed", "auto")
#: Reference rows of the latency table: an amplifier's own delay from its input to its LSL samples (ms).
AMPLIFIER_DELAYS_MS = {"BrainAmp (BrainVision LSL connector)": 51.6, "BioSemi ActiveTwo (LSL app)": 7.7}


def _modes(lookahead_mode: str) -> tuple[str, ...]:
    if lookahead_mode == "both":
        return LOOKAHEAD_MODES
    if lookahead_mode not in LOOKAHEAD_MODES:
        raise ConfigError(f"--lookahead-mode must be fixed, auto or both, got {lookahead_mode!r}")
    return (lookahead_mode,)


def _run_one(predictor: Any, var: dict[str, Any], *, lookahead: float | None, **options: Any) -> tuple[
        dict[str, Any], dict[str, np.ndarray]]:
    """One stream of one variant under one lookahead: its result entry and raw samples (ms)."""
    steal_before = cpu_steal_s()
    res = run_pipeline(predictor, lookahead=lookahead,
                       max_batch=1 if var["cuda_graph"] else 4, **options)  # a CUDA graph is captured for batch 1
    steal_after = cpu_steal_s()
    res["cpu_steal_ms"] = (None if steal_before is None or steal_after is None
                           else round(1e3 * (steal_after - steal_before), 1))
    smp = res.pop("samples_ms")
    stages = {k: percentiles(v) for k, v in smp.items()}
    ready, emitted = stages.get("ready", {}), stages.get("emitted", {})
    budget = res["lookahead"]["final_ms"]
    return {**{k: var[k] for k in ("backend", "precision", "fused", "cuda_graph")}, **res,
            "stages_ms": stages, "glass_to_lsl_ms": {"ready": ready, "emitted": emitted},
            "headroom_ms": {"lookahead_minus_ready_p99": budget - ready["p99"]} if ready.get("n") else {},
            "raw_ms": {k: np.round(v, 4) for k, v in smp.items() if k not in _PER_CHUNK}}, smp


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    ready, emitted = r["glass_to_lsl_ms"]["ready"], r["glass_to_lsl_ms"]["emitted"]
    return {"model": r["model"], "variant": r["variant"], "lookahead_mode": r["lookahead"]["mode"],
            "lookahead_ms": r["lookahead"]["final_ms"], "lookahead_grown": r["lookahead"]["grown"],
            "ready_p50_ms": ready.get("p50"), "ready_p99_ms": ready.get("p99"),
            "emitted_p50_ms": emitted.get("p50"), "emitted_p99_ms": emitted.get("p99"),
            "emitted_max_ms": emitted.get("max"), "inference_p99_ms": r["stages_ms"].get("inference", {}).get("p99"),
            "late": r["counters"]["late"], "responses": r["counters"]["responses"], "cpu_steal_ms": r["cpu_steal_ms"]}


def run(*, backend: str | None = None, models: tuple[str, ...] | list[str] = (), device: str = "cpu",
        duration: float = 30.0, event_rate: float = 5.0, events: str = "rate", srate: float = 1000.0,
        lookahead: float = 0.25, lookahead_mode: str = "both", fps: float = 30.0, refresh_hz: float = 60.0,
        video: str | Path | None = None, chunk_ms: float = 5.0, threads: int | None = None,
        engines_dir: str | Path | None = None, tag: str | None = None, out_dir: str | Path | None = None,
        write: bool = True, plot: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Run the latency benchmark for each model, backend variant and lookahead mode, one after the other.

    Parameters
    ----------
    backend : str | None
        Variants (see :func:`~vibe_rt.bench.inference.parse_variants`); None: torch eager (the peer) and every
        engine backend available on ``device`` (ONNX Runtime fp32 staged and fused, int8 on a CPU).
    models : sequence of str
        Checkpoints, ``"default"`` (the embedded model) or ``"tiny"``/``"base"`` (ViT-B-32) presets; empty: the
        embedded default (tiny preset when missing).
    device : {"cpu", "cuda"}
    duration : float
        Seconds of streaming per run (model x variant x lookahead mode).
    event_rate : float
        Onsets per second with ``events="rate"`` (each is one inference).
    events : {"rate", "every"}
        ``"every"``: every frame of the source is an onset (``fps`` onsets/s; waiting onsets are batched); written
        to ``latency_every-<machine>.json`` beside the ``latency-<machine>.json`` of onsets at a rate.
    srate, chunk_ms : float
        Output rate (Hz), push interval (ms).
    lookahead : float
        The fixed output delay (s) of the ``"fixed"`` runs.
    lookahead_mode : {"both", "fixed", "auto"}
        Run each variant with the fixed ``lookahead``, with the automatic one (chosen at start from a timed
        warm-up of the real path, as ``vibe-rt stream --lookahead auto``), or both side by side (default).
    fps : float
        Frame rate of the demo source (the camera frame period of the floor).
    refresh_hz : float
        Display refresh rate listed in the floor (a stimulus is visible up to one refresh after its flip).
    video : path-like | None
        Use this video file (looped, real time) instead of the demo source.
    threads : int | None
        CPU threads for torch and ONNX Runtime (default: physical cores for torch, ONNX Runtime's own default:
        physical cores minus one, so that its workers leave the outlet thread a core).
    engines_dir : path-like | None
        Engine cache (default: the project's ``engines/`` cache).
    tag : str | None
        Added to the result's name: ``latency[_every]_<tag>-<machine>.json`` (a long run beside the usual one).
    """
    import torch

    from ..checkpoint import as_loaded
    from ..runtime.backends import physical_cores
    from .inference import int8_parity

    if duration <= 0 or event_rate <= 0:
        raise ConfigError("--duration and the event rate must be positive")
    if events not in ("rate", "every"):
        raise ConfigError(f"--events must be rate or every, got {events!r}")
    modes = _modes(lookahead_mode)
    check_device(device)
    variants = parse_variants(backend, device)
    torch.set_num_threads(threads or physical_cores())  # ONNX Runtime keeps its own default unless --threads
    options = dict(duration=duration, event_rate=event_rate, events=events, srate=srate, fps=fps, video=video,
                   chunk_ms=chunk_ms)
    results: dict[str, Any] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    described: dict[str, str] = {}
    load_before = load_average()
    for spec in list(models) or ["default"]:
        mdl, desc = resolve_model(None if spec == "default" else spec)
        loaded = as_loaded(mdl)
        described[spec] = desc
        for var in variants:
            label = f"{spec}:{var['label']}"
            t0 = time.perf_counter()
            try:
                predictor = make_predictor(loaded, var, device=device, threads=threads, engines_dir=engines_dir)
                parity = int8_parity(loaded, var, engines_dir)
            except Exception as err:  # one missing backend must not lose the others
                logger.warning("%s: %s", label, err)
                results[label] = {"model": spec, "variant": var["label"], "error": f"{type(err).__name__}: {err}"}
                continue
            setup = time.perf_counter() - t0
            for mode in modes:
                key = f"{label}:{mode}"
                logger.info("latency benchmark: %s for %g s (%s)", key, duration,
                            "every frame" if events == "every" else f"{event_rate:g} onsets/s")
                entry, smp = _run_one(predictor, var, lookahead=lookahead if mode == "fixed" else None, **options)
                results[key] = {"model": spec, "variant": var["label"], "device": device, "setup_s": round(setup, 2),
                                **parity, **entry}
                raw[key] = smp
                s = _summary(results[key])
                logger.info("%s: lookahead %.1f ms, ready p50/p99 %.2f/%.2f ms, emitted p50/p99 %.2f/%.2f ms, "
                            "late %d", key, s["lookahead_ms"], s["ready_p50_ms"] or np.nan,
                            s["ready_p99_ms"] or np.nan, s["emitted_p50_ms"] or np.nan,
                            s["emitted_p99_ms"] or np.nan, s["late"])
    floor = {
        "push_interval_ms": chunk_ms,
        "camera_frame_period_ms": 1e3 / fps,
        "camera_exposure_to_frame_ms": [1e3 / fps, 3e3 / fps],
        "display_refresh_period_ms": 1e3 / refresh_hz,
        "source_capture_delay_ms": 0.0 if video is None else None,
        "note": "emitted = lookahead (by design: responses land at their true time) + up to one push interval. A "
                "camera's own delay from exposure to a frame reaching software (exposure, sensor readout, USB "
                "transfer, driver; typically 1-3 frame periods for USB webcams) happens before the frame is "
                "stamped and is invisible to software; a display adds up to one refresh period. 'ready' must stay "
                "below the lookahead for a response to be on time.",
    }
    payload = {
        "question": "Capture -> response ready / first sample pushed to LSL: per stage, per model and backend, "
                    "with a fixed and the automatic lookahead, inside the real pipeline.",
        "models": described,
        "config": {"backend": backend, "device": device, "duration_s": duration, "events": events,
                   "event_rate_hz": event_rate if events == "rate" else fps, "srate": srate,
                   "lookahead_s": lookahead, "lookahead_modes": list(modes), "chunk_ms": chunk_ms, "fps": fps,
                   "refresh_hz": refresh_hz, "source": "video" if video else "demo", "threads": threads,
                   "torch_threads": torch.get_num_threads(), "montage": mdl.montage.name,
                   "n_channels": mdl.montage.n_channels, "tag": tag},
        "floor": floor,
        "references_ms": {"amplifier_to_lsl": AMPLIFIER_DELAYS_MS},
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "results": results,
        "summary": {key: _summary(r) for key, r in results.items() if "error" not in r},
    }
    path = None
    name = NAME if events == "rate" else f"{NAME}_every"  # latency-<machine>.json / latency_every-<machine>.json
    name = f"{name}_{tag}" if tag else name
    if write:
        if plot and raw and importlib.util.find_spec("matplotlib") is None:  # e.g. benchmarks/gpu.sh's minimal set
            logger.warning("latency: no PNG, matplotlib is not installed; the JSON holds every sample")
        elif plot and raw:
            panels = {name: {label: smp[name] for label, smp in raw.items() if name in smp}
                      for name in ("capture", "preprocess", "inference", "synth_add", "ready", "emitted")}
            png = save_histograms(result_path(name, out_dir=out_dir, suffix=".png"), panels,
                                  title=f"vibe-rt latency inside the pipeline ({', '.join(described.values())})",
                                  marks={"fixed lookahead": lookahead * 1e3})
            payload["plot"] = png.name
        path = write_result(name, payload, out_dir=out_dir)
    return payload, path
