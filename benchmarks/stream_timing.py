"""Streaming timing: vibe-rt's outlet loop vs MNE-LSL's PlayerLSL, same data shape, same run.

Question: does the vibe-rt signal stream keep its nominal rate and regular timestamps, push on time, and cost
little CPU, compared with MNE-LSL's ``PlayerLSL`` streaming the same shape of data?

Each streamer runs alone in its own process (one after the other, so they do not compete for the CPU), while a
real pylsl inlet in a second process receives the stream. Reported per streamer:

- ``rate_error_pct``: (received samples - 1) / (last - first timestamp) vs the nominal rate, in %;
- ``latency_drift_ms_per_min``: slope of (arrival - timestamp) over the run: timestamps could be regular while
  the stream falls behind wall time (or runs ahead); this catches it;
- ``ts_regularity``: max and std of |diff(timestamps) - 1/srate| (s);
- ``receive_latency_ms``: arrival time at the inlet minus the sample's intended push time (its timestamp, plus
  the output delay for vibe-rt), p50/p99/max, after a 1 s warm-up;
- ``push_lag_ms`` (vibe-rt only): push wall time minus the intended push time, from the outlet thread;
- ``cpu_pct``: CPU time of the streaming process / wall time (and, for vibe-rt, of the outlet thread alone),
  in % of one core. vibe-rt's loop also generates the background activity (``BackgroundNoise``, 64 channels).

Targets: rate error < 0.01 %, push lag p99 < 5 ms, outlet loop < 10 % of one core.

Usage::

    python benchmarks/stream_timing.py --duration 30
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _lsl_link_scope() -> None:
    cfg = Path("/tmp/vibe-rt-bench-lsl.cfg")
    cfg.write_text("[multicast]\nResolveScope = link\n[log]\nlevel = -2\n")
    os.environ.setdefault("LSLAPICFG", str(cfg))


def _montage(n_channels: int):
    import mne

    from vibe_rt.montage import make_montage

    names = mne.channels.make_standard_montage("biosemi64").ch_names[:n_channels]
    return make_montage("biosemi64", names, sfreq=100.0, tmin=-0.2, n_times=100, name=f"bench{n_channels}")


def receiver(source_id: str, duration: float, srate: float, delay: float, out: mp.Queue) -> None:
    """Receive a stream for ``duration`` s; put timing statistics into ``out``."""
    _lsl_link_scope()
    import pylsl

    infos = pylsl.resolve_byprop("source_id", source_id, timeout=20)
    if not infos:
        out.put({"error": f"stream {source_id} not found"})
        return
    inlet = pylsl.StreamInlet(infos[0], max_buflen=60, max_chunklen=0, recover=False)
    inlet.open_stream(timeout=10)
    stamps, arrivals = [], []
    t_first = None
    end = time.monotonic() + duration
    while time.monotonic() < end:
        # block for the first sample only (pull_chunk with a timeout waits for a full chunk), then take the rest
        _, t1 = inlet.pull_sample(timeout=0.1)
        if t1 is None:
            continue
        _, ts = inlet.pull_chunk(timeout=0.0, max_samples=int(srate))
        now = pylsl.local_clock()
        if t_first is None:
            t_first = now
        stamps.append(t1)
        stamps.extend(ts)
        arrivals.extend([now] * (len(ts) + 1))
    ts = np.array(stamps)
    arr = np.array(arrivals)
    n = len(ts)
    if n < 2:
        out.put({"error": "no samples received"})
        return
    warm = ts >= ts[0] + 1.0
    lat = (arr - ts - delay)[warm] * 1e3
    d = np.abs(np.diff(ts) - 1 / srate)
    # does the stream keep up with wall time? the latency must not grow: slope of latency vs time
    slope = np.polyfit(ts[warm] - ts[0], (arr - ts)[warm], 1)[0]
    out.put({
        "n_received": int(n),
        "rate_measured_hz": float((n - 1) / (ts[-1] - ts[0])),
        "rate_error_pct": float(((n - 1) / (ts[-1] - ts[0]) - srate) / srate * 100),
        "latency_drift_ms_per_min": float(slope * 60e3),
        "ts_regularity": {"max_abs_dev_s": float(d.max()), "std_s": float(np.diff(ts).std())},
        "gaps": int((np.diff(ts) > 1.5 / srate).sum()),
        "receive_latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                               "max": float(lat.max())},
    })


def run_vibe(source_id: str, duration: float, n_channels: int, srate: float, chunk_ms: float, lookahead: float,
             out: mp.Queue) -> None:
    """Stream background activity with vibe-rt's pipeline (no model) for ``duration`` s."""
    _lsl_link_scope()
    from vibe_rt.stream import StreamPipeline
    from vibe_rt.stream.stats import RollingWindow

    pipe = StreamPipeline(None, montage=_montage(n_channels), srate=srate, lookahead=lookahead,
                          source_id=source_id, chunk_s=chunk_ms / 1000, seed=0)
    pipe.stats.timings["push_lag"] = RollingWindow(10**7)
    pipe.stats.timings["push"] = RollingWindow(10**7)
    cpu0, t0 = time.process_time(), time.monotonic()
    pipe.start()
    time.sleep(duration)
    snap = pipe.status()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    pipe.stop()
    lag = pipe.stats.timings["push_lag"].percentiles((50, 99))
    out.put({
        "effective_srate_hz": snap["effective_srate"],
        "push_lag_ms": {"p50": lag[0] * 1e3, "p99": lag[1] * 1e3, "max": pipe.stats.timings["push_lag"].max() * 1e3},
        "push_call_ms": {"p50": snap["push_ms"]["p50"], "p99": snap["push_ms"]["p99"]},
        "outlet_thread_cpu_pct": snap["outlet_cpu_s"] / snap["uptime_s"] * 100,
        "process_cpu_pct": cpu / wall * 100,
        "samples_pushed": snap["samples_pushed"],
        "chunk_samples": pipe.chunk,
        "background": type(pipe.synth.background).__name__,
    })


