"""How precisely does a PsychoPy RSVP run stamp its onsets? Flip-to-marker offset, jitter, dropped frames.

Runs ``vibe_rt.experiment.run_rsvp`` (markers only, real LSL outlets and a real inlet on loopback) for about
``duration`` seconds of 5 Hz RSVP (100 ms on / 100 ms off, sequences of 20 with 1 s pauses) and reports:

- ``marker_vs_flip_s``: marker timestamp minus the flip time of the log (identity check: should be 0);
- ``push_delay_s``: LSL time when the marker had been pushed, minus the flip time (software latency from the
  flip returning to the marker being in the outlet);
- ``receive_delay_s``: LSL time when a loopback inlet received the marker, minus its timestamp;
- ``onset_error_s``: actual minus planned onset (whole frames after the sequence's first onset), and the
  within-sequence onset-to-onset error; ``dropped_frames`` (flip interval > 1.5 refresh periods);
- the PsychoPy-to-LSL clock offset, its bracketing uncertainty and its drift over the run.

Under Xvfb there is no vsync: ``run_rsvp`` paces flips by the clock at an emulated 60 Hz, so this measures
the logic and software latency (clock conversion, marker push, frame pacing under CPU load), not a monitor's
refresh timing or the photon latency. On a real display with vsync use ``pacing="vsync"`` and a photodiode for
the latter. Without ``DISPLAY`` the run starts its own Xvfb.

With ``synth`` the run drives the synthesized stream (embedded model on ONNX Runtime, 1000 Hz), whose marker
stream is then the one received: the same questions under inference load.

Writes ``<out>/experiment_timing-<machine>.json`` (``experiment_timing_synth-...`` with ``synth``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._logs import logger
from ..errors import MissingDependencyError
from .common import percentiles, write_result

if TYPE_CHECKING:
    from ..experiment import MarkerOutlets
    from ..stream import StreamPipeline

NAME = "experiment_timing"


def _start_xvfb() -> subprocess.Popen | None:
    """Start Xvfb on a free display when DISPLAY is not set (returns the process, or None if not needed)."""
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise MissingDependencyError("no DISPLAY and no Xvfb: apt-get install xvfb libgl1 libglu1-mesa, or run on a "
                                     "desktop")
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    num = b""
    while not num.endswith(b"\n"):
        chunk = os.read(r, 16)
        if not chunk:
            break
        num += chunk
    os.close(r)
    if not num.strip().isdigit():
        proc.terminate()
        raise MissingDependencyError(f"Xvfb did not start (exit code {proc.poll()}); set DISPLAY to a running X "
                                     "server")
    os.environ["DISPLAY"] = f":{int(num)}"
    return proc


def _images(folder: Path, n: int) -> list[Path]:
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def run(*, duration: float = 120.0, pacing: str = "auto", size: tuple[int, int] = (800, 600), synth: bool = False,
        out_dir: str | Path | None = None, write: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Run an RSVP of about ``duration`` seconds and measure its onset and marker timing.

    Parameters
    ----------
    duration : float
        Approximate run length in seconds (sequences of 20 images at 5 Hz with 1 s pauses).
    pacing : {"auto", "vsync", "clock"}
        Frame pacing of :func:`vibe_rt.experiment.run_rsvp`.
    size : (int, int)
        Window size in pixels (width, height).
    synth : bool
        Drive the synthesized stream too (embedded model, ONNX Runtime, 1000 Hz): the markers then come from
        the stream, under inference load.
    """
    xvfb = _start_xvfb()
    try:
        import pylsl

        from ..experiment import MarkerOutlets, RsvpConfig, read_log, run_rsvp
        from ..experiment.markers import unique_source_id

        cfg = RsvpConfig(on_s=0.1, off_s=0.1, sequence_length=20, pause_s=1.0, seed=0, target_prob=0.0)
        per_seq = cfg.sequence_length * (cfg.on_s + cfg.off_s) + cfg.pause_s
        n_trials = int(round(duration / per_seq)) * cfg.sequence_length
        n_images = 40
        reps = max(1, int(np.ceil(n_trials / n_images)))
        cfg = RsvpConfig(**{**cfg.to_dict(), "repetitions": reps, "response_window": tuple(cfg.response_window)})
        sid = unique_source_id("vibe-rt-bench")
        outlets: StreamPipeline | MarkerOutlets
        if synth:
            from ..data.noise import BackgroundNoise
            from ..runtime.predictor import create_predictor
            from ..stream import OutputSpec, StreamPipeline

            predictor = create_predictor(backend="onnxruntime")
            outlets = StreamPipeline(predictor,
                                     output=OutputSpec(srate=1000.0, lookahead=0.25, name="bench", source_id=sid),
                                     background=BackgroundNoise(predictor.montage, 1000.0, seed=0)).start()
        else:
            outlets = MarkerOutlets("bench", sid)
        info = pylsl.resolve_byprop("source_id", f"{sid}-markers", timeout=10)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=600)
        inlet.open_stream(timeout=10)
        received: list[tuple[float, float]] = []  # (marker timestamp, local_clock at receipt)
        stop = threading.Event()

        def pull() -> None:
            while not stop.is_set():
                sample, ts = inlet.pull_sample(timeout=0.1)
                if sample is not None:
                    received.append((ts, pylsl.local_clock()))

        thread = threading.Thread(target=pull, daemon=True)
        thread.start()
        with tempfile.TemporaryDirectory() as tmp:
            images = _images(Path(tmp), n_images)
            log_path = Path(tmp) / "log.tsv"
            t0 = time.perf_counter()
            result = run_rsvp(images, cfg, sink=outlets, size=size, pacing=pacing, log_path=log_path)
            wall = time.perf_counter() - t0
            time.sleep(0.5 + (0.5 if synth else 0.0))  # the stream's markers follow the lookahead
            stop.set()
            thread.join(2)
            header, rows = read_log(log_path)
        stream_status = None
        if isinstance(outlets, MarkerOutlets):
            outlets.close()
        else:
            stream_status = outlets.status()
            outlets.stop()
        rows = [r for r in rows if r["marker"] in ("stim", "target")]
        onsets = np.array([r["actual_onset_lsl"] for r in rows])
        marker_ts = np.array([t for t, _ in received])
        recv_delay = np.array([rt - t for t, rt in received])
        n = min(len(marker_ts), len(onsets))
        seq = np.array([r["sequence"] for r in rows])
        soa_planned = (result.timing.on_frames + result.timing.off_frames) / result.timing.refresh_hz
        same = seq[1:] == seq[:-1]
        soa_err = np.diff(onsets)[same] - soa_planned
        summary = result.to_dict()
        payload = {
            "note": ("Xvfb, no vsync: flips paced by the clock at an emulated refresh; measures logic and software "
                     "latency, not display timing") if result.pacing == "clock" else "display with vsync",
            "display": os.environ.get("DISPLAY"), "gl_renderer": header.get("gl_renderer"),
            "pacing": result.pacing, "refresh_hz": result.timing.refresh_hz,
            "on_frames": result.timing.on_frames, "off_frames": result.timing.off_frames,
            "duration_s": wall, "presentation_span_s": float(onsets[-1] - onsets[0]) if onsets.size else 0.0,
            "n_trials": result.n_trials, "n_presented": result.n_presented,
            "n_markers_received": len(received),
            "dropped_frames": result.n_dropped, "dropped_frames_psychopy": result.n_dropped_psychopy,
            "trials_with_drops": int(sum(1 for r in rows if r["dropped"])),
            "marker_vs_flip_ms": percentiles(np.abs(marker_ts[:n] - onsets[:n]), 1e3),
            "push_delay_ms": percentiles(result.push_delay, 1e3),
            "receive_delay_ms": percentiles(recv_delay[20:], 1e3),  # skip the inlet's connection warm-up
            "onset_error_ms": percentiles(result.onset_error, 1e3),
            "soa_error_ms": percentiles(soa_err, 1e3),
            "flip_interval_ms": percentiles([r["flip_interval"] for r in rows if r["flip_interval"] is not None],
                                            1e3),
            "on_duration_ms": percentiles([r["on_duration"] for r in rows], 1e3),
            "clock_offset_s": summary["clock_offset_s"],
            "clock_offset_uncertainty_us": 1e6 * summary["clock_offset_uncertainty_s"],
            "clock_drift_us": None if summary["clock_drift_s"] is None else 1e6 * summary["clock_drift_s"],
            "load_average": list(os.getloadavg()),
            "synthesized_stream": None if stream_status is None else {
                k: stream_status.get(k) for k in ("events", "late", "late_dropped", "overload_dropped",
                                                  "nonfinite_dropped", "onset_to_ready_ms", "effective_srate")},
        }
        payload["summary"] = {"presented": result.n_presented, "markers_received": len(received),
                              "dropped_frames": result.n_dropped,
                              **{f"{key}_p99": payload[f"{key}_ms"].get("p99")
                                 for key in ("push_delay", "receive_delay", "onset_error")}}
        path = write_result(f"{NAME}_synth" if synth else NAME, payload, out_dir=out_dir) if write else None
        logger.info("%d onsets in %.0f s (%s pacing at %g Hz); markers received %d; dropped frames %d; push delay "
                    "p99 %.3f ms; onset error p99 %.3f ms", result.n_presented, wall, result.pacing,
                    result.timing.refresh_hz, len(received), result.n_dropped,
                    payload["push_delay_ms"].get("p99", float("nan")),
                    payload["onset_error_ms"].get("p99", float("nan")))
        return payload, path
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
            os.environ.pop("DISPLAY", None)


