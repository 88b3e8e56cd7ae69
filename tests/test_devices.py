"""Emulated devices (``--device``), full-cap responses and synthetic subjects (``--subject``).

Each built-in profile is streamed over real LSL and checked as a pipeline would see it; the cap-wide responses are
checked against the simulator's own truth on the cap; subjects are checked for stability and ranges."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from _stream_helpers import PulsePredictor, collect_stream

from vibe_rt import cli
from vibe_rt.app import build_stream
from vibe_rt.data.cap import cap_projection
from vibe_rt.data.noise import BackgroundNoise
from vibe_rt.data.simulate import EvokedModel
from vibe_rt.data.stimuli import make_stimulus
from vibe_rt.data.subject import (
    ALPHA_LN,
    AMPLITUDE_LN,
    BRAIN_TO_SKULL,
    HEAD_SCALE,
    IAF_HZ,
    LATENCY_S,
    TEMPLATE_SUBJECT,
    draw_subject,
)
from vibe_rt.devices import BUILTIN_FOLDER, USER_FOLDERS_VARIABLE, device_names, list_devices, load_device
from vibe_rt.errors import ConfigError
from vibe_rt.montage import get_montage
from vibe_rt.stream import StreamConfig

pylsl = pytest.importorskip("pylsl")

BUILTIN = ("actichamp-64", "biosemi-128", "biosemi-64", "brainamp-32", "brainamp-64", "cyton-8", "cyton-daisy-16")
M17 = get_montage("things-eeg2")


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith("vibe-rt: error: "), err
    return lines[0]


def _channel_desc(info) -> list[dict]:
    out, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        loc = ch.child("location")
        out.append({"label": ch.child_value("label"), "unit": ch.child_value("unit"), "type": ch.child_value("type"),
                    "xyz": None if loc.empty() else [float(loc.child_value(a)) for a in "XYZ"]})
        ch = ch.next_sibling()
    return out


# ------------------------------------------------------------------------------------------ profiles on LSL
def test_the_builtin_profiles_are_the_documented_ones():
    assert set(BUILTIN) <= set(device_names())
    profiles = {p.name: p for p in list_devices()}
    assert (profiles["brainamp-32"].n_channels, profiles["biosemi-128"].n_channels,
            profiles["cyton-daisy-16"].n_channels) == (32, 128, 16)
    assert profiles["brainamp-64"].resolution == 0.1 and profiles["biosemi-64"].resolution == 0.03125
    assert math.isclose(profiles["cyton-8"].resolution, 4.5e6 / 24 / (2**23 - 1), rel_tol=1e-8)
    assert profiles["biosemi-64"].default_rate_hz == 2048 and profiles["cyton-daisy-16"].default_rate_hz == 125
    assert profiles["brainamp-32"].transport_delay_s == 0.0516 and profiles["biosemi-64"].transport_delay_s == 0.0077
    assert profiles["actichamp-64"].transport_delay_s is None
    assert profiles["biosemi-64"].channels[:2] == ("A1", "A2") and profiles["biosemi-64"].equivalents[:2] == ("Fp1",
                                                                                                             "AF7")
    assert profiles["biosemi-64"].n_extra == 25 and profiles["brainamp-64"].n_extra == 0
    for p in profiles.values():  # positions on the template head: 6-13 cm from its centre, spread over the scalp
        dist = np.linalg.norm(p.positions - np.array([0.0, 0.015, 0.039]), axis=1)
        assert p.builtin and np.all((dist > 0.06) & (dist < 0.13)), p.name
    # the same electrode through two different MNE montages lands within 2 cm (both placed on the template head)
    oz_b64 = profiles["biosemi-64"].positions[profiles["biosemi-64"].equivalents.index("Oz")]
    oz_ba = profiles["brainamp-64"].positions[profiles["brainamp-64"].channels.index("Oz")]
    assert np.linalg.norm(oz_b64 - oz_ba) < 0.02


def _labels(profile) -> tuple[list[str], list[str]]:
    """Every channel the device's app sends, and the extra ones alone."""
    first = [c for g in profile.extras("first") for c in g.labels]
    last = [c for g in profile.extras("last") for c in g.labels]
    return first + list(profile.channels) + last, first + last


