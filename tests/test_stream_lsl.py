"""The streaming pipeline over real LSL on loopback: metadata, timing, marker alignment, late/NaN handling,
worker failures and crash-safe recording. Each test streams for a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest
from _stream_helpers import PulsePredictor

from vibe_rt.calibration import CalibrationProfile
from vibe_rt.errors import StreamError
from vibe_rt.stream import DemoSource, FixedRate, InferenceSpec, OutputSpec, RecordSpec, StreamPipeline, SynthSpec

ROOT = Path(__file__).resolve().parents[1]


def _inlet(source_id: str, timeout: float = 5.0) -> pylsl.StreamInlet:
    infos = pylsl.resolve_byprop("source_id", source_id, timeout=timeout)
    assert infos, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(infos[0], max_buflen=30, recover=False)
    inlet.open_stream(timeout=5)
    return inlet


def _pull(inlet: pylsl.StreamInlet, seconds: float, data: list, stamps: list) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        d, ts = inlet.pull_chunk(timeout=0.1)
        if ts:
            data.extend(d)
            stamps.extend(ts)


def _pull_markers(inlet: pylsl.StreamInlet) -> tuple[list, list]:
    values, stamps = [], []
    while True:
        d, ts = inlet.pull_chunk(timeout=0.2)
        if not ts:
            return values, stamps
        values.extend(v[0] for v in d)
        stamps.extend(ts)


def test_stream_metadata_and_regular_timestamps(source_id):
    pred = PulsePredictor()
    pipe = StreamPipeline(pred, output=OutputSpec(srate=500, lookahead=0.1, name="meta-test", source_id=source_id),
                          synth=SynthSpec(seed=0), extra_meta={"model_hash": "abc123"})
    with pipe:
        inlet = _inlet(source_id)
        info = inlet.info(timeout=5)
        data, stamps = [], []
        _pull(inlet, 0.3, [], [])  # connected and delivering
        t_pull = pylsl.local_clock()
        _pull(inlet, 2.5, data, stamps)
        t_pull = pylsl.local_clock() - t_pull
        status = pipe.status()
        marker_infos = [pylsl.resolve_byprop("source_id", f"{source_id}-{k}", timeout=3) for k in ("markers", "codes")]
    assert info.type() == "EEG" and info.channel_count() == 4 and info.nominal_srate() == 500
    assert info.channel_format() == pylsl.cf_float32 and info.name() == "meta-test"
    desc = info.desc()
    ch = desc.child("channels").child("channel")
    m = pred.montage
    for i in range(m.n_channels):
        assert ch.child_value("label") == m.ch_names[i]
        assert ch.child_value("unit") == "microvolts" and ch.child_value("type") == "EEG"
        loc = ch.child("location")
        xyz = [float(loc.child_value(a)) for a in "XYZ"]
        assert np.allclose(xyz, m.positions[i] * 1000, atol=1e-3)
        ch = ch.next_sibling()
    assert desc.child("cap").child_value("name") == m.name
    assert desc.child("acquisition").child_value("manufacturer") == "vibe-rt"
    assert float(desc.child("synchronization").child_value("output_delay")) == pytest.approx(0.1)
    assert desc.child("vibe_rt").child_value("backend") == "test-pulse"
    assert desc.child("vibe_rt").child_value("model_hash") == "abc123"
    assert desc.child("acquisition").child_value("model")
    (smk,), (cmk,) = marker_infos
    assert (smk.type(), smk.channel_format(), smk.nominal_srate()) == ("Markers", pylsl.cf_string, 0)
    assert (cmk.type(), cmk.channel_format(), cmk.nominal_srate()) == ("Markers", pylsl.cf_int32, 0)

    ts = np.array(stamps)
    x = np.array(data)
    assert len(ts) > 1000 and np.all(np.isfinite(x))
    assert np.max(np.abs(np.diff(ts) - 1 / 500)) < 1e-6  # perfectly regular timestamps
    # as received: the samples pulled in 2.5 s of the receiver's clock span 2.5 s of signal (the nominal rate,
    # give or take one push interval at either end)
    assert len(ts) / 500 == pytest.approx(t_pull, abs=0.1)
    assert 2 < x.std() < 100  # microvolts of background activity
    assert status["effective_srate"] == pytest.approx(500, rel=0.005)
    assert status["push_lag_ms"]["p50"] < 20


def test_markers_line_up_with_evoked_peaks(source_id):
    srate, latency = 1000, 0.1
    pred = PulsePredictor(latency=latency)
    pipe = StreamPipeline(pred, background=None, output=OutputSpec(srate=srate, lookahead=0.2, source_id=source_id))
    with pipe:
        sig = _inlet(source_id)
        mk = _inlet(f"{source_id}-markers")
        codes = _inlet(f"{source_id}-codes")
        data, stamps = [], []
        t = pylsl.local_clock()
        onsets = [t + 0.05 + 0.35 * k for k in range(4)]  # future flip times, like PsychoPy
        for k, onset in enumerate(onsets):
            assert pipe.submit_onset(np.full((16, 16, 3), 40 * k, np.uint8), onset, {"code": 10 + k}) == k + 1
        _pull(sig, onsets[-1] - t + 1.3, data, stamps)
        markers, m_ts = _pull_markers(mk)
        code_vals, c_ts = _pull_markers(codes)
        status = pipe.status()
    assert status["late"] == 0 and status["responses"] == 4
    x, ts = np.array(data)[:, 0], np.array(stamps)
    assert len(markers) == 4 and code_vals == [10, 11, 12, 13]
    assert np.allclose(c_ts, m_ts) and np.allclose(m_ts, onsets, atol=1e-9)
    for raw, mt in zip(markers, m_ts):
        marker = json.loads(raw)
        assert marker["status"] == "ok" and marker["source"] == "external"
        window = (ts >= mt) & (ts < mt + 0.3)
        t_peak = ts[window][np.argmax(x[window])]
        assert abs(t_peak - (mt + latency)) <= 1 / srate + 1e-9
        assert x[window].max() == pytest.approx(10.0, rel=0.02)  # 10 uV
    assert np.all(x[ts < onsets[0] - 1 / srate] == 0)  # nothing before the first onset (rounding: half a sample)


def _streamed_response(source_id: str, calibration: CalibrationProfile | None, latency: float = 0.1
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Stream one pulse response (no background) and return the received samples (n, C), times since onset and
    the entries of the stream's desc/vibe_rt/calibration."""
    pipe = StreamPipeline(PulsePredictor(latency=latency), background=None,
                          output=OutputSpec(srate=1000, lookahead=0.2, source_id=source_id), calibration=calibration)
    with pipe:
        sig = _inlet(source_id)
        cal = sig.info(timeout=5).desc().child("vibe_rt").child("calibration")
        declared = {}
        entry = cal.first_child()
        while not entry.empty():
            declared[entry.name()] = entry.first_child().value()
            entry = entry.next_sibling()
        data, stamps = [], []
        onset = pylsl.local_clock() + 0.05
        pipe.submit_onset(np.zeros((16, 16, 3), np.uint8), onset)
        _pull(sig, 1.3, data, stamps)
    return np.array(data), np.array(stamps) - onset, declared


