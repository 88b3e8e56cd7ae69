"""Stream timing: vibe-rt's outlet loop vs MNE-LSL's ``PlayerLSL``, same channels and rate, received by a real
LSL inlet in a second process.

Question: does the vibe-rt signal stream keep its nominal rate and regular timestamps, push on time, stay in step
with wall time over a long run, and cost little CPU, compared with MNE-LSL's ``PlayerLSL`` streaming the same
shape of data?

Each streamer runs alone in its own process (one after the other, so that they do not compete for the CPU),
while a pylsl inlet in another process receives its stream. Reported per streamer (``receiver``):

- ``rate_error_pct``: (received samples - 1) / (last - first timestamp) vs the nominal rate, in %: lost or
  duplicated samples show here (timestamps themselves are ``t0 + n / srate`` by construction for vibe-rt);
- ``wall_rate_error_pct``: the rate at which samples arrive, measured on the receiver's clock, vs the nominal
  rate, in % (from the drift below: ``-drift``); the number that says the stream keeps time with the world;
- ``ts_regularity``: max |diff(timestamps) - 1/srate| and the std of the differences (s); ``gaps``: steps
  longer than 1.5 sample periods;
- ``receive_latency_ms``: arrival time at the inlet minus the sample's intended push time (its timestamp plus
  the output delay for vibe-rt; the timestamp for PlayerLSL), percentiles after a 1 s warm-up (liblsl delivers
  the first samples after a connect late);
- ``latency_drift_ms_per_min``: slope of (arrival - timestamp) over the run: timestamps could be regular while
  the stream falls behind wall time (or runs ahead); this catches it;
- ``series``: per-second median and max of the receive latency and the samples received per second, for the
  timing-error-over-time plot.

For vibe-rt also (``streamer``): ``push_lag_ms`` (push wall time minus the intended push time of a chunk's last
sample, from the outlet thread), ``push_call_ms``, ``effective_srate_hz`` and CPU use of the outlet thread and
of the whole process (% of one core; the loop also generates the 1/f + alpha background of every channel).

With ``artifacts`` (e.g. ``realistic``, :mod:`vibe_rt.stream.artifacts`) the vibe-rt streamer injects them too
(their topographies from :mod:`vibe_rt.data.artifacts`), and runs a second time without them on the same shape
(``vibe_rt_plain``), so that their cost shows; the result is ``stream_artifacts-<machine>.json``.

Targets: rate error < 0.01 % (both), push lag p99 < 5 ms, outlet loop < 10 % of one core.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from .common import load_average, percentiles, result_path, write_result

NAME = "stream"
NAME_ARTIFACTS = "stream_artifacts"
TARGETS = {"rate_error_pct": 0.01, "push_lag_p99_ms": 5.0, "outlet_cpu_pct": 10.0}
_WARMUP_S = 1.0


def bench_montage(n_channels: int):
    """The first ``n_channels`` BioSemi-64 channels as a montage (BioSemi-128 above 64 channels; model rate 100 Hz;
    no model is run)."""
    import mne

    from ..montage import make_montage

    cap = "biosemi64" if n_channels <= 64 else "biosemi128"
    names = mne.channels.make_standard_montage(cap).ch_names
    if not 1 <= n_channels <= len(names):
        raise ConfigError(f"--channels must be 1..{len(names)}, got {n_channels}")
    return make_montage(cap, names[:n_channels], sfreq=100.0, tmin=-0.2, n_times=100, name=f"bench{n_channels}")


def analyse_received(stamps: np.ndarray, arrivals: np.ndarray, srate: float, delay: float) -> dict[str, Any]:
    """Timing statistics of a received regular stream.

    Parameters
    ----------
    stamps, arrivals : ndarray
        Sample timestamps and the LSL-clock times the inlet received them (s).
    srate : float
        Nominal rate (Hz).
    delay : float
        Intended delay between a sample's timestamp and its push (the output delay), s.
    """
    ts, arr = np.asarray(stamps, float), np.asarray(arrivals, float)
    n = ts.size
    if n < 2:
        return {"error": "fewer than 2 samples received"}
    span = ts[-1] - ts[0]
    diffs = np.diff(ts)
    warm = ts >= ts[0] + _WARMUP_S
    if warm.sum() < 2:
        warm = np.ones(n, bool)
    lat = (arr - ts - delay)[warm]
    slope = np.polyfit(ts[warm] - ts[0], lat, 1)[0] if warm.sum() > 2 else float("nan")
    sec = np.floor(ts[warm] - ts[0]).astype(int)
    series: dict[str, list] = {"t_s": [], "latency_p50_ms": [], "latency_max_ms": [], "samples": []}
    for s in np.unique(sec):
        m = sec == s
        series["t_s"].append(int(s))
        series["latency_p50_ms"].append(round(float(np.median(lat[m])) * 1e3, 4))
        series["latency_max_ms"].append(round(float(lat[m].max()) * 1e3, 4))
        series["samples"].append(int(m.sum()))
    rate = (n - 1) / span
    return {
        "n_received": int(n),
        "duration_s": float(span),
        "rate_measured_hz": float(rate),
        "rate_error_pct": float((rate - srate) / srate * 100),
        "wall_rate_error_pct": float(-slope * 100),
        "latency_drift_ms_per_min": float(slope * 60e3),
        "ts_regularity": {"max_abs_dev_s": float(np.abs(diffs - 1 / srate).max()), "std_s": float(diffs.std())},
        "gaps": int((diffs > 1.5 / srate).sum()),
        "receive_latency_ms": percentiles(lat, 1e3),
        "series": series,
    }


def receiver(source_id: str, duration: float, srate: float, delay: float, out: Any) -> None:
    """Receive a stream for ``duration`` s after it connects; put :func:`analyse_received` into ``out``."""
    try:
        import pylsl

        infos = pylsl.resolve_byprop("source_id", source_id, timeout=30)
        if not infos:
            out.put({"error": f"stream {source_id} not found"})
            return
        inlet = pylsl.StreamInlet(infos[0], max_buflen=60, max_chunklen=0, recover=False)
        inlet.open_stream(timeout=10)
        stamps: list[float] = []
        arrivals: list[float] = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            # block for the first sample only (pull_chunk with a timeout waits for a full chunk), then take the rest
            _, t1 = inlet.pull_sample(timeout=0.1)
            if t1 is None:
                continue
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=max(1, int(srate)))
            now = pylsl.local_clock()
            stamps.append(t1)
            stamps.extend(ts)
            arrivals.extend([now] * (len(ts) + 1))
        inlet.close_stream()
        out.put(analyse_received(np.array(stamps), np.array(arrivals), srate, delay))
    except BaseException as err:  # reported in the result, never lost in a child process
        out.put({"error": f"{type(err).__name__}: {err}"})


def stream_vibe(source_id: str, n_channels: int, srate: float, chunk_ms: float, lookahead: float,
                max_duration: float, stop: Any, out: Any, artifacts: str | None = None) -> None:
    """Stream background activity (and ``artifacts``) with vibe-rt's pipeline (no model) until ``stop`` is set."""
    try:
        from ..data.artifacts import artifact_topographies
        from ..data.noise import BackgroundNoise
        from ..stream import OutputSpec, StreamPipeline, SynthSpec
        from ..stream.artifacts import parse_artifacts

        window = int(max_duration * 1000 / chunk_ms * 1.5) + 1000
        montage = bench_montage(n_channels)
        specs = parse_artifacts(artifacts)
        pipe = StreamPipeline(None, montage=montage,
                              output=OutputSpec(srate=srate, lookahead=lookahead, source_id=source_id,
                                                name="vibe-rt-bench", chunk_s=chunk_ms / 1000),
                              synth=SynthSpec(seed=0, artifacts=specs),
                              artifact_topographies=artifact_topographies(montage) if specs else None,
                              background=BackgroundNoise(montage, srate, seed=0), stats_window=window)
        cpu0, t0 = time.process_time(), time.monotonic()
        pipe.start()
        stop.wait(max_duration)
        snap = pipe.status()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        lag = pipe.stats.samples("push_lag")
        push = pipe.stats.samples("push")
        pipe.stop()
        out.put({
            "effective_srate_hz": snap["effective_srate"],
            "push_lag_ms": percentiles(lag, 1e3),
            "push_call_ms": percentiles(push, 1e3),
            "outlet_thread_cpu_pct": snap["outlet_cpu_s"] / snap["uptime_s"] * 100,
            "process_cpu_pct": cpu / wall * 100,
            "samples_pushed": snap["samples_pushed"],
            "chunk_samples": pipe.chunk,
            "background": type(getattr(pipe.synth.background, "background", pipe.synth.background)).__name__,
            "artifacts": snap.get("artifacts", {}),
        })
    except BaseException as err:
        out.put({"error": f"{type(err).__name__}: {err}"})


