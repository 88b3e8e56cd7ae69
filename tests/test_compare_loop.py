"""The closed loop end to end, with the embedded model and the real pipeline: stream a rapid session (SOA 0.25 s,
shuffled passes) and record it; compare the recording with the model through its events sidecar; record it as a
lab would (30 ms later, per-channel gains, 500 Hz, channels shuffled, noise), calibrate from that, stream again
with the profile and compare again: the residual latency is below a millisecond, the ERP r at the noise ceiling,
and the calibrated stream's responses are delayed, never cut."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")

from vibe_rt.calibration import CalibrationProfile  # noqa: E402
from vibe_rt.cli import main  # noqa: E402
from vibe_rt.compare.groundtruth import lab_recording  # noqa: E402
from vibe_rt.stream import OutputSpec, RecordSpec, StreamPipeline  # noqa: E402

SOA, N_IMAGES, N_PASSES, SRATE, LATENCY = 0.25, 8, 6, 1000.0, 0.03


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    for i in range(N_IMAGES):  # gratings of different orientation, frequency and contrast
        th, f, c = rng.uniform(0, np.pi), rng.uniform(0.03, 0.2), rng.uniform(0.3, 1.0)
        g = 0.5 + 0.5 * c * np.sin(2 * np.pi * f * (np.cos(th) * xx + np.sin(th) * yy))
        rgb = np.clip(g[..., None] * rng.uniform(0.5, 1.0, 3), 0, 1)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), (255 * rgb).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def predictor():
    from vibe_rt.runtime.predictor import load_predictor

    return load_predictor(None, "auto")


def _schedule() -> list[tuple[float, int]]:
    """(seconds after the stream's first sample, image index): a new random order on every pass."""
    rng = np.random.default_rng(7)
    order = [int(i) for _ in range(N_PASSES) for i in rng.permutation(N_IMAGES)]
    return [(1.0 + k * SOA, i) for k, i in enumerate(order)]


def _stream(predictor, images: Path, path: Path, source_id: str, calibration=None) -> None:
    """Stream the schedule (onsets submitted just ahead of their time, as a display loop does) and record it."""
    import cv2

    names = sorted(p.name for p in images.iterdir())
    pixels = [cv2.cvtColor(cv2.imread(str(images / n)), cv2.COLOR_BGR2RGB) for n in names]
    pipe = StreamPipeline(predictor, background=None, calibration=calibration, record=RecordSpec(path),
                          output=OutputSpec(srate=SRATE, lookahead=0.3, source_id=source_id))
    with pipe:
        t0 = pipe.synth.t0
        for offset, i in _schedule():
            time.sleep(max(0.0, t0 + offset - 0.1 - pylsl.local_clock()))
            pipe.submit_onset(pixels[i], t0 + offset, {"image": names[i], "code": i + 1, "duration": 0.1})
        deadline = time.monotonic() + 10
        while not pipe.idle and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.3)  # the last response is emitted
        assert pipe.status()["late"] == 0


def _signal(path: Path) -> np.ndarray:
    import mne

    return mne.io.read_raw_brainvision(path, preload=True, verbose="error").get_data().T  # (n, C) volts


