"""Artifacts as a consumer sees them: 5 s of a 64-channel stream with every artifact, received by an LSL inlet.

Question: do the injected artifacts (:mod:`vibe_rt.stream.artifacts`) reach a consumer as documented, each with
its marker? The real pipeline and outlet stream BioSemi-64 channels with the 1/f + alpha background
(:class:`vibe_rt.data.noise.BackgroundNoise`) and every artifact kind, at rates raised above the ``realistic``
mix so that each shows within 5 s (:data:`ARTIFACTS`); pylsl inlets in this process receive the signal and the
marker stream for 7.5 s. Seeded (:data:`SEED`, chosen so that every kind falls inside the drawn window), so the
artifacts and the background are the same on every run.

Writes ``artifacts-<machine>.png`` (the README's picture: 5 s of the received channels, each artifact shaded on the
channels its marker names while it lasts) and ``artifacts-<machine>.json``: the markers received per kind, and
per blink the received peak of the Fp1/Fp2 mean above its pre-blink level against the marker's amplitude
(background included, so within some uV, not exact; the exact checks are in ``tests/test_stream_artifacts.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import result_path, write_result

NAME = "artifacts"
ARTIFACTS = "blinks:20/min,saccades:40/min,emg:12/min,drift:6/min,pops:12/min,bad-channel:flat@P10,line:50"
SEED, SRATE, WINDOW = 39, 512.0, (1.0, 6.0)  # stream seconds drawn
COLOURS = {"blink": "C0", "saccade": "C1", "emg": "C3", "drift": "C2", "pop": "C4"}
_SOURCE_ID = "vibe-rt-bench-artifacts"


def record(seconds: float = 7.5) -> tuple[np.ndarray, np.ndarray, float, list[str], list[dict[str, Any]]]:
    """Stream and receive: (data (n, 64) uV, stamps, t0, channel names, JSON markers)."""
    import pylsl

    from ..data.artifacts import artifact_topographies
    from ..data.noise import BackgroundNoise
    from ..montage import get_montage
    from ..stream import OutputSpec, StreamPipeline, SynthSpec
    from ..stream.artifacts import parse_artifacts

    montage = get_montage("biosemi64")
    # a 1.5 s lookahead: the inlets connect before the first sample, which carries the whole-stream markers
    pipe = StreamPipeline(None, montage=montage, background=BackgroundNoise(montage, SRATE, seed=SEED),
                          output=OutputSpec(srate=SRATE, lookahead=1.5, source_id=_SOURCE_ID),
                          synth=SynthSpec(seed=SEED, artifacts=parse_artifacts(ARTIFACTS)),
                          artifact_topographies=artifact_topographies(montage))
    data: list = []
    stamps: list = []
    markers: list[dict[str, Any]] = []
    with pipe:
        inlets = []
        for suffix in ("", "-markers"):
            inlet = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", _SOURCE_ID + suffix, timeout=5)[0],
                                      max_buflen=30)
            inlet.open_stream(timeout=5)
            inlets.append(inlet)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            d, ts = inlets[0].pull_chunk(timeout=0.05)
            data.extend(d)
            stamps.extend(ts)
            m, _ = inlets[1].pull_chunk(timeout=0.0)
            markers.extend(json.loads(v[0]) for v in m)
        assert pipe.sample_clock is not None  # set by start()
        t0 = pipe.sample_clock.t0
    return np.array(data), np.array(stamps), t0, list(montage.ch_names), markers


def blink_peaks(x: np.ndarray, t: np.ndarray, names: list[str], markers: list[dict]) -> list[dict[str, float]]:
    """Per blink inside the data: the marker's amplitude and the received Fp1/Fp2 peak above the mean of the
    100 ms before the blink (uV)."""
    fp = x[:, [names.index("Fp1"), names.index("Fp2")]].mean(axis=1)
    out = []
    for m in markers:
        if m.get("artifact") != "blink":
            continue
        inside, before = (t >= m["onset"]) & (t <= m["onset"] + m["duration"]), (t >= m["onset"] - 0.1) & (
            t < m["onset"])
        if inside.sum() > 0.9 * m["duration"] * SRATE and before.any():
            out.append({"marker_uV": m["amplitude_uV"], "received_uV": round(float(fp[inside].max()
                                                                                 - fp[before].mean()), 2)})
    return out


def draw(path: Path, x: np.ndarray, t: np.ndarray, names: list[str], markers: list[dict]) -> Path:
    """The figure of the window :data:`WINDOW` (stream seconds ``t``) into ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    keep = (t >= WINDOW[0]) & (t < WINDOW[1])
    x, t = x[keep] - np.median(x[keep], axis=0), t[keep]  # each trace centred (saccades leave DC steps)
    spacing = 60.0
    fig, ax = plt.subplots(figsize=(11, 13))
    for i in range(len(names)):
        ax.plot(t, x[:, i] - i * spacing, lw=0.5, color="k")
    seen = set()
    for m in markers:  # shaded on the channels it reaches (10 % of its peak) while it lasts
        kind = m.get("artifact")
        if kind not in COLOURS or m.get("duration") is None:
            continue
        a, b = max(m["onset"], WINDOW[0]), min(m["onset"] + m["duration"], WINDOW[1])
        for ch in (m.get("channels") or [m["channel"]]) if a < b else []:
            ax.add_patch(Rectangle((a, -(names.index(ch) + 0.5) * spacing), b - a, spacing, color=COLOURS[kind],
                                   alpha=0.3, lw=0, label=None if kind in seen else kind))
            seen.add(kind)
    flat = next((m["channel"] for m in markers if m.get("artifact") == "bad-channel"), None)
    ax.set_yticks([-i * spacing for i in range(len(names))])
    ax.set_yticklabels([f"{n} (flat)" if n == flat else n for n in names], fontsize=6)
    ax.set_xlim(*WINDOW)
    ax.set_ylim(-len(names) * spacing, 3 * spacing)
    ax.set_xlabel(f"stream time (s); traces {spacing:g} uV apart, each centred on its median")
    ax.set_title("vibe-rt stream as received by an LSL inlet: 64 BioSemi channels, 1/f + alpha background,\n"
                 f"--artifacts {ARTIFACTS} (seed {SEED}, {SRATE:g} Hz)", fontsize=9)
    ax.legend(loc="upper right", fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(*, out_dir: str | Path | None = None, write: bool = True) -> tuple[dict[str, Any], Path | None]:
    """Stream, receive, draw; returns the payload and the written JSON path (None without ``write``)."""
    x, stamps, t0, names, markers = record()
    t = stamps - t0
    for m in markers:
        if "onset" in m:
            m["onset"] = m["onset"] - t0  # stream seconds
    counts: dict[str, int] = {}
    for m in markers:
        key = m.get("artifact")
        if key:
            counts[key] = counts.get(key, 0) + 1
    results: dict[str, Any] = {
        "question": "Do the injected artifacts reach an LSL inlet as documented, each with its marker?",
        "config": {"artifacts": ARTIFACTS, "seed": SEED, "srate": SRATE, "montage": "biosemi64",
                   "window_s": list(WINDOW), "received_s": round(float(t[-1] - t[0]), 3) if len(t) else 0.0},
        "markers_received": counts,
        "samples_received": int(len(t)),
        "finite": bool(np.all(np.isfinite(x))),
        "blinks": blink_peaks(x, t, names, markers),
    }
    results["summary"] = {"markers_received": counts, "finite": results["finite"],
                          "blink_received_over_marker": [round(b["received_uV"] / b["marker_uV"], 3)
                                                         for b in results["blinks"]]}
    path = None
    if write:
        results["plot"] = draw(result_path(NAME, out_dir=out_dir, suffix=".png"), x, t, names, markers).name
        path = write_result(NAME, results, out_dir=out_dir)
    return results, path