def stream_player(source_id: str, n_channels: int, srate: float, chunk_ms: float, lookahead: float,
                  max_duration: float, stop: Any, out: Any) -> None:
    """Stream the same shape of data (noise) with MNE-LSL's PlayerLSL until ``stop`` is set.

    The recording is longer than the run, so that the player never loops: with a recording shorter than the run
    (``n_repeat > 1``), mne-lsl 1.14's PlayerLSL delivered 1.8-2x the nominal sample count to the inlet after the
    first wrap, with timestamps jumping back by exactly the recording length (measured here; not what this
    benchmark is about, so it is avoided).
    """
    try:
        import mne
        from mne_lsl.player import PlayerLSL

        rng = np.random.default_rng(0)
        names = bench_montage(n_channels).ch_names
        info = mne.create_info(list(names), srate, "eeg")
        n_times = int((max_duration + 10) * srate)
        raw = mne.io.RawArray(rng.standard_normal((n_channels, n_times), dtype=np.float32) * 1e-5, info,
                              verbose="error")
        chunk = max(1, int(round(chunk_ms * srate / 1000)))
        player = PlayerLSL(raw, chunk_size=chunk, n_repeat=1, name="mne-lsl-bench", source_id=source_id)
        cpu0, t0 = time.process_time(), time.monotonic()
        player.start()
        stop.wait(max_duration)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        player.stop()
        out.put({"process_cpu_pct": cpu / wall * 100, "chunk_samples": chunk, "recording_s": n_times / srate,
                 "n_repeat": 1})
    except BaseException as err:
        out.put({"error": f"{type(err).__name__}: {err}"})