@pytest.mark.parametrize("name", BUILTIN)
def test_an_inlet_sees_the_device(name, source_id):
    """Labels, count, rate, type, units, positions and meta-data of the profile; every EEG value a multiple of its
    resolution step; the app's other channels around them (BioSemi: the onset's code on Trig1, zeros on EX/AUX)."""
    profile = load_device(name)
    pipe = build_stream(StreamConfig(source="none", device=name, source_id=source_id, lookahead=0.2),
                        predictor=PulsePredictor(M17))
    with pipe:
        onset = pylsl.local_clock() + 0.8
        pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), onset, {"code": 7})
        info, data, stamps = collect_stream(source_id, 1.8)
    labels, extra = _labels(profile)
    assert info.name() == profile.lsl.name and info.type() == profile.lsl.type
    assert info.channel_count() == len(labels) and info.nominal_srate() == profile.default_rate_hz
    assert info.channel_format() == pylsl.cf_float32
    channels = _channel_desc(info)
    assert [c["label"] for c in channels] == labels
    eeg = [labels.index(c) for c in profile.channels]
    assert {channels[i]["unit"] for i in eeg} == {"microvolts"} and {channels[i]["type"] for i in eeg} == {"EEG"}
    assert np.allclose([channels[i]["xyz"] for i in eeg], profile.positions * 1000, atol=1e-3)
    desc = info.desc()
    assert desc.child("cap").child_value("reference") == profile.reference
    acq = desc.child("acquisition")
    assert (acq.child_value("manufacturer"), acq.child_value("model")) == (profile.manufacturer, profile.model)
    assert float(acq.child_value("resolution")) == pytest.approx(profile.resolution)
    assert acq.child_value("precision") == str(profile.precision_bits)
    assert int(desc.child("synchronization").child_value("chunk_size")) == profile.lsl.chunk_samples(
        profile.default_rate_hz)
    assert float(desc.child("synchronization").child_value("offset_mean")) == pytest.approx(
        profile.transport_delay_s or 0.0)
    assert desc.child("vibe_rt").child_value("device") == name
    assert data.shape[1] == len(labels) and len(data) > 0.5 * profile.default_rate_hz
    steps = data[:, eeg].astype(np.float64) / profile.resolution
    assert np.max(np.abs(steps - np.rint(steps))) < 1e-3  # on the device's grid
    assert 1 < np.median(data[:, eeg].std(0)) < 100  # microvolts of realistic background on every channel
    assert len(np.unique(data[:, eeg[0]])) > 20
    for label in extra:
        column = data[:, labels.index(label)]
        if label == "Trig1":  # code 7 for 10 ms from the onset (plus the transport delay)
            on = stamps[column == 7]
            assert len(on) == round(0.01 * profile.default_rate_hz) and set(np.unique(column)) == {0, 7}
            assert on[0] - onset == pytest.approx(profile.transport_delay_s, abs=1 / profile.default_rate_hz)
        else:
            assert not column.any()


def test_brainamp_meta_data_are_the_apps(source_id):
    pipe = build_stream(StreamConfig(source="none", device="brainamp-64", source_id=source_id, lookahead=0.1),
                        predictor=PulsePredictor(M17))
    with pipe:
        info, _, _ = collect_stream(source_id, 0.3)
    settings = info.desc().child("amplifier").child("settings")
    assert settings.child_value("resolution") == "100 nV" and settings.child_value("dc_coupling") == "AC"
    assert info.desc().child("acquisition").child_value("serial_number") == "0"


