"""Recording artifacts and device faults (``--artifacts``, ``--faults``), as real LSL inlets receive them: blink
amplitudes and topography, line-noise harmonics, a flat channel, clock drift on the receiver's clock, timestamp
jitter, freezes, dropped samples, an outlet restart, and a marker (and recording annotation) for every one."""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest

from vibe_rt import cli
from vibe_rt.data.artifacts import artifact_topographies
from vibe_rt.errors import ConfigError
from vibe_rt.montage import get_montage, make_montage
from vibe_rt.stream import OutputSpec, RecordSpec, StreamConfig, StreamPipeline, SynthSpec
from vibe_rt.stream.artifacts import REALISTIC, ArtifactInjector, Blinks, format_artifacts, parse_artifacts
from vibe_rt.stream.faults import format_faults, parse_faults

FRONTAL = ("Fp1", "Fp2", "Fz", "Cz", "Pz", "Oz", "F7", "F8", "T7", "T8")


def _montage():
    return make_montage("colin27_1020", FRONTAL, sfreq=100.0, tmin=-0.2, n_times=100, name="frontal-10")


def _pipeline(source_id, *, artifacts="", faults="", srate=500.0, lookahead=0.5, background=None, seed=7,
              record=None):
    montage = _montage()
    specs = parse_artifacts(artifacts) if artifacts else ()
    return StreamPipeline(None, montage=montage, background=background, record=record,
                          output=OutputSpec(srate=srate, lookahead=lookahead, source_id=source_id,
                                            faults=parse_faults(faults) if faults else ()),
                          synth=SynthSpec(seed=seed, artifacts=specs),
                          artifact_topographies=artifact_topographies(montage) if specs else None)


def _inlet(source_id, recover=False):
    infos = pylsl.resolve_byprop("source_id", source_id, timeout=5)
    assert infos, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(infos[0], max_buflen=60, recover=recover)
    inlet.open_stream(timeout=5)
    return inlet


def _receive(inlet, seconds, markers=None):
    """Samples, timestamps and arrival times (receiver's clock) for ``seconds``; JSON markers on the side."""
    data, stamps, arrivals, got = [], [], [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        d, ts = inlet.pull_chunk(timeout=0.02)
        if ts:
            now = pylsl.local_clock()
            data.extend(d)
            stamps.extend(ts)
            arrivals.extend([now] * len(ts))
        if markers is not None:
            m, _ = markers.pull_chunk(timeout=0.0)
            got.extend(json.loads(v[0]) for v in m)
    if markers is not None:
        time.sleep(0.2)
        m, _ = markers.pull_chunk(timeout=0.2)
        got.extend(json.loads(v[0]) for v in m)
    return np.array(data), np.array(stamps), np.array(arrivals), got


# parsing -------------------------------------------------------------------------------------------------------
def test_item_lists_parse_back_and_refuse_bad_items_in_one_line(capsys):
    specs = parse_artifacts("realistic,line:60,blinks:12/min,bad-channel:flat@Cz")
    assert parse_artifacts(format_artifacts(specs)) == specs and len(specs) == len(REALISTIC)
    assert Blinks(12.0) in specs and parse_artifacts("blinks:0.2/s") == (Blinks(12.0),)
    faults = parse_faults("drift:-50ppm,jitter:500us,freeze:2s@30s,drop:100ms@1/min,restart@40s")
    assert parse_faults(format_faults(faults)) == faults
    for flag, bad, fragment in [("--artifacts", "blinkz", "unknown artifact 'blinkz'"),
                                ("--artifacts", "blinks:1000/min", "at most 100/min"),
                                ("--artifacts", "line:55", "line:50 or line:60"),
                                ("--faults", "freeze:2s", "say when"),
                                ("--faults", "drift:5", "unit (ppm)"),
                                ("--faults", "jitter:2s", "at most 100ms"),
                                ("--faults", "teleport:1s@2s", "unknown fault 'teleport'")]:
        with pytest.raises(ConfigError, match="^" + flag):
            StreamConfig(**{flag[2:]: bad}).validate()
        try:
            rc = cli.main(["stream", flag, bad, "--duration", "1"])
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("vibe-rt: error: ")]
        assert rc == 2 and len(lines) == 1 and fragment in lines[0], err
    with pytest.raises(ConfigError, match="give one"):
        StreamConfig(line_noise=50, artifacts="line").validate()
    with pytest.raises(ConfigError, match="is MEG"):
        ArtifactInjector(parse_artifacts("pops"), get_montage("things-meg"), 1000.0)
    with pytest.raises(ConfigError, match="no such streamed channel"):
        ArtifactInjector(parse_artifacts("bad-channel@Xx"), _montage(), 1000.0)