def _phase(label: str, target: Any, source_id: str, duration: float, n_channels: int, srate: float,
           chunk_ms: float, lookahead: float, delay: float, **streamer_kw: Any) -> dict[str, Any]:
    """One streamer process and one receiver process; the receiver measures ``duration`` s once connected
    (``streamer_kw``: more keyword arguments of the streamer)."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    q_stream, q_recv = ctx.Queue(), ctx.Queue()
    max_duration = duration + 90.0  # the streamer never outlives a stuck receiver by much
    streamer = ctx.Process(target=target, args=(source_id, n_channels, srate, chunk_ms, lookahead, max_duration,
                                                stop, q_stream), kwargs=streamer_kw, name=f"vibe-rt-bench-{label}",
                          daemon=True)
    recv = ctx.Process(target=receiver, args=(source_id, duration, srate, delay, q_recv),
                       name=f"vibe-rt-bench-{label}-inlet", daemon=True)
    streamer.start()
    recv.start()
    try:
        received = q_recv.get(timeout=duration + 120)
    except Exception:  # queue.Empty
        received = {"error": "the receiver did not report"}
    stop.set()
    try:
        streamed = q_stream.get(timeout=60)
    except Exception:
        streamed = {"error": "the streamer did not report"}
    for proc in (recv, streamer):
        proc.join(15)
        if proc.is_alive():
            proc.terminate()
    return {"streamer": streamed, "receiver": received}


def plot_series(path: Path, results: dict[str, Any], srate: float) -> Path | None:
    """Timing error over time: per-second median/max receive latency and received rate, per streamer."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    drawn = False
    for i, key in enumerate(("vibe_rt", "mne_lsl_player", "vibe_rt_plain")):
        series = results.get(key, {}).get("receiver", {}).get("series")
        if not series or not series["t_s"]:
            continue
        drawn = True
        n = len(series["t_s"])
        if n > 1 and series["samples"][-1] < 0.9 * srate:
            n -= 1  # the last second is cut short by the end of the run, not by the stream
        t = np.asarray(series["t_s"][:n])
        ax1.plot(t, series["latency_p50_ms"][:n], color=f"C{i}", label=f"{key} median")
        ax1.plot(t, series["latency_max_ms"][:n], color=f"C{i}", alpha=0.4, lw=0.8, label=f"{key} max")
        ax2.plot(t, np.asarray(series["samples"][:n]) - srate, color=f"C{i}", label=key)
    if not drawn:
        plt.close(fig)
        return None
    ax1.set_ylabel("arrival - intended push (ms)")
    ax1.set_title("Receive latency per second (timing error over time)")
    ax1.legend(fontsize=7)
    ax2.set_ylabel("samples/s - nominal")
    ax2.set_xlabel("time since the inlet connected (s)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(*, duration: float = 60.0, channels: int = 64, srate: float = 1000.0, chunk_ms: float = 5.0,
        lookahead: float = 0.25, peer: bool = True, artifacts: str | None = None,
        out_dir: str | Path | None = None, write: bool = True,
        plot: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Run the stream-timing benchmark (vibe-rt, then MNE-LSL's PlayerLSL as the peer).

    Parameters
    ----------
    duration : float
        Seconds each receiver measures (plus a few seconds of start-up per streamer).
    channels, srate, chunk_ms, lookahead : int, float, float, float
        Stream shape: channels, rate (Hz), push interval (ms), vibe-rt's output delay (s).
    peer : bool
        Also stream with MNE-LSL's ``PlayerLSL`` (skipped with a note when mne-lsl is not installed).
    artifacts : str | None
        ``--artifacts`` list injected by vibe-rt (then also a run without them; see the module docstring).
    out_dir : path-like | None
        Result folder (default :func:`~vibe_rt.bench.common.default_out_dir`).
    write, plot : bool
        Write the JSON (and the PNG).

    Returns
    -------
    results : dict
        The payload (see the module docstring).
    path : Path | None
        The written JSON.
    """
    if duration < 2:
        raise ConfigError(f"--duration must be at least 2 s for the stream benchmark, got {duration}")
    from ..stream.artifacts import format_artifacts, parse_artifacts

    specs = parse_artifacts(artifacts)
    name = NAME_ARTIFACTS if specs else NAME
    bench_montage(channels)  # --channels checked before any process starts
    results: dict[str, Any] = {
        "question": "Does the vibe-rt stream keep its nominal rate, regular timestamps and push on time, "
                    "compared with MNE-LSL's PlayerLSL, as received by an LSL inlet in another process?",
        "config": {"duration_s": duration, "channels": channels, "srate": srate, "chunk_ms": chunk_ms,
                   "lookahead_s": lookahead, "warmup_excluded_s": _WARMUP_S,
                   **({"artifacts": format_artifacts(specs), "artifacts_given": artifacts} if specs else {})},
        "load_average_before": load_average(),
        "targets": TARGETS,
    }
    sid = f"vibe-rt-bench-{uuid.uuid4().hex[:8]}"
    logger.info("stream benchmark: vibe-rt, %d ch at %g Hz for %g s", channels, srate, duration)
    results["vibe_rt"] = _phase("vibe", stream_vibe, sid, duration, channels, srate, chunk_ms, lookahead,
                                lookahead, artifacts=artifacts)
    if specs:
        logger.info("stream benchmark: vibe-rt without artifacts, same shape")
        results["vibe_rt_plain"] = _phase("vibe-plain", stream_vibe, f"{sid}-plain", duration, channels, srate,
                                          chunk_ms, lookahead, lookahead)
    if peer:
        try:
            import mne_lsl
        except ImportError:
            results["mne_lsl_player"] = {"error": "mne-lsl is not installed (pip install 'vibe-rt[replay]')"}
        else:
            results["mne_lsl_version"] = mne_lsl.__version__
            sid = f"vibe-rt-bench-player-{uuid.uuid4().hex[:8]}"
            logger.info("stream benchmark: MNE-LSL PlayerLSL for %g s", duration)
            results["mne_lsl_player"] = _phase("player", stream_player, sid, duration, channels, srate, chunk_ms,
                                               lookahead, 0.0)
    results["load_average_after"] = load_average()
    rec = results["vibe_rt"]["receiver"]
    strm = results["vibe_rt"]["streamer"]
    if "error" not in rec and "error" not in strm:
        results["summary"] = {
            "rate_error_pct": rec["rate_error_pct"], "wall_rate_error_pct": rec["wall_rate_error_pct"],
            "receive_latency_p99_ms": rec["receive_latency_ms"]["p99"],
            "drift_ms_per_min": rec["latency_drift_ms_per_min"], "push_lag_p99_ms": strm["push_lag_ms"]["p99"],
            "outlet_cpu_pct": strm["outlet_thread_cpu_pct"],
            "meets_targets": bool(abs(rec["rate_error_pct"]) < TARGETS["rate_error_pct"]
                                  and abs(rec["wall_rate_error_pct"]) < TARGETS["rate_error_pct"]
                                  and strm["push_lag_ms"]["p99"] < TARGETS["push_lag_p99_ms"]
                                  and strm["outlet_thread_cpu_pct"] < TARGETS["outlet_cpu_pct"]),
        }
    path = None
    if write:
        if plot:
            png = plot_series(result_path(name, out_dir=out_dir, suffix=".png"), results, srate)
            results["plot"] = png.name if png is not None else None
        path = write_result(name, results, out_dir=out_dir)
    return results, path