# --------------------------------------------------------------------------------------- the command line
def test_devices_command_lists_the_profiles(capsys):
    rc, out, _ = _main(["devices"], capsys)
    assert rc == 0
    for name in BUILTIN:
        assert name in out
    assert "51.6 ms" in out and "unknown" in out and "0.03125 microvolts" in out
    rc, out, _ = _main(["devices", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["biosemi-64"]["channels"] == 64 and rows["brainamp-32"]["lsl"]["chunk_size"] == 50
    rc, out, _ = _main(["devices", "biosemi-64"], capsys)
    assert rc == 0 and "A1, A2" in out and "Fp1, AF7" in out and "App-BioSemi" in out


def _user_profile(tmp_path: Path, **changes) -> Path:
    data = json.loads((BUILTIN_FOLDER / "cyton-8.json").read_text())
    data.update(name="my-amp", manufacturer="Lab", model="Prototype 3",
                channels=["O1", "Oz", "O2"], positions={"head_mm": [[-29.4, -112.4, 8.8], [0.1, -114.8, 14.7],
                                                                   [29.9, -112.4, 8.8]]},
                rates_hz=[256, 512], default_rate_hz=512, resolution=0.05, transport_delay_s=0.012)
    data["lsl"] = {**data["lsl"], "name": "MyAmp", "type": "ExG", "chunk_size": 16}
    data.update(changes)
    path = tmp_path / f"{data['name'] if isinstance(data.get('name'), str) else 'bad'}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_user_profile_folder_and_file(tmp_path, monkeypatch, capsys, source_id):
    path = _user_profile(tmp_path)
    monkeypatch.setenv(USER_FOLDERS_VARIABLE, str(tmp_path))
    assert "my-amp" in device_names()
    rc, out, _ = _main(["devices"], capsys)
    assert rc == 0 and "my-amp" in out and str(path) in out
    profile = load_device("my-amp")
    assert (profile.n_channels, profile.default_rate_hz, profile.lsl.type) == (3, 512, "ExG")
    monkeypatch.delenv(USER_FOLDERS_VARIABLE)
    assert "my-amp" not in device_names() and load_device(str(path)).name == "my-amp"  # a file works anywhere
    pipe = build_stream(StreamConfig(source="none", device=str(path), source_id=source_id, lookahead=0.1),
                        predictor=PulsePredictor(M17))
    with pipe:
        info, data, _ = collect_stream(source_id, 0.6)
    assert (info.name(), info.type(), info.channel_count(), info.nominal_srate()) == ("MyAmp", "ExG", 3, 512)
    assert float(info.desc().child("synchronization").child_value("offset_mean")) == pytest.approx(0.012)
    steps = data / 0.05
    assert np.max(np.abs(steps - np.rint(steps))) < 1e-3


@pytest.mark.parametrize("changes, fragment", [
    ({"resolution": float("nan")}, "NaN is not a number JSON allows"),
    ({"resolution": -0.1}, "resolution must be a finite number > 0"),
    ({"default_rate_hz": 1000}, "default_rate_hz 1000 is not one of rates_hz"),
    ({"rates_hz": [512, 1e9]}, "rates_hz[1] must be a finite number > 0 and <= 65536"),
    ({"transport_delay_s": 5}, "transport_delay_s must be a finite number >= 0 and <= 1"),
    ({"channels": ["O1", "O1", "O2"]}, "channels lists ['O1'] more than once"),
    ({"positions": {"mne_montage": "no-such-cap"}}, "positions.mne_montage 'no-such-cap' is not an MNE built-in"),
    ({"positions": {"head_mm": [[0, 0, 0], [0, 1, 2], [3, 4, 5]]}}, "scalp electrodes lie 40-160 mm"),
    ({"positions": {"head_mm": [[1, 2, 3]]}}, "positions.head_mm must be 3 rows of three numbers"),
    ({"unit": "volts"}, "unit must be one of microvolts"),
    ({"range": 50}, "range 50 microvolts is below the amplitude of ordinary EEG"),
    ({"lsl": {"name": "x", "type": "EEG", "channel_format": "int16", "chunk_size": 4}},
     "lsl.channel_format must be float32"),
    ({"lsl": {"name": "x", "type": "EEG", "channel_format": "float32"}}, "needs exactly one of chunk_size"),
    ({"lsl": {"name": "x", "type": "EEG", "channel_format": "float32", "chunk_size": 4,
              "desc": {"channels": {"a": "b"}}}}, "lsl.desc may not set ['channels']"),
    ({"format": "something-else"}, "format must be 'vibe-rt-device'"),
    ({"name": "My Amp"}, "must be lower-case letters"),
])
def test_a_bad_profile_is_one_line_and_exit_2(changes, fragment, tmp_path, capsys):
    path = _user_profile(tmp_path, **changes)
    for argv in (["devices", str(path)], ["stream", "--device", str(path), "--duration", "1"]):
        rc, _, err = _main(argv, capsys)
        line = _one_error_line(err)
        assert rc == 2 and fragment in line and str(path) in line, line


def test_a_profile_that_is_not_json_or_absent(tmp_path, capsys):
    bad = tmp_path / "amp.json"
    bad.write_text("{not json")
    rc, _, err = _main(["stream", "--device", str(bad), "--duration", "1"], capsys)
    assert rc == 2 and "is not valid JSON" in _one_error_line(err)
    rc, _, err = _main(["stream", "--device", "nope", "--duration", "1"], capsys)
    assert rc == 2 and "unknown device 'nope'; give one of actichamp-64" in _one_error_line(err)
    rc, _, err = _main(["stream", "--device", str(tmp_path / "missing.json"), "--duration", "1"], capsys)
    assert rc == 2 and "is missing" in _one_error_line(err)


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "cyton-8", "--srate", "1000"], "--srate 1000: the cyton-8 device samples at 250 Hz"),
    (["--device-delay", "0.05"], "--device-delay sets the transport delay of an emulated device; give --device"),
    (["--device", "biosemi-64", "--montage", "Oz,Pz"], "channels ['Oz', 'Pz'] are not on the biosemi-64 cap"),
    (["--device", "brainamp-32", "--device-delay", "2"], "--device-delay must be a number >= 0 and <= 1"),
    (["--subject", "-1"], "--subject must be >= 0"),
])
def test_device_options_are_checked_in_one_line(argv, fragment, capsys):
    rc, _, err = _main(["stream", *argv, "--duration", "1"], capsys)
    assert rc == 2 and fragment in _one_error_line(err)