def test_calibration_scales_and_delays_the_streamed_response(source_id):
    """`--calibration`: gain 2 on the first channel and a 30 ms latency show in what an inlet receives, the whole
    response delayed (a pulse at the epoch's end, 0.75 s, arrives whole at 0.78 s: not cut at the window's end);
    the stream declares the calibration in desc/vibe_rt/calibration."""
    names = list(PulsePredictor().montage.ch_names)
    profile = CalibrationProfile(name="lab", channels=names, gain=[2.0] + [1.0] * (len(names) - 1), latency_s=0.03,
                                 model_hash="0123456789abcdef")
    for latency in (0.1, 0.75):
        plain, t_plain, none = _streamed_response(f"{source_id}-{latency}", None, latency)
        calib, t_calib, declared = _streamed_response(f"{source_id}-{latency}-cal", profile, latency)
        assert none == {}
        for ch, gain in ((0, 2.0), (1, 1.0)):
            peak_plain, peak_calib = np.argmax(plain[:, ch]), np.argmax(calib[:, ch])
            assert t_plain[peak_plain] == pytest.approx(latency, abs=0.002)
            assert t_calib[peak_calib] == pytest.approx(latency + 0.03, abs=0.002)
            assert calib[peak_calib, ch] == pytest.approx(gain * plain[peak_plain, ch], rel=0.02)
            assert calib[:, ch].sum() == pytest.approx(gain * plain[:, ch].sum(), rel=0.02)  # all of it
    assert declared == {"name": "lab", "channels": ",".join(names), "latency_s": "0.03",
                        "gain": ",".join(["2"] + ["1"] * (len(names) - 1)), "adapter": "none",
                        "model_hash": "0123456789abcdef"}


