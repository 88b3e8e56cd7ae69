"""Latency inside the real streaming pipeline: per stage and glass-to-LSL, per backend.

Question: from the moment a frame is captured, how long until its response is ready in the synthesizer, and
until the first output sample holding it has been pushed to LSL; where does the time go; how much headroom is
left within the output delay (the lookahead)?

A :class:`~vibe_rt.stream.StreamPipeline` runs for real (frame source thread, event policy, inference thread,
synthesizer, outlet thread pushing to an LSL outlet) with the built-in :class:`~vibe_rt.stream.DemoSource`
(no camera needed) or a video file, onsets at a fixed rate, and the timestamps it records itself
(:class:`~vibe_rt.stream.stats.PipelineStats`, every value of the run kept):

========================  =====================================================================================
``capture``               frame capture -> the inference thread takes the onset (dispatch + queue wait)
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

With a fixed output delay the emitted latency is, by design, the lookahead plus up to one push interval: a
response is placed at its true onset time in the stream and emitted ``lookahead`` after it. For a real camera add
the capture delay before the frame is stamped (exposure, sensor readout, driver buffering; up to a few frame
periods, ~100 ms glass-to-glass is typical with OpenCV) and, for a display, its refresh period; those are listed
under ``floor``. The DemoSource stamps each frame at its nominal time, so its capture delay is zero.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .common import load_average, percentiles, result_path, save_histograms, write_result
from .inference import check_device, make_predictor, parse_variants, resolve_model

NAME = "latency"
#: Reported name -> PipelineStats timing name.
STAGE_KEYS = {"capture": "capture_to_dequeue", "queue_wait": "queue_wait", "preprocess": "preprocess",
              "encoder": "encoder", "qformer": "qformer", "decoder": "decoder", "chain": "chain",
              "inference": "inference", "synth_add": "synth_add", "ready": "onset_to_ready",
              "emitted": "onset_to_emitted", "push": "push", "push_lag": "push_lag"}
_PER_CHUNK = ("push", "push_lag")


def _source(video: str | Path | None, fps: float, seed: int) -> Any:
    from ..stream import DemoSource, VideoSource

    if video is not None:
        return VideoSource(video, realtime=True, loop=True)
    return DemoSource(fps=fps, seed=seed)


def run_pipeline(predictor: Any, *, duration: float, event_rate: float, srate: float, lookahead: float,
                 fps: float, video: str | Path | None = None, chunk_ms: float = 5.0, max_batch: int = 4,
                 seed: int = 0) -> dict[str, Any]:
    """Stream with ``predictor`` for ``duration`` s, then until every response was emitted; return the stage
    samples (ms), counters and the effective rate."""
    from ..data.noise import BackgroundNoise
    from ..stream import FixedRate, InferenceSpec, OutputSpec, StreamPipeline, SynthSpec

    n_chunks = duration * 1000 / chunk_ms
    pipe = StreamPipeline(predictor, source=_source(video, fps, seed), policy=FixedRate(event_rate),
                          output=OutputSpec(srate=srate, lookahead=lookahead, name="vibe-rt-bench-latency",
                                            source_id=f"vibe-rt-bench-latency-{uuid.uuid4().hex[:8]}",
                                            chunk_s=chunk_ms / 1000),
                          inference=InferenceSpec(max_batch=max_batch), synth=SynthSpec(seed=seed),
                          background=BackgroundNoise(predictor.montage, srate, seed=seed),
                          stats_window=int(2 * n_chunks) + 10_000)
    pipe.start()
    try:
        end = time.monotonic() + duration
        while time.monotonic() < end and pipe.error is None:
            time.sleep(0.05)
        # the last onsets need inference plus the lookahead before their first sample is pushed
        pipe.source.stop()  # type: ignore[union-attr]
        settle = time.monotonic() + lookahead + 2.0
        while time.monotonic() < settle and pipe.error is None:
            st = pipe.status()
            if st["queue_depth"] == 0 and st["onset_to_emitted_ms"]["n"] >= st["responses"]:
                break
            time.sleep(0.05)
        status = pipe.status()
    finally:
        pipe.stop()
    samples = {name: pipe.stats.samples(key) * 1e3 for name, key in STAGE_KEYS.items()}
    counters = {k: status.get(k, 0) for k in ("frames", "events", "responses", "late", "late_dropped",
                                              "late_clipped", "overload_dropped", "batches", "samples_pushed")}
    return {"samples_ms": {k: v for k, v in samples.items() if v.size},
            "counters": counters, "effective_srate_hz": status["effective_srate"], "chunk_samples": pipe.chunk}


def run(*, backend: str | None = None, model: str | Path | None = None, device: str = "cpu",
        duration: float = 30.0, event_rate: float = 5.0, srate: float = 1000.0, lookahead: float = 0.25,
        fps: float = 30.0, refresh_hz: float = 60.0, video: str | Path | None = None, chunk_ms: float = 5.0,
        threads: int | None = None, engines_dir: str | Path | None = None, out_dir: str | Path | None = None,
        write: bool = True, plot: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Run the latency benchmark for each backend variant, one after the other.

    Parameters
    ----------
    backend : str | None
        Variants (see :func:`~vibe_rt.bench.inference.parse_variants`); None: torch eager (the peer) and every
        engine backend available on ``device``.
    model : str | Path | None
        Checkpoint, ``"tiny"``/``"base"`` preset, or None for the embedded default (tiny preset when missing).
    device : {"cpu", "cuda"}
    duration : float
        Seconds of streaming per variant.
    event_rate : float
        Onsets per second (fixed rate; each is one inference).
    srate, lookahead, chunk_ms : float
        Output rate (Hz), output delay (s), push interval (ms).
    fps : float
        Frame rate of the demo source (the camera frame period of the floor).
    refresh_hz : float
        Display refresh rate listed in the floor (a stimulus is visible up to one refresh after its flip).
    video : path-like | None
        Use this video file (looped, real time) instead of the demo source.
    threads : int | None
        CPU threads for torch and ONNX Runtime (default: physical cores for torch, ONNX Runtime's own default:
        physical cores minus one, so that its spinning workers leave the outlet thread a core).
    engines_dir : path-like | None
        Engine cache (default: the project's ``engines/`` cache).
    """
    import torch

    from ..runtime.backends import physical_cores

    if duration <= 0 or event_rate <= 0:
        raise ConfigError("--duration and the event rate must be positive")
    check_device(device)
    variants = parse_variants(backend, device)
    torch.set_num_threads(threads or physical_cores())  # ONNX Runtime keeps its own default unless --threads
    mdl, desc = resolve_model(model)
    results: dict[str, Any] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    load_before = load_average()
    for var in variants:
        label = var["label"]
        t0 = time.perf_counter()
        try:
            predictor = make_predictor(mdl, var, device=device, threads=threads, engines_dir=engines_dir)
        except Exception as err:  # one missing backend must not lose the others
            logger.warning("%s: %s", label, err)
            results[label] = {"error": f"{type(err).__name__}: {err}"}
            continue
        setup = time.perf_counter() - t0
        logger.info("latency benchmark: %s for %g s (%g onsets/s)", label, duration, event_rate)
        res = run_pipeline(predictor, duration=duration, event_rate=event_rate, srate=srate, lookahead=lookahead,
                           fps=fps, video=video, chunk_ms=chunk_ms,
                           max_batch=1 if var["cuda_graph"] else 4)  # a CUDA graph is captured for batch 1
        smp = res.pop("samples_ms")
        raw[label] = smp
        stages = {k: percentiles(v) for k, v in smp.items()}
        ready, emitted = stages.get("ready", {}), stages.get("emitted", {})
        results[label] = {
            **{k: var[k] for k in ("backend", "precision", "fused", "cuda_graph")},
            "device": device, "setup_s": round(setup, 2), **res,
            "stages_ms": stages,
            "glass_to_lsl_ms": {"ready": ready, "emitted": emitted},
            "headroom_ms": {"lookahead_minus_ready_p99": lookahead * 1e3 - ready["p99"]} if ready.get("n") else {},
            "raw_ms": {k: np.round(v, 4) for k, v in smp.items() if k not in _PER_CHUNK},
        }
        logger.info("%s: ready p50/p99 %.2f/%.2f ms, emitted p50/p99 %.2f/%.2f ms", label, ready.get("p50", np.nan),
                    ready.get("p99", np.nan), emitted.get("p50", np.nan), emitted.get("p99", np.nan))
    floor = {
        "lookahead_ms": lookahead * 1e3,
        "push_interval_ms": chunk_ms,
        "camera_frame_period_ms": 1e3 / fps,
        "display_refresh_period_ms": 1e3 / refresh_hz,
        "source_capture_delay_ms": 0.0 if video is None else None,
        "note": "emitted = lookahead (by design: responses land at their true time) + up to one push interval; "
                "for a camera add its capture delay (exposure + readout + driver buffer, up to a few frame "
                "periods) and for a display up to one refresh period. 'ready' must stay below the lookahead for "
                "a response to be on time.",
    }
    payload = {
        "question": "Capture -> response ready / first sample pushed to LSL: per stage, per backend, inside the "
                    "real pipeline.",
        "model": desc,
        "config": {"backend": backend, "device": device, "duration_s": duration, "event_rate_hz": event_rate,
                   "srate": srate, "lookahead_s": lookahead, "chunk_ms": chunk_ms, "fps": fps,
                   "refresh_hz": refresh_hz, "source": "video" if video else "demo", "threads": threads,
                   "torch_threads": torch.get_num_threads(),
                   "montage": mdl.montage.name, "n_channels": mdl.montage.n_channels},
        "floor": floor,
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "results": results,
        "summary": {label: {"ready_p50_ms": r["glass_to_lsl_ms"]["ready"].get("p50"),
                            "ready_p99_ms": r["glass_to_lsl_ms"]["ready"].get("p99"),
                            "emitted_p50_ms": r["glass_to_lsl_ms"]["emitted"].get("p50"),
                            "emitted_p99_ms": r["glass_to_lsl_ms"]["emitted"].get("p99"),
                            "inference_p99_ms": r["stages_ms"].get("inference", {}).get("p99"),
                            "late": r["counters"]["late"]}
                    for label, r in results.items() if "error" not in r},
    }
    path = None
    if write:
        if plot and raw:
            panels = {name: {label: smp[name] for label, smp in raw.items() if name in smp}
                      for name in ("capture", "preprocess", "inference", "synth_add", "ready", "emitted")}
            png = save_histograms(result_path(NAME, out_dir=out_dir, suffix=".png"), panels,
                                  title=f"vibe-rt latency inside the pipeline ({desc}; lookahead "
                                        f"{lookahead * 1e3:g} ms)", marks={"lookahead": lookahead * 1e3})
            payload["plot"] = png.name
        path = write_result(NAME, payload, out_dir=out_dir)
    return payload, path