# ------------------------------------------------------------------------------------ full-cap responses
def _peaks(times: np.ndarray, y: np.ndarray) -> list[int]:
    """The samples of the largest field in the P1 (80-130 ms) and N1 (140-200 ms) windows."""
    out = []
    for lo, hi in ((0.08, 0.13), (0.14, 0.2)):
        w = np.flatnonzero((times >= lo) & (times <= hi))
        out.append(int(w[np.argmax(np.abs(y[:, w]).max(0))]))
    return out


@pytest.mark.parametrize("name", ["biosemi-64", "biosemi-128", "brainamp-32", "cyton-8"])
def test_the_cap_wide_topography_is_the_simulators(name):
    """The simulator's noise-free truth on the model's 17 channels, projected to the cap, against the same
    simulator's truth computed on the cap: topographies at the P1 and N1 peaks and their amplitudes."""
    cap = load_device(name).cap_for(M17)
    projection = cap_projection(M17, cap).matrix
    truth17, truth_cap = EvokedModel(M17), EvokedModel(cap)
    r, ratio = [], []
    for i in range(12):
        image, _ = make_stimulus(np.random.default_rng([5, i]), 96)
        y17, y = truth17.evoked(image), truth_cap.evoked(image)
        for j in _peaks(M17.times, y):
            estimate = projection @ y17[:, j]
            r.append(np.corrcoef(estimate, y[:, j])[0, 1])
            ratio.append(np.linalg.norm(estimate) / np.linalg.norm(y[:, j]))
    assert min(r) > 0.97 and np.median(r) > 0.99, (min(r), np.median(r))
    assert 0.75 < min(ratio) and max(ratio) < 1.25, (min(ratio), max(ratio))  # 17 posterior channels: +-25 %


