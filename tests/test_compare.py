"""Comparator, metrics, channel matching and calibration on ground-truth recordings (offline, no LSL)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vibe_rt.calibration import CalibrationProfile, shift_signal
from vibe_rt.compare import (
    Comparator,
    DictSynth,
    compare_offline,
    fit_calibration,
    match_channels,
    parse_marker,
    read_report,
    write_report,
)
from vibe_rt.compare import metrics as M
from vibe_rt.compare.groundtruth import make_ground_truth, template_erps
from vibe_rt.errors import ConfigError
from vibe_rt.montage import get_montage
from vibe_rt.stats import pearson, spearman_brown

LATENCY = 0.024


@pytest.fixture(scope="module")
def montage():
    return get_montage("things-eeg2").with_window(100.0, -0.1, 50)


@pytest.fixture(scope="module")
def truth(montage):
    return make_ground_truth(montage, n_images=6, n_reps=8, latency_s=LATENCY, gain=(0.7, 1.4), noise=3e-6,
                             sfreq=500.0, isi=0.45, seed=1)


@pytest.fixture(scope="module")
def session(truth, montage, tmp_path_factory):
    path = tmp_path_factory.mktemp("gt") / "gt_raw.fif"
    truth.raw.save(path, verbose="error")
    return compare_offline(path, montage, DictSynth(truth.synth))


def test_metrics_basics(montage):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 40))
    assert pearson(a, 2 * a + 1, axis=-1) == pytest.approx(np.ones(3))
    assert np.isnan(pearson(np.ones(5), np.arange(5.0), axis=None))
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert M.rmse(a, a + 0.5) == pytest.approx(0.5)
    # latency and gain, jointly, from wide synthesized ERPs: a fractional delay, per-channel gains and any offset per
    # image and channel (a baseline) are recovered to rounding; the parabola (the bootstrap's) to a fraction of a sample
    margin, n = 13, montage.n_times
    wide = template_erps(montage.with_window(montage.sfreq, montage.tmin - margin / montage.sfreq, n + 2 * margin),
                         4, seed=3)
    g = np.linspace(0.5, 2, montage.n_channels)
    offsets = np.random.default_rng(1).normal(0, 3e-6, (4, montage.n_channels, 1))
    for lag in (2.4, -3.7, 0.0):
        live = shift_signal(wide, lag)[..., margin:margin + n] * g[:, None] + offsets
        fit = M.fit_latency_gain(live, wide, margin, montage.sfreq)
        assert fit.latency_samples == pytest.approx(lag, abs=1e-3) and fit.gain == pytest.approx(g, rel=1e-4)
        assert fit.latency_s == pytest.approx(lag / montage.sfreq, abs=1e-5) and fit.r == pytest.approx(1.0)
        rough = M.fit_latency_gain(live, wide, margin, montage.sfreq, refine=False)
        assert rough.latency_samples == pytest.approx(lag, abs=0.25)
    per = np.linspace(-2.5, 3.5, montage.n_channels)
    live = shift_signal(wide, per)[..., margin:margin + n] * g[:, None]
    fit = M.fit_latency_gain(live, wide, margin, montage.sfreq, per_channel=True)
    assert fit.latency_samples == pytest.approx(per, abs=2e-3) and fit.gain == pytest.approx(g, rel=1e-3)
    assert np.array_equal(M.align(wide, margin, 2.0, n), wide[..., margin - 2:margin - 2 + n])


def test_recovers_latency_gain_and_r(session, truth, montage):
    comp = session.comparator
    s = comp.summary()
    assert s["n_events"] == 48 and s["n_lost"] == 0 and s["n_keys"] == 6
    # latency within +-1 sample at the model rate
    assert abs(s["latency_s"] - LATENCY) < 1.0 / montage.sfreq
    gain = np.asarray(s["gain_per_channel"])
    assert np.max(np.abs(gain / truth.gain - 1)) < 0.10
    # running ERP r approaches the noise-free value (noise only lowers it a little with 8 reps)
    assert truth.expected_r - 0.08 < s["erp_r"] < truth.expected_r + 0.02
    assert 0.8 < s["noise_ceiling"] <= 1.0
    assert s["erp_r_aligned"] > s["erp_r"] + 0.15
    assert len(comp.history) == 48 and comp.history[-1]["erp_r"] == pytest.approx(s["erp_r"])


@pytest.mark.parametrize("fmt", ["edf", "bdf"])
def test_offline_edf_and_bdf_match_fif(session, truth, montage, tmp_path, fmt):
    """The same recording exported by MNE as EDF+ or BDF+ (16/24-bit samples, markers as annotations, the last
    data record padded and annotated BAD_ACQ_SKIP) gives the FIF session's events and, within the
    quantisation, its numbers."""
    import mne

    path = tmp_path / f"gt.{fmt}"
    mne.export.export_raw(path, truth.raw, fmt=fmt, verbose="error")
    other = compare_offline(path, montage, DictSynth(truth.synth))
    a, b = session.comparator.summary(), other.comparator.summary()
    assert b["n_events"] == a["n_events"] == 48 and b["n_lost"] == 0 and b["n_keys"] == 6
    assert b["latency_s"] == pytest.approx(a["latency_s"], abs=0.2 / montage.sfreq)
    assert b["erp_r"] == pytest.approx(a["erp_r"], abs=0.01)
    assert np.allclose(b["gain_per_channel"], a["gain_per_channel"], rtol=0.02)


def test_calibration_improves_and_roundtrips(session, truth, montage, tmp_path):
    erps = session.comparator.erps()
    prof = fit_calibration(erps, montage, channel_map=session.live.match.to_dict()["map"])
    assert abs(prof.latency_s - LATENCY) < 1.0 / montage.sfreq
    assert np.max(np.abs(np.asarray(prof.gain) / truth.gain - 1)) < 0.10
    before, after = prof.metrics["before"], prof.metrics["after"]
    assert after["erp_r"] > before["erp_r"] + 0.2
    assert after["erp_rmse"] < 0.6 * before["erp_rmse"]
    held = prof.metrics["heldout"]
    assert held["after"]["erp_r"] > held["before"]["erp_r"] + 0.15
    assert held["after"]["erp_rmse"] < held["before"]["erp_rmse"]
    path = prof.save(tmp_path / "calibration" / "gt.json")
    written = json.loads(path.read_text())
    assert written["format"] == "vibe-rt-calibration" and written["version"] == 1
    loaded = CalibrationProfile.load(path)
    assert (loaded.channels, loaded.gain, loaded.latency_s, loaded.channel_map, loaded.n_events) == \
        (prof.channels, prof.gain, prof.latency_s, prof.channel_map, 48)
    # the uncertainty: a block bootstrap over the 48 events, a standard error per channel that covers the true error
    unc = loaded.uncertainty
    assert unc["method"] == "block bootstrap over events" and unc["n_events"] == unc["n_total"] == 48
    gain_se = np.asarray(unc["gain_se"])
    assert gain_se.shape == (montage.n_channels,) and np.all((gain_se > 0) & (gain_se < 0.1))
    assert 0 < unc["latency_se_s"] < 1.0 / montage.sfreq
    assert np.median(np.abs(np.asarray(prof.gain) - truth.gain) / gain_se) < 3
    # applied to a batch (B, C, T) float32 by the stream: the gain per channel (the latency is an onset delay)
    x = np.stack([truth.synth[k] for k in sorted(truth.synth)]).astype(np.float32)
    res = loaded.resolve(montage)
    y = res.apply_gain(x)
    assert y.shape == x.shape and y.dtype == np.float32 and res.latency_s == pytest.approx([prof.latency_s] * 17)
    assert np.allclose(y, x * np.asarray(prof.gain, np.float32)[:, None])
    # a profile keyed by other-case labels in another order applies by label
    p2 = dataclasses.replace(loaded, channels=[c.upper() for c in loaded.channels][::-1], gain=loaded.gain[::-1])
    assert np.allclose(p2.resolve(montage).apply_gain(x), y, atol=1e-12)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="not a vibe-rt calibration profile"):
        CalibrationProfile.load(bad)


def test_report_roundtrip(session, montage, tmp_path):
    path = write_report(tmp_path / "rep", session.comparator, info={"mode": "offline"})
    report, erps, mont = read_report(path.parent)
    assert mont.ch_names == montage.ch_names and len(erps.keys) == 6
    for f in ("erp_overlay.png", "metrics_over_time.png", "per_channel.png", "erps.npz"):
        assert (path.parent / f).stat().st_size > 1000
    assert "erp_overlay.png" in (path.parent / "index.html").read_text()
    assert report["summary"]["n_events"] == 48
    prof = fit_calibration(erps, mont)  # calibration from a saved report gives the same fit
    assert prof.latency_s == pytest.approx(session.comparator.summary()["latency_s"], abs=1e-9)


@pytest.mark.parametrize("kind", ["subset", "superset"])
def test_mismatched_channels(truth, montage, kind):
    """Live labels in another case; a subset is interpolated (spherical spline), a superset is ignored."""
    names = [c.lower() if i % 2 else c.upper() for i, c in enumerate(montage.ch_names)]
    drop = ["PO8", "P2", "Oz"]
    raw = truth.raw.copy()
    raw.rename_channels(dict(zip(montage.ch_names, names)))
    if kind == "subset":
        raw.drop_channels([n for n in names if n.lower() in {d.lower() for d in drop}])
    else:
        import mne

        extra = mne.io.RawArray(np.random.default_rng(0).standard_normal((2, raw.n_times)) * 1e-5,
                                mne.create_info(["FZ", "cz"], raw.info["sfreq"], "eeg"), verbose="error")
        raw.add_channels([extra], force_update_info=True)
    s = compare_offline(raw, montage, DictSynth(truth.synth))
    match = s.live.match
    if kind == "subset":
        assert sorted(match.interpolated) == sorted(drop) and match.method == "spline"
        assert match.matched["Pz"] == "PZ"
    else:
        assert not match.interpolated and sorted(match.ignored) == ["FZ", "cz"]
    summ = s.comparator.summary()
    assert abs(summ["latency_s"] - LATENCY) < 1.0 / montage.sfreq
    assert summ["erp_r_aligned"] > 0.8
    # interpolated channels still follow the synthesized ERP
    idx = [montage.ch_names.index(c) for c in drop]
    assert np.all(np.asarray(summ["erp_r_per_channel"])[idx] > 0.3)


def test_match_channels_idw_and_errors(montage):
    m = match_channels(montage, ["oz", "o1", "o2", "poz"], method="idw")
    assert m.weights.shape == (17, 4) and np.allclose(m.weights.sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="no live channel matches"):
        match_channels(montage, ["Fp1", "Fp2"])
    with pytest.raises(ConfigError, match="duplicated"):
        match_channels(montage, ["Oz", "OZ"])


def test_parse_marker():
    assert parse_marker(['{"image": "a.png", "frame_id": 3, "source": "cam"}'])[0] == "a.png"
    assert parse_marker("stim/b.jpg") == ("stim/b.jpg", {"description": "stim/b.jpg"})
    assert parse_marker([0.0, -1.0], ["x", '{"image": "c"}'])[0] == "c"
    assert parse_marker([7])[0] == "7"
    assert parse_marker([0]) is None


def test_snapshots_thin_out_with_many_images(montage):
    """A snapshot costs time in proportion to the images seen: with 200 images one is taken every 10 events, so
    the cost per event stays flat; the running mean of the event r is exact all the same."""
    from vibe_rt.compare.comparator import KEYS_PER_SNAPSHOT

    rng = np.random.default_rng(0)
    comp = Comparator(montage)
    x = rng.standard_normal((montage.n_channels, montage.n_times))
    for i in range(400):
        comp.update(x + rng.standard_normal(x.shape), x, f"img{i % 200}")
    late = [h for h in comp.history if h["n_events"] > 200]  # all 200 images seen: one snapshot per 10 events
    assert len(late) == 200 // (200 // KEYS_PER_SNAPSHOT) and late[-1]["n_events"] > 390
    assert comp.summary()["mean_event_r"] == pytest.approx(np.mean([e["r"] for e in comp.events]), rel=1e-12)
    n_small = Comparator(montage)
    for i in range(30):
        n_small.update(x + rng.standard_normal(x.shape), x, f"img{i % 6}")
    assert len(n_small.history) == 30  # few images: a snapshot per event


def test_comparator_rejects_bad_shape(montage):
    c = Comparator(montage)
    with pytest.raises(ConfigError, match="expected"):
        c.update(np.zeros((3, 5)), np.zeros((3, 5)), "x")


def test_cli_compare_and_calibrate(tmp_path, capsys, monkeypatch):
    """`vibe-rt compare --live-file ... --synth FILE` (a recording of the synthesized stream, epoched around the
    same markers), then `vibe-rt calibrate --session REPORT`."""
    from vibe_rt.cli import main

    full = get_montage("things-eeg2")
    kw = dict(n_images=4, n_reps=4, sfreq=250.0, isi=0.5, lead_s=1.0, seed=5)
    live = make_ground_truth(full, latency_s=LATENCY, gain=(0.7, 1.4), noise=1e-6, **kw)
    clean = make_ground_truth(full, latency_s=0.0, gain=(1.0, 1.0), noise=0.0, **kw)
    assert np.allclose(live.onsets, clean.onsets)
    live.raw.save(tmp_path / "live_raw.fif", verbose="error")
    clean.raw.save(tmp_path / "synth_raw.fif", verbose="error")
    rep = tmp_path / "report"
    assert main(["compare", "--live-file", str(tmp_path / "live_raw.fif"), "--synth", str(tmp_path / "synth_raw.fif"),
                 "--montage", "things-eeg2", "--report", str(rep)]) == 0
    out = capsys.readouterr().out
    assert "events compared: 16 (4 images), lost: 0" in out
    report = json.loads((rep / "report.json").read_text())
    assert abs(report["summary"]["latency_s"] - LATENCY) < 1.0 / full.sfreq
    prof_path = tmp_path / "calibration" / "gt.json"
    assert main(["calibrate", "--session", str(rep), "--out", str(prof_path)]) == 0
    out = capsys.readouterr().out
    assert "ERP r:    before" in out
    prof = CalibrationProfile.load(prof_path)
    assert abs(prof.latency_s - LATENCY) < 1.0 / full.sfreq
    assert np.max(np.abs(np.asarray(prof.gain) / live.gain - 1)) < 0.10
    assert prof.metrics["after"]["erp_r"] > prof.metrics["before"]["erp_r"]
    assert prof.metrics["after"]["erp_rmse"] < prof.metrics["before"]["erp_rmse"]
    assert prof.channel_map["Pz"] == "Pz"
    # --adapter fits through the embedded model's decoder; these template ERPs are not the model's, so whether it
    # is kept depends on the held-out score, which the output and the profile both report
    assert main(["calibrate", "--session", str(rep), "--out", str(prof_path), "--adapter"]) == 0
    out = capsys.readouterr().out
    fit = CalibrationProfile.load(prof_path).metrics["heldout"]["adapter"]
    assert f"latent adapter: held-out r {fit['identity_r']:+.3f}" in out
    assert (CalibrationProfile.load(prof_path).adapter is not None) == fit["kept"] == ("kept (penalty" in out)
    # without --out the profile goes to calibration/<session name>.json (relative to the working directory)
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--session", str(rep / "report.json")]) == 0
    assert "profile: calibration/report.json" in capsys.readouterr().out
    assert CalibrationProfile.load(tmp_path / "calibration" / "report.json").latency_s == prof.latency_s
    # a user error is one line, exit code 2
    assert main(["compare", "--montage", "things-eeg2", "--synth", "x"]) == 2
    assert "--live" in capsys.readouterr().err


def test_recovers_latency_and_gain_on_simulator_erps(tmp_path):
    """Same check on the physiological simulator's ground-truth ERPs (EvokedModel) at the full window."""
    simulate = pytest.importorskip("vibe_rt.data.simulate")
    full = get_montage("things-eeg2")
    model = simulate.EvokedModel(full)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    images = []
    for _ in range(5):  # gratings of different orientation/frequency/contrast plus noise
        th, f, c = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3), rng.uniform(0.3, 1.0)
        g = 0.5 + 0.5 * c * np.sin(2 * np.pi * f * (np.cos(th) * xx + np.sin(th) * yy))
        img = np.clip(g[..., None] + 0.1 * rng.standard_normal((64, 64, 3)), 0, 1)
        images.append((255 * img).astype(np.uint8))
    erps = np.stack([model.evoked(im) for im in images])
    scale = float(np.abs(erps).max())
    gt = make_ground_truth(full, erps=erps, latency_s=LATENCY, gain=(0.7, 1.4), noise=0.05 * scale, n_reps=8,
                           sfreq=250.0, isi=1.0, seed=7)
    s = compare_offline(gt.raw, full, DictSynth(gt.synth)).comparator.summary()
    assert s["n_events"] == 40 and s["n_lost"] == 0
    assert abs(s["latency_s"] - LATENCY) < 1.0 / full.sfreq
    assert np.max(np.abs(np.asarray(s["gain_per_channel"]) / gt.gain - 1)) < 0.10
    assert s["erp_r_aligned"] > s["erp_r"]