def test_slow_predictor_gives_counted_late_events_not_gaps(source_id):
    srate = 250
    pred = PulsePredictor(delay=0.3)  # longer than the lookahead
    pipe = StreamPipeline(pred, source=DemoSource(width=64, height=48), policy=FixedRate(3.0),
                          output=OutputSpec(srate=srate, lookahead=0.1, source_id=source_id),
                          synth=SynthSpec(late_policy="clip"), inference=InferenceSpec(max_queue=2))
    with pipe:
        inlet = _inlet(source_id)
        data, stamps = [], []
        _pull(inlet, 3.0, data, stamps)
        now = pylsl.local_clock()
        status = pipe.status()
        expected = pipe.sample_clock.n_due(now)
    assert status["late"] >= 3 and status["late_clipped"] >= 3
    assert status["events"] >= 6
    # late/overloaded onsets are counted, and the stream itself never stalls
    assert abs(status["samples_pushed"] - expected) <= 3 * pipe.chunk
    ts = np.array(stamps)
    assert np.max(np.abs(np.diff(ts) - 1 / srate)) < 1e-6
    assert status["push_lag_ms"]["p99"] < 50


def test_nan_predictions_are_dropped_and_counted(source_id):
    pipe = StreamPipeline(PulsePredictor(nan=True), output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id),
                          synth=SynthSpec(seed=1))
    with pipe:
        sig = _inlet(source_id)
        mk = _inlet(f"{source_id}-markers")
        codes = _inlet(f"{source_id}-codes")
        data, stamps = [], []
        for _ in range(3):
            pipe.submit_onset(np.zeros((8, 8, 3), np.uint8))
            _pull(sig, 0.3, data, stamps)
        _pull(sig, 0.3, data, stamps)
        markers, _ = _pull_markers(mk)
        code_vals, _ = _pull_markers(codes)
        status = pipe.status()
    assert status["nonfinite_dropped"] == 3 and status["responses"] == 0
    assert [json.loads(m)["status"] for m in markers] == ["nonfinite"] * 3
    assert code_vals == []  # numeric markers only for responses that are in the signal
    assert np.all(np.isfinite(np.array(data)))


def test_worker_failure_is_shown_and_reraised(source_id):
    class Broken(PulsePredictor):
        def predict(self, pixels):
            raise RuntimeError("engine exploded")

    pipe = StreamPipeline(Broken(), output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id)).start()
    pipe.submit_onset(np.zeros((8, 8, 3), np.uint8))
    deadline = time.monotonic() + 3
    while pipe.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "engine exploded" in pipe.status()["error"]
    with pytest.raises(RuntimeError, match="engine exploded"):
        pipe.stop()


def test_record_brainvision_matches_stream(source_id, tmp_path):
    import mne

    path = tmp_path / "rec.vhdr"
    pipe = StreamPipeline(PulsePredictor(), output=OutputSpec(srate=500, lookahead=0.1, source_id=source_id),
                          record=RecordSpec(path), synth=SynthSpec(seed=2))
    with pipe:
        inlet = _inlet(source_id)
        data, stamps = [], []
        onsets = [pylsl.local_clock() + 0.2 + 0.3 * k for k in range(3)]
        for onset in onsets:
            pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), onset)
        _pull(inlet, 1.8, data, stamps)
        t0 = pipe.sample_clock.t0
    raw = mne.io.read_raw_brainvision(path, preload=True, verbose="error")
    assert raw.ch_names == list(pipe.montage.ch_names) and raw.info["sfreq"] == 500
    rec = raw.get_data().T * 1e6  # volts -> microvolts, as streamed
    idx = np.round((np.array(stamps) - t0) * 500).astype(int)
    assert idx[-1] < len(rec)
    assert np.allclose(rec[idx], np.array(data), atol=1e-4)
    stim = [a for a in raw.annotations if a["description"].startswith("Stimulus")]
    assert len(stim) == 3
    assert np.allclose([a["onset"] for a in stim], np.array(onsets) - t0, atol=1 / 500)