def run_player(source_id: str, duration: float, n_channels: int, srate: float, chunk_ms: float, out: mp.Queue) -> None:
    """Stream the same shape of data with MNE-LSL's PlayerLSL for ``duration`` s."""
    _lsl_link_scope()
    import mne
    from mne_lsl.player import PlayerLSL

    rng = np.random.default_rng(0)
    info = mne.create_info([f"EEG{i:03d}" for i in range(n_channels)], srate, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((n_channels, int(60 * srate))) * 1e-5, info, verbose="error")
    chunk = max(1, int(round(chunk_ms * srate / 1000)))
    player = PlayerLSL(raw, chunk_size=chunk, name="bench-player", source_id=source_id)
    cpu0, t0 = time.process_time(), time.monotonic()
    player.start()
    time.sleep(duration)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    player.stop()
    out.put({"process_cpu_pct": cpu / wall * 100, "chunk_samples": chunk})


def _phase(name: str, target, args: tuple, source_id: str, duration: float, srate: float, delay: float) -> dict:
    ctx = mp.get_context("spawn")
    q_stream, q_recv = ctx.Queue(), ctx.Queue()
    streamer = ctx.Process(target=target, args=(*args, q_stream), name=f"{name}-streamer")
    streamer.start()
    recv = ctx.Process(target=receiver, args=(source_id, duration - 3.0, srate, delay, q_recv))
    time.sleep(1.5)  # let the outlet appear
    recv.start()
    result = {"streamer": q_stream.get(timeout=duration + 60), "receiver": q_recv.get(timeout=duration + 60)}
    streamer.join(30)
    recv.join(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per streamer (default 30)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--srate", type=float, default=1000.0)
    parser.add_argument("--chunk-ms", type=float, default=5.0)
    parser.add_argument("--lookahead", type=float, default=0.25)
    parser.add_argument("--skip-player", action="store_true", help="do not run MNE-LSL's PlayerLSL")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/stream_timing-<host>.json)")
    args = parser.parse_args()
    _lsl_link_scope()
    results = {
        "duration_s": args.duration, "channels": args.channels, "srate": args.srate, "chunk_ms": args.chunk_ms,
        "lookahead_s": args.lookahead, "load_average_before": list(os.getloadavg()),
        "targets": {"rate_error_pct": 0.01, "push_lag_p99_ms": 5.0, "outlet_cpu_pct": 10.0},
    }
    sid = f"bench-vibe-{uuid.uuid4().hex[:8]}"
    results["vibe_rt"] = _phase("vibe", run_vibe, (sid, args.duration, args.channels, args.srate, args.chunk_ms,
                                                   args.lookahead), sid, args.duration, args.srate, args.lookahead)
    if not args.skip_player:
        try:
            import mne_lsl

            results["mne_lsl_version"] = mne_lsl.__version__
            sid = f"bench-player-{uuid.uuid4().hex[:8]}"
            results["mne_lsl_player"] = _phase("player", run_player, (sid, args.duration, args.channels, args.srate,
                                                                      args.chunk_ms), sid, args.duration,
                                               args.srate, 0.0)
        except ImportError:
            results["mne_lsl_player"] = {"error": "mne-lsl not installed"}
    results["load_average_after"] = list(os.getloadavg())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        out = args.out
    else:
        from _common import write_result

        out = write_result("stream_timing", results)
    print(json.dumps(results, indent=2))
    print(f"written to {out}")

if __name__ == "__main__":
    main()