def test_per_channel_latency_profile(session, montage):
    prof = fit_calibration(session.comparator.erps(), montage, per_channel_latency=True)
    lat = np.asarray(prof.latency_s)
    assert lat.shape == (montage.n_channels,)
    assert abs(np.median(lat) - LATENCY) < 1.0 / montage.sfreq
    assert prof.metrics["after"]["erp_r"] > prof.metrics["before"]["erp_r"] + 0.2


def test_run_compare_and_calibrate_session_as_library_calls(tmp_path):
    """run_compare (what `vibe-rt compare` calls) returns the session and writes the report; calibrate_session fits
    the same profile from that report as from the recording compared anew."""
    from pathlib import Path

    from vibe_rt.compare import CalibrateConfig, CompareConfig, calibrate_session, run_compare

    full = get_montage("things-eeg2")
    kw = dict(n_images=4, n_reps=4, sfreq=250.0, isi=0.5, lead_s=1.0, seed=6)
    live = make_ground_truth(full, latency_s=LATENCY, gain=(0.7, 1.4), noise=1e-6, **kw)
    clean = make_ground_truth(full, latency_s=0.0, gain=(1.0, 1.0), noise=0.0, **kw)
    live.raw.save(tmp_path / "live_raw.fif", verbose="error")
    clean.raw.save(tmp_path / "synth_raw.fif", verbose="error")
    compare = CompareConfig(synth=str(tmp_path / "synth_raw.fif"), montage="things-eeg2")
    result = run_compare(dataclasses.replace(compare, live_file=tmp_path / "live_raw.fif", report=tmp_path / "rep"))
    assert result.summary["n_events"] == 16 and result.summary["n_lost"] == 0
    assert abs(result.summary["latency_s"] - LATENCY) < 1.0 / full.sfreq
    assert result.report == tmp_path / "rep" / "report.json" and result.report.is_file()
    assert result.info["mode"] == "offline" and result.channel_map["Pz"] == "Pz" and result.outages == []
    from_report, path = calibrate_session(CalibrateConfig(session=tmp_path / "rep", out=tmp_path / "a.json"))
    assert path == tmp_path / "a.json" and CalibrationProfile.load(path).gain == from_report.gain
    from_file, _ = calibrate_session(CalibrateConfig(session=tmp_path / "live_raw.fif", out=tmp_path / "b.json",
                                                     compare=compare))
    assert from_file.gain == from_report.gain and from_file.latency_s == from_report.latency_s
    assert from_file.channel_map == from_report.channel_map and from_file.name == "b"
    assert np.max(np.abs(np.asarray(from_file.gain) / live.gain - 1)) < 0.10
    # the default profile path: calibration/<session name>.json
    assert CalibrateConfig(session=tmp_path / "live_raw.fif").out_path == Path("calibration/live_raw.json")
    with pytest.raises(ConfigError, match="give --live NAME_OR_TYPE"):
        run_compare(compare)