def test_calibration_channel_map_gives_the_device_labels(source_id, tmp_path):
    """A profile whose channel map names the live device's labels: the stream and the recording carry them
    (interpolated channels keep the model's), so the simulator stands in for the amplifier's stream."""
    import mne

    pred = PulsePredictor()
    names = list(pred.montage.ch_names)
    profile = CalibrationProfile(channels=names, gain=[1.0] * len(names), latency_s=0.0,
                                 channel_map={names[0]: "EEG 001", names[1]: "interpolated:spline",
                                              names[2]: names[2].lower()})
    path = tmp_path / "rec.vhdr"
    pipe = StreamPipeline(pred, output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id),
                          record=RecordSpec(path), calibration=profile)
    expected = ["EEG 001", names[1], names[2].lower(), names[3]]
    with pipe:
        info = _inlet(source_id).info(timeout=5)
        time.sleep(0.3)
    ch, labels = info.desc().child("channels").child("channel"), []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == expected
    assert mne.io.read_raw_brainvision(path, verbose="error").ch_names == expected
    assert list(pipe.montage.ch_names) == names  # calibration gains and shifts still match the model's labels


def test_push_marker_goes_to_lsl_and_recording(source_id, tmp_path):
    """StreamPipeline.push_marker (key presses): on the Markers/codes streams and in the .vmrk, at its time."""
    import mne

    path = tmp_path / "keys.vhdr"
    pipe = StreamPipeline(montage=PulsePredictor().montage, background=None,
                          output=OutputSpec(srate=250, lookahead=0.05, source_id=source_id), record=RecordSpec(path))
    with pytest.raises(StreamError, match="not running"):
        pipe.push_marker({"kind": "response"}, 0.0, 7)
    with pipe:
        mk = _inlet(f"{source_id}-markers")
        codes = _inlet(f"{source_id}-codes")
        t0 = pipe.sample_clock.t0
        t_key, t_note = t0 + 0.3, t0 + 0.5
        pipe.push_marker({"key": "space", "kind": "response", "status": "response"}, t_key, 99999)
        pipe.push_marker({"note": "block 2", "status": "pause"}, t_note)
        time.sleep(0.8)  # the recording must hold samples past the markers
        markers, m_ts = _pull_markers(mk)
        code_vals, c_ts = _pull_markers(codes)
    assert [json.loads(m)["kind"] for m in markers[:1]] == ["response"] and json.loads(markers[1])["note"] == "block 2"
    np.testing.assert_allclose(m_ts, [t_key, t_note], atol=1e-6)
    assert code_vals == [99999] and c_ts == pytest.approx([t_key], abs=1e-6)
    assert pipe.status()["markers_pushed"] == 2
    raw = mne.io.read_raw_brainvision(path, verbose="error")
    ann = {a["description"]: a["onset"] for a in raw.annotations if not a["description"].startswith("New Segment")}
    assert set(ann) == {"Response/R99999", "Comment/pause"}
    assert ann["Response/R99999"] == pytest.approx(t_key - t0, abs=1 / 250)
    assert ann["Comment/pause"] == pytest.approx(t_note - t0, abs=1 / 250)


_KILL_SCRIPT = """
import sys
from _stream_helpers import PulsePredictor
from vibe_rt.app import run_stream
from vibe_rt.stream import StreamConfig
run_stream(StreamConfig(source="demo", record=sys.argv[1], duration=60, srate=250, events="rate", event_rate=4,
                        source_id=sys.argv[2], lookahead=0.1), predictor=PulsePredictor())
"""