def test_artifacts_are_seeded_and_independent_of_the_push_chunks():
    montage = _montage()
    topo = artifact_topographies(montage)
    specs = parse_artifacts("realistic,saccades:60/min,blinks:30/min,emg:10/min,pops:10/min,drift:10/min")

    def render(chunks, seed):
        inj = ArtifactInjector(specs, montage, 1000.0, topographies=topo, seed=seed)
        parts, start = [], 0
        for n in chunks:
            x = inj.render(start, n)
            parts.append(np.zeros((n, montage.n_channels)) if x is None else x)
            start += n
        return np.concatenate(parts), inj.take_events()

    a, events_a = render([5] * 12_000, 3)
    sizes = np.random.default_rng(0).integers(1, 400, 120)
    b, events_b = render(list(sizes) + [60_000 - int(sizes.sum())], 3)
    c, _ = render([5] * 12_000, 4)
    assert np.array_equal(a, b) and events_a == events_b
    assert not np.allclose(a, c)
    kinds = {e.marker["artifact"] for e in events_a}
    assert kinds == {"blink", "saccade", "emg", "drift", "pop", "bad-channel", "line"}


def test_blinks_are_small_on_the_posterior_model_channels():
    """The model's 17 posterior channels (things-eeg2): a blink of 150 uV at Fp1/Fp2 shows with < 15 % there."""
    topo = artifact_topographies(get_montage("things-eeg2"))["blink"]
    assert 0.02 < np.abs(topo).max() < 0.15
    full = artifact_topographies(_montage())["blink"]
    fp, fz, cz, pz, oz = (full[FRONTAL.index(c)] for c in ("Fp1", "Fz", "Cz", "Pz", "Oz"))
    assert fp == pytest.approx(1.0, abs=0.02) and fp > fz > cz > pz > oz > 0
    assert oz < 0.1


# artifacts over LSL ----------------------------------------------------------------------------------------------
def test_blinks_give_their_amplitude_at_fp1_fp2_and_little_at_oz(source_id):
    pipe = _pipeline(source_id, artifacts="blinks:60/min", srate=250.0)
    with pipe:
        sig, mk = _inlet(source_id), _inlet(f"{source_id}-markers")
        x, ts, _, markers = _receive(sig, 7.0, mk)
    blinks = [m for m in markers if m.get("artifact") == "blink"]
    assert len(blinks) >= 3
    fp = x[:, [FRONTAL.index("Fp1"), FRONTAL.index("Fp2")]].mean(axis=1)
    checked = 0
    for m in blinks:
        window = (ts >= m["onset"] - 1e-6) & (ts <= m["onset"] + m["duration"])
        if window.sum() < 0.9 * m["duration"] * 250:
            continue  # partly outside what was received
        checked += 1
        assert 100 <= m["amplitude_uV"] <= 200 and 0.2 <= m["duration"] <= 0.4
        assert fp[window].max() == pytest.approx(m["amplitude_uV"], rel=0.02)
        assert np.abs(x[window, FRONTAL.index("Oz")]).max() < 0.1 * m["amplitude_uV"]
        assert np.abs(x[window, FRONTAL.index("Fz")]).max() == pytest.approx(0.46 * m["amplitude_uV"], rel=0.1)
        assert m["channels"][:2] == ["Fp1", "Fp2"]
    assert checked >= 3
    assert np.all(x[:, :] >= -1e-3)  # blinks are positive everywhere against linked mastoids