def test_the_embedded_models_prediction_spreads_over_the_cap():
    """The embedded model's predictions, projected to a 64-channel cap, against the simulator's truth on that cap:
    the topography follows the truth, and the cap keeps the model's own amplitude (whatever the model gets wrong
    on its 17 channels, the projection neither adds nor hides)."""
    from vibe_rt.runtime.predictor import load_predictor

    predictor = load_predictor(None, "onnxruntime")
    cap = load_device("biosemi-64").cap_for(M17)
    projection = cap_projection(M17, cap).matrix
    truth17, truth_cap = EvokedModel(M17), EvokedModel(cap)
    images = [make_stimulus(np.random.default_rng([5, i]), 96)[0] for i in range(12)]
    epochs, _ = predictor.predict(predictor.preprocess(np.stack(images)))
    r_cap, ratio_cap, ratio_model = [], [], []
    for image, y in zip(images, epochs):
        y17, yc = truth17.evoked(image), truth_cap.evoked(image)
        for j in _peaks(M17.times, yc):
            estimate = projection @ y[:, j]
            r_cap.append(np.corrcoef(estimate, yc[:, j])[0, 1])
            ratio_cap.append(np.linalg.norm(estimate) / np.linalg.norm(yc[:, j]))
            ratio_model.append(np.linalg.norm(y[:, j]) / np.linalg.norm(y17[:, j]))
    assert np.median(r_cap) > 0.9, np.median(r_cap)
    assert np.median(ratio_cap) / np.median(ratio_model) == pytest.approx(1.0, abs=0.2)


def test_the_cap_projection_keeps_the_model_channels():
    """On the model's own channels and the template head the projection is the identity; a subject's head
    changes it by what that head changes."""
    assert np.abs(cap_projection(M17, M17).matrix - np.eye(17)).max() < 1e-9
    subject = draw_subject(4)
    individual = cap_projection(M17, M17, subject=subject).matrix / subject.amplitude_scale
    assert 0.01 < np.abs(individual - np.eye(17)).max() < 0.5


# ---------------------------------------------------------------------------------------- subjects
def test_a_subject_is_stable_per_seed_and_within_the_ranges():
    assert draw_subject(7) == draw_subject(7)
    subjects = [draw_subject(s) for s in range(400)]
    assert len({s.iaf_hz for s in subjects}) == 400 and draw_subject(7) != draw_subject(8)
    iaf = np.array([s.iaf_hz for s in subjects])
    assert iaf.min() >= IAF_HZ[2] and iaf.max() <= IAF_HZ[3]
    assert abs(iaf.mean() - 10.0) < 0.15 and 0.75 < iaf.std() < 1.0  # sd 1 Hz truncated to +-2 sd
    for values, (_, _, lo, hi) in (([math.log(s.alpha_scale) for s in subjects], ALPHA_LN),
                                   ([s.latency_shift_s for s in subjects], LATENCY_S),
                                   ([math.log(s.amplitude_scale) for s in subjects], AMPLITUDE_LN),
                                   ([s.head_scale for s in subjects], HEAD_SCALE)):
        assert lo <= min(values) and max(values) <= hi
    assert 0.005 < np.std([s.latency_shift_s for s in subjects]) < 0.0065
    amp = np.array([s.amplitude_scale for s in subjects])
    assert 0.3 < amp.std() / amp.mean() < 0.45  # CV 40 % (truncated)
    ratio = np.array([s.brain_to_skull for s in subjects])
    assert BRAIN_TO_SKULL[0] <= ratio.min() and ratio.max() <= BRAIN_TO_SKULL[1]
    assert TEMPLATE_SUBJECT.head.brain_to_skull_ratio == pytest.approx(82.5)