def test_record_survives_sigkill(source_id, tmp_path):
    import mne

    path = tmp_path / "killed.vhdr"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path), source_id], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        eeg = path.with_suffix(".eeg")
        while time.monotonic() < deadline:
            if eeg.exists() and eeg.stat().st_size > 4 * 4 * 250 * 2 and path.with_suffix(".vmrk").read_text().count(
                    "Stimulus") >= 5:  # markers may run a lookahead ahead of the data
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("the recording did not grow")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    raw = mne.io.read_raw_brainvision(path, preload=True, verbose="error")
    assert raw.n_times >= 500 and np.all(np.isfinite(raw.get_data()))
    assert sum(d.startswith("Stimulus") for d in raw.annotations.description) >= 3
    assert 1e-7 < raw.get_data().std() < 1e-3  # volts


def test_cli_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "vibe_rt", "stream", "--help"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    for opt in ("--camera", "--video", "--as-fast-as-possible", "--images", "--on", "--off", "--source", "--model",
                "--backend", "--montage", "--srate", "--name", "--lookahead", "--events", "--event-rate",
                "--threshold", "--late-policy", "--line-noise", "--record", "--duration", "--calibration"):
        assert opt in out.stdout


def test_mne_lsl_reads_names_units_positions_and_epochs(source_id):
    """MNE-LSL natively: StreamLSL shows the channel names, microvolt units and head positions of the signal stream
    and reads the codes stream as a stim channel; EpochsStream epochs the signal around the codes and shows the
    evoked response (the 10 uV pulse 100 ms after every onset)."""
    import warnings

    from mne.io.constants import FIFF
    from mne_lsl.stream import EpochsStream, StreamLSL

    pred = PulsePredictor(latency=0.1)
    m = pred.montage
    pipe = StreamPipeline(pred, background=None, output=OutputSpec(srate=500, lookahead=0.2, source_id=source_id))
    with pipe, warnings.catch_warnings():
        warnings.simplefilter("error")  # no "missing channel description" or unit warning from MNE-LSL
        signal = StreamLSL(5.0, source_id=source_id).connect(processing_flags="all", timeout=5)
        codes = StreamLSL(5.0, source_id=f"{source_id}-codes").connect(processing_flags="all", timeout=5)
        epochs = EpochsStream(signal, bufsize=20, event_id=7, event_channels="code", event_stream=codes, tmin=-0.1,
                              tmax=0.3, baseline=(None, 0)).connect()
        t0 = pylsl.local_clock() + 0.5
        for k in range(8):  # each onset submitted a little ahead of its time, as a display loop would
            onset = t0 + 0.4 * k
            time.sleep(max(0.0, onset - 0.05 - pylsl.local_clock()))
            pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), onset, {"code": 7})
        deadline = time.monotonic() + 15
        while epochs.n_new_epochs < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        n_epochs = epochs.n_new_epochs
        data = epochs.get_data(n_epochs=n_epochs)  # the buffer holds bufsize epochs, the newest last
        names, info, units = signal.ch_names, signal.info.copy(), signal.get_channel_units()
        code_info = codes.info.copy()
        for s in (epochs, signal, codes):
            s.disconnect()
    assert names == list(m.ch_names) and info.get_channel_types() == ["eeg"] * m.n_channels
    assert units == [(FIFF.FIFF_UNIT_V, FIFF.FIFF_UNITM_MU)] * m.n_channels
    assert np.allclose([ch["loc"][:3] for ch in info["chs"]], m.positions, atol=1e-6)
    assert all(ch["coord_frame"] == FIFF.FIFFV_COORD_HEAD for ch in info["chs"])
    assert code_info.ch_names == ["code"] and code_info.get_channel_types() == ["stim"]
    assert n_epochs >= 6 and data.shape[:2] == (n_epochs, m.n_channels)
    times = -0.1 + np.arange(data.shape[-1]) / 500
    evoked = data.mean(axis=0)
    peak = times[np.argmax(evoked, axis=-1)]
    assert np.allclose(peak, 0.1, atol=2 / 500)  # the response 100 ms after each code
    assert evoked[0].max() == pytest.approx(10.0, rel=0.03)  # microvolts, as streamed