def test_line_noise_has_the_stated_amplitude_at_50_100_and_150_hz(source_id):
    pipe = _pipeline(source_id, artifacts="line:50", srate=1000.0)
    with pipe:
        sig = _inlet(source_id)
        x, _, _, _ = _receive(sig, 3.0)
    seg = x[-2000:]  # 2 s: whole cycles of every component
    spectrum = np.abs(np.fft.rfft(seg, axis=0)) * 2 / len(seg)
    freqs = np.fft.rfftfreq(len(seg), 1 / 1000.0)
    line = next(p for p in pipe.artifacts.parts if p.label == "line")
    for (freq, amp), rel in zip(line.noise.components, (1.0, 0.2, 0.4)):
        k = int(np.argmin(np.abs(freqs - freq)))
        assert freq in (50.0, 100.0, 150.0)
        np.testing.assert_allclose(spectrum[k], amp * 1e6, rtol=1e-3)  # uV per channel
        np.testing.assert_allclose(amp, rel * line.noise.components[0][1])
    assert 2.5 < line.noise.components[0][1].mean() * 1e6 < 7.5  # 5 uV x U(0.5, 1.5) on average
    others = np.delete(spectrum, [int(np.argmin(np.abs(freqs - f))) for f in (50, 100, 150)], axis=0)
    assert others.max() < 1e-3


def test_a_flat_channel_is_flat_and_a_noisy_one_noisy(source_id):
    pipe = _pipeline(source_id, artifacts="bad-channel:flat@Cz", background="auto")
    with pipe:
        x, _, _, _ = _receive(_inlet(source_id), 2.0)
    cz = FRONTAL.index("Cz")
    assert np.all(x[:, cz] == 0.0)
    assert np.delete(x, cz, axis=1).std(axis=0).min() > 1.0  # microvolts of background elsewhere
    pipe = _pipeline(f"{source_id}-n", artifacts="bad-channel:noisy@T7", background="auto")
    with pipe:
        x, _, _, _ = _receive(_inlet(f"{source_id}-n"), 2.0)
    std = x.std(axis=0)
    assert std[FRONTAL.index("T7")] == pytest.approx(np.hypot(50.0, np.median(std)), rel=0.1)


# faults over LSL -------------------------------------------------------------------------------------------------
def _floor_slope(stamps, arrivals, srate, bin_s=0.5):
    """Slope of the lower envelope of arrival - stamp against the stamp: per-bin minima of whole bins (robust to
    late deliveries), fitted with Theil-Sen (robust to a bin delayed by other load on the machine)."""
    from scipy.stats import theilslopes

    lat = arrivals - stamps
    bins = np.floor((stamps - stamps[0]) / bin_s).astype(int)
    whole = [b for b in np.unique(bins) if (bins == b).sum() >= 0.9 * srate * bin_s]
    t = np.array([stamps[bins == b].mean() for b in whole])
    low = np.array([lat[bins == b].min() for b in whole])
    return theilslopes(low, t - t[0])[0]


def test_clock_drift_in_ppm_is_measured_on_the_receivers_clock(source_id):
    """500 ppm fast: over 10 s the samples arrive 5 ms ahead of their stamps' spacing."""
    pipe = _pipeline(source_id, faults="drift:500ppm", srate=500.0, lookahead=0.2)
    with pipe:
        x, ts, arr, _ = _receive(_inlet(source_id), 11.0)
        status = pipe.status()
    keep = ts >= ts[0] + 1.0  # after liblsl's start-up deliveries
    slope = _floor_slope(ts[keep], arr[keep], 500.0)
    assert slope * 1e6 == pytest.approx(-500, abs=75)  # arrival - stamp shrinks by 500 us per second
    assert np.max(np.abs(np.diff(ts) - 1 / 500)) < 1e-6  # stamped at the nominal rate
    assert status["faults"]["drift_ppm"] == 500 and np.all(np.isfinite(x))