def test_a_subject_changes_the_alpha_the_head_and_the_responses():
    from scipy.signal import welch

    subject = draw_subject(4)  # alpha 10.88 Hz x0.67 (the template seed 1: 9.26 Hz)
    sfreq = 250.0
    cap = load_device("brainamp-32").cap_for(M17)
    peaks, rms = [], []
    for who in (None, subject):
        # the alpha part alone: the same seed with and without alpha (every other part draws the same numbers)
        x = [BackgroundNoise(cap, sfreq, seed=1, subject=who, alpha=a).generate(int(120 * sfreq)) for a in (1, 0)]
        alpha = (x[0] - x[1]).astype(np.float64)
        best = int(np.argmax(alpha.std(0)))
        f, pxx = welch(alpha[:, best], fs=sfreq, nperseg=int(8 * sfreq))
        band = (f > 5) & (f < 15)  # the band-pass is flat on top: its centre of mass is the peak frequency
        peaks.append(float((f[band] * pxx[band]).sum() / pxx[band].sum()))
        rms.append(alpha[:, best].std())
    assert abs(peaks[1] - subject.iaf_hz) < 0.3 and abs(peaks[0] - peaks[1]) > 1.0, peaks
    assert rms[1] / rms[0] == pytest.approx(math.sqrt(subject.alpha_scale), rel=0.15)
    template, individual = cap_projection(M17, cap), cap_projection(M17, cap, subject=subject)
    assert individual.amplitude_scale == pytest.approx(subject.amplitude_scale)
    # the same model channels reach the cap through another head: a different topography, the same median level
    diff = np.linalg.norm(individual.matrix / subject.amplitude_scale - template.matrix) / np.linalg.norm(
        template.matrix)
    assert 0.01 < diff < 0.5
    assert np.median(np.abs(individual.matrix)) / subject.amplitude_scale == pytest.approx(
        np.median(np.abs(template.matrix)), rel=0.25)


def _peak_time(data: np.ndarray, stamps: np.ndarray) -> float:
    """Timestamp of the largest sample of the channel with the largest response (parabolic refinement)."""
    ch = int(np.argmax(np.abs(data).max(0)))
    x = np.abs(data[:, ch].astype(float))
    i = int(np.argmax(x))
    a, b, c = x[i - 1], x[i], x[i + 1]
    return float(stamps[i] + 0.5 * (a - c) / (a - 2 * b + c) * np.median(np.diff(stamps)))


@pytest.mark.parametrize("device_delay, subject", [(0.0, None), (0.03, 3)])
def test_transport_delay_and_subject_latency_move_the_response(device_delay, subject, source_id):
    """A response appears ``device delay + subject latency shift`` after its onset's latency; the marker keeps
    the true onset, and the stream states the delay and the subject's draws."""
    latency = 0.1
    config = StreamConfig(source="none", device="brainamp-32", source_id=source_id, lookahead=0.2, noise_scale=0,
                          device_delay=device_delay, subject=subject)
    pipe = build_stream(config, predictor=PulsePredictor(M17, latency=latency, amplitude=20e-6))
    with pipe:
        onset = pylsl.local_clock() + 0.8
        pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), onset)
        info, data, stamps = collect_stream(source_id, 1.8)
    shift = draw_subject(subject).latency_shift_s if subject is not None else 0.0
    assert _peak_time(data, stamps) - onset == pytest.approx(latency + device_delay + shift, abs=0.002)
    meta = info.desc().child("vibe_rt")
    assert float(info.desc().child("synchronization").child_value("offset_mean")) == pytest.approx(device_delay)
    if subject is not None:
        assert float(meta.child_value("subject_latency_shift_s")) == pytest.approx(shift, abs=1e-6)
        assert float(meta.child_value("subject_iaf_hz")) == pytest.approx(draw_subject(subject).iaf_hz, abs=1e-5)
    assert "minimum-norm through" in meta.child_value("cap_projection")