def test_stream_record_compare_calibrate_stream_compare(predictor, images, tmp_path, source_id, capsys):
    import mne

    montage = predictor.montage
    run_a, run_b = tmp_path / "a.vhdr", tmp_path / "b.vhdr"
    _stream(predictor, images, run_a, f"{source_id}-a")
    # the recording keeps what was shown: the sidecar's rows and the .vmrk name every image, in the order shown
    with open(tmp_path / "a_events.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    schedule = _schedule()
    assert [r["image"] for r in rows] == [f"img{i:02d}.png" for _, i in schedule]
    assert {r["trial_type"] for r in rows} == {"stimulus"} and {r["status"] for r in rows} == {"ok"}
    assert np.allclose([float(r["onset"]) for r in rows], [t for t, _ in schedule], atol=1e-6)
    assert [int(r["value"]) for r in rows] == [i + 1 for _, i in schedule] and rows[0]["duration"] == "0.1"
    ann = mne.io.read_raw_brainvision(run_a, verbose="error").annotations
    assert [d for d in ann.description if d.startswith("Stimulus")][:2] == \
        [f"Stimulus/S{i + 1:3d}: img{i:02d}.png" for _, i in schedule[:2]]
    # vibe-rt compares its own recording with its model (markers from the sidecar): the same signal
    assert main(["compare", "--live-file", str(run_a), "--images", str(images), "--report", str(tmp_path / "own")]) \
        == 0
    own = json.loads((tmp_path / "own" / "report.json").read_text())["summary"]
    assert own["n_events"] == N_IMAGES * N_PASSES and own["n_lost"] == 0
    assert abs(own["latency_s"]) < 5e-4 and own["erp_r"] > 0.99
    assert np.allclose(own["gain_per_channel"], 1.0, atol=0.02)

    # the lab's recording of run A: 30 ms later, gains 0.6-1.6, 500 Hz, channels shuffled, two more, 2 uV noise
    rng = np.random.default_rng(3)
    gain = rng.permutation(np.linspace(0.6, 1.6, montage.n_channels))
    live = lab_recording(_signal(run_a), SRATE, latency_s=LATENCY, gain=gain, noise=2e-6, sfreq=500.0, rng=rng)
    names = list(montage.ch_names) + ["Fz", "Cz"]
    data = np.concatenate([live, 1e-6 * rng.standard_normal((live.shape[0], 2))], axis=1)
    perm = rng.permutation(len(names))
    raw = mne.io.RawArray(data[:, perm].T, mne.create_info([names[i] for i in perm], 500.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([float(r["onset"]) for r in rows], 0.0,
                                        [json.dumps({"image": r["image"]}) for r in rows]))
    raw.save(tmp_path / "live_raw.fif", verbose="error")
    profile_path = tmp_path / "subject.json"
    capsys.readouterr()
    assert main(["calibrate", "--session", str(tmp_path / "live_raw.fif"), "--images", str(images), "--out",
                 str(profile_path)]) == 0
    out = capsys.readouterr().out
    profile = CalibrationProfile.load(profile_path)
    assert abs(profile.latency_s - LATENCY) < 1 / 500 and "+-" in out and "gain" in out.splitlines()[2]
    # each gain within its stated uncertainty (4 bootstrap standard errors: the weak channels of a few-uV model under
    # 2 uV of noise are the least certain), and the typical channel within 8 %
    se = np.asarray(profile.uncertainty["gain_se"])
    error = np.abs(np.asarray(profile.gain) - gain)
    assert np.all(error < 4 * se + 0.01), (error, se)
    assert np.median(error / gain) < 0.08
    assert profile.model_hash == predictor.meta["model_hash"] and len(profile.uncertainty["gain_se"]) == 17

    # stream again with the profile, compare the lab's recording with it
    _stream(predictor, images, run_b, f"{source_id}-b", CalibrationProfile.load(profile_path))
    assert main(["compare", "--live-file", str(tmp_path / "live_raw.fif"), "--synth", str(run_b), "--report",
                 str(tmp_path / "after"), "--montage", montage.name]) == 0
    assert main(["compare", "--live-file", str(tmp_path / "live_raw.fif"), "--synth", str(run_a), "--report",
                 str(tmp_path / "before"), "--montage", montage.name]) == 0
    after = json.loads((tmp_path / "after" / "report.json").read_text())["summary"]
    before = json.loads((tmp_path / "before" / "report.json").read_text())["summary"]
    print(f"\nERP r before {before['erp_r']:.3f} (latency {1e3 * before['latency_s']:.2f} ms), after "
          f"{after['erp_r']:.3f} (residual {1e3 * after['latency_s']:.2f} ms), ceiling {after['noise_ceiling']:.3f}")
    assert abs(after["latency_s"]) < 1e-3 and after["n_events"] == N_IMAGES * N_PASSES
    assert after["erp_r"] > after["noise_ceiling"] - 0.02 and after["erp_r"] > before["erp_r"] + 0.1
    assert np.allclose(after["gain_per_channel"], 1.0, atol=0.05)
    # delayed, never cut: the calibrated signal is the plain one moved and scaled, no step where an epoch ends
    a, b = _signal(run_a), _signal(run_b)
    step_a, step_b = np.abs(np.diff(a, axis=0)).max(axis=0), np.abs(np.diff(b, axis=0)).max(axis=0)
    assert np.all(step_b <= 1.05 * np.asarray(profile.gain) * step_a + 1e-9)
    shift = int(round(profile.latency_s * SRATE))
    n = min(len(a), len(b)) - shift
    assert np.allclose(b[shift:shift + n], a[:n] * np.asarray(profile.gain), atol=0.02 * np.abs(b).max())