def test_timestamp_jitter_has_the_stated_sd(source_id):
    pipe = _pipeline(source_id, faults="jitter:0.5ms", srate=1000.0)
    with pipe:
        _, ts, _, _ = _receive(_inlet(source_id), 3.0)
        t0 = pipe.sample_clock.t0
    k = np.arange(len(ts))
    i0 = np.median(np.round((ts - t0) * 1000.0 - k))
    residual = ts - (t0 + (i0 + k) / 1000.0)
    assert len(ts) > 2000
    assert residual.std() * 1e3 == pytest.approx(0.5, rel=0.06)
    assert abs(residual.mean()) < 5e-5


def test_a_freeze_delays_without_losing_and_a_drop_loses_samples(source_id):
    srate = 500.0
    pipe = _pipeline(source_id, faults="freeze:1s@1s,drop:100ms@3s", srate=srate, lookahead=0.3)
    with pipe:
        sig = _inlet(source_id)
        x, ts, arr, _ = _receive(sig, 5.0)
        t0, status = pipe.sample_clock.t0, pipe.status()
    steps = np.diff(ts)
    gaps = np.flatnonzero(steps > 1.5 / srate)
    assert len(gaps) == 1  # the drop; the freeze left no hole
    assert steps[gaps[0]] == pytest.approx(0.1 + 1 / srate, abs=1e-6)
    assert ts[gaps[0]] + 1 / srate == pytest.approx(t0 + 3.0, abs=1e-6)
    assert status["faults"]["samples_not_sent"] == 50 and status["faults"]["drop"] == 1
    frozen = (ts >= t0 + 1.0) & (ts < t0 + 2.0)
    assert frozen.sum() == 500  # every frozen sample arrived ...
    assert np.ptp(arr[frozen]) < 0.25  # ... at once, with the backlog
    assert arr[frozen].min() - (t0 + 1.0 + 0.3) > 0.85  # a second after they were due
    assert np.max(np.diff(arr)) > 0.85  # the receiver saw nothing meanwhile
    assert status["faults"]["freeze"] == 1 and status["faults"]["active"] == [] and np.all(np.isfinite(x))


def test_an_outlet_restart_is_seen_by_a_reconnecting_inlet(source_id):
    pipe = _pipeline(source_id, faults="restart:0.5s@1s", srate=250.0, lookahead=0.3)
    with pipe:
        sig = _inlet(source_id, recover=True)
        x, ts, _, _ = _receive(sig, 6.0)
        t0, status = pipe.sample_clock.t0, pipe.status()
        info = pylsl.resolve_byprop("source_id", source_id, timeout=5)
    before, after = ts < t0 + 1.0, ts >= t0 + 1.5
    assert before.sum() > 100 and after.sum() > 250  # data on both sides of the restart, on one inlet
    assert not np.any((ts >= t0 + 1.0) & (ts < t0 + 1.5))  # the down time is lost
    assert len(info) == 1 and info[0].source_id() == source_id
    assert status["faults"]["restart"] == 1 and status["faults"]["samples_not_sent"] == 125
    assert np.all(np.isfinite(x)) and pipe.error is None