@pytest.mark.parametrize("delay", [-0.015, 0.0, 0.0516])
def test_a_response_moves_by_the_delay_and_never_precedes_its_onset(delay):
    from vibe_rt.stream import Synthesizer

    srate, latency = 1000.0, 0.1
    pred = PulsePredictor(M17, latency=latency)
    synth = Synthesizer(M17, srate, response_delay_s=delay)
    assert synth.add(pred.epoch, onset=1.0) == "ok"
    out = synth.render(0, 2000)[:, 0]
    assert np.argmax(np.abs(out)) / srate == pytest.approx(1.0 + latency + delay, abs=1.5 / srate)
    assert not out[:int(1.0 * srate)].any()  # nothing before the onset, also when moved earlier


def test_the_recording_stores_the_device_codes(source_id, tmp_path):
    import mne

    path = tmp_path / "amp.vhdr"
    pipe = build_stream(StreamConfig(source="none", device="brainamp-32", source_id=source_id, lookahead=0.1,
                                     record=path), predictor=PulsePredictor(M17))
    with pipe:
        _, data, _ = collect_stream(source_id, 1.0)
    header = path.read_text()
    assert "BinaryFormat=INT_32" in header and "Ch1=Fp1,,0.1,µV" in header and "Ch32=PO10,,0.1,µV" in header
    raw = mne.io.read_raw_brainvision(path, verbose="error")
    assert raw.ch_names == list(load_device("brainamp-32").channels)
    uv = raw.get_data() * 1e6
    steps = uv / 0.1
    assert np.max(np.abs(steps - np.rint(steps))) < 1e-6 and 1 < np.median(uv.std(1)) < 100
    assert np.isin(np.round(data[:50, 0], 4), np.round(uv[0], 4)).all()  # the streamed values, as recorded


# ------------------------------------------------------------------------------------------ comparator
def test_the_comparator_reads_a_device_through_its_profile():
    from vibe_rt.compare.offline import make_extractor

    b64 = load_device("biosemi-64")
    with pytest.raises(ConfigError, match="no live channel matches"):
        make_extractor(M17, 2048.0, list(b64.channels), units=["microvolts"] * 64)
    by_label = make_extractor(M17, 2048.0, list(b64.channels), units=["microvolts"] * 64, device=b64).match
    assert len(by_label.matched) == 17 and by_label.matched["Oz"] == "A29" and not by_label.interpolated
    b128 = load_device("biosemi-128")
    by_position = make_extractor(M17, 2048.0, list(b128.channels), units=["microvolts"] * 128, device=b128).match
    assert len(by_position.interpolated) == 17 and by_position.method == "spline"
    w = by_position.weights  # each model channel is made of the nearby live electrodes
    oz = b128.positions[np.argmax(np.abs(w[M17.ch_names.index("Oz")]))]
    assert np.linalg.norm(oz - M17.positions[M17.ch_names.index("Oz")]) < 0.03


def test_a_live_comparison_matches_an_emulated_device(source_id):
    from vibe_rt.compare import DictSynth, LiveComparator

    pipe = build_stream(StreamConfig(source="none", device="biosemi-64", source_id=source_id, lookahead=0.1),
                        predictor=PulsePredictor(M17))
    matches = []
    with pipe:
        for device in (None, load_device("biosemi-64")):
            with LiveComparator(source_id, M17, DictSynth({}), markers=f"{source_id}-markers", resolve_timeout=5,
                                device=device) as live:
                matches.append(live.session.live.match)
                time.sleep(0.2)
    # the stream's own positions alone: every model channel interpolated; through the profile: matched by label
    assert len(matches[0].interpolated) == 17 and not matches[0].matched
    assert len(matches[1].matched) == 17 and matches[1].matched["POz"] == "A30" and not matches[1].interpolated