def test_every_artifact_and_fault_has_its_marker_and_recording_annotation(source_id, tmp_path):
    import mne

    path = tmp_path / "faulty.vhdr"
    pipe = _pipeline(source_id, artifacts="blinks:60/min,saccades:120/min,emg:30/min,drift:10/min,pops:60/min,"
                     "bad-channel:noisy,line:50", faults="drift:50ppm,jitter:0.2ms,freeze:0.5s@1s,drop:50ms@2s",
                     srate=500.0, lookahead=2.0, background="auto", record=RecordSpec(path), seed=12)
    # seed 12 puts an event of every kind in the first 3.5 s (event times depend on the seed alone); the 2 s
    # lookahead lets the inlets connect before the first sample, which carries the whole-stream markers
    pipe.start()
    try:
        sig, mk = _inlet(source_id), _inlet(f"{source_id}-markers")
        x, _, _, markers = _receive(sig, 6.0, mk)
        counts = pipe.status()["artifacts"]
    finally:
        pipe.stop()
    got = {}
    for m in markers:
        if m.get("kind") == "artifact":
            got[m["artifact"]] = got.get(m["artifact"], 0) + 1
            assert isinstance(m["onset"], float) and (m["duration"] is None or m["duration"] > 0)
    assert set(got) == {"blink", "saccade", "emg", "drift", "pop", "bad-channel", "line"}
    assert all(got[k] >= counts[k] for k in counts)  # every one counted by the time of the status has a marker
    faults = [(m["fault"], m["status"]) for m in markers if m.get("kind") == "fault"]
    for kind in ("freeze", "drop"):
        assert (kind, "start") in faults and (kind, "end") in faults
    assert ("drift", "start") in faults and ("jitter", "start") in faults  # their ends come when it stops
    assert np.all(np.isfinite(x))
    raw = mne.io.read_raw_brainvision(path, verbose="error")
    notes = {a["description"]: a["duration"] for a in raw.annotations}
    for kind in ("blink", "saccade", "emg", "drift", "pop", "bad-channel", "line"):
        assert f"Comment/artifact-{kind}" in notes
    for kind in ("freeze", "drop", "drift", "jitter"):
        assert f"Comment/fault-{kind}-start" in notes and f"Comment/fault-{kind}-end" in notes
    assert notes["Comment/fault-freeze-start"] == pytest.approx(1 / 500)
    blink = [a for a in raw.annotations if a["description"] == "Comment/artifact-blink"][0]
    assert 0.2 <= blink["duration"] <= 0.4  # the marker's size is the blink's duration


def test_saccades_follow_the_onsets_and_a_drifting_clock_places_responses_at_device_time(source_id):
    """saccades:scene: one saccade 0.15-0.3 s after each onset; with drift:10000ppm the response sits at the sample
    the (fast) device takes at the true onset time, i.e. at ``t0 + (onset - t0) * 1.01`` in stream stamps."""
    from _stream_helpers import PulsePredictor

    montage = _montage()
    pipe = StreamPipeline(PulsePredictor(montage, latency=0.1), background=None,
                          output=OutputSpec(srate=500.0, lookahead=0.3, source_id=source_id,
                                            faults=parse_faults("drift:10000ppm")),
                          synth=SynthSpec(seed=1, artifacts=parse_artifacts("saccades:scene")),
                          artifact_topographies=artifact_topographies(montage))
    with pipe:
        sig, mk = _inlet(source_id), _inlet(f"{source_id}-markers")
        t0 = pipe.sample_clock.t0
        onsets = [t0 + 1.0 + 0.6 * k for k in range(3)]
        for onset in onsets:
            pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), onset)
        x, ts, _, markers = _receive(sig, onsets[-1] - pylsl.local_clock() + 1.5, mk)
    device = [t0 + (t - t0) * 1.01 for t in onsets]
    saccades = [m for m in markers if m.get("artifact") == "saccade"]
    assert [m["trigger"] for m in saccades] == ["onset"] * 3
    for m, at in zip(saccades, device):
        assert 0.15 - 2e-3 <= m["onset"] - at <= 0.3 + 2e-3 and "F8" in m["channels"]
    stimuli = [m for m in markers if "event" in m]
    assert [m["onset"] for m in stimuli] == pytest.approx(onsets, abs=1e-6)  # markers keep the true time
    cz = x[:, FRONTAL.index("Cz")]  # midline: no saccade potential
    for at in device:
        window = (ts >= at) & (ts < at + 0.3)
        assert ts[window][np.argmax(cz[window])] == pytest.approx(at + 0.1, abs=2 / 500)
