"""Pure parts of vibe_rt.stream, without threads or LSL: clock math, pacing, synthesis, events, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _stream_helpers import PulsePredictor, small_montage

from vibe_rt.calibration import CalibrationProfile
from vibe_rt.errors import ConfigError
from vibe_rt.stream.clock import Pacer, SampleClock, chunk_samples
from vibe_rt.stream.events import EveryFrame, FixedRate, SceneChange, StimulusFactory, make_policy
from vibe_rt.stream.sources import DemoSource, Frame, as_rgb_uint8
from vibe_rt.stream.stats import PipelineStats, format_status
from vibe_rt.stream.synth import (
    LineNoise,
    PinkBackground,
    Synthesizer,
    ZeroBackground,
    make_background,
    resample_epochs,
    resample_factors,
)


class FakeClock:
    """A clock that only moves when told (sleep advances it)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.t += dt


# clock ---------------------------------------------------------------------------------------------------------
def test_sample_clock_no_drift_after_hours():
    sc = SampleClock(1000.0, t0=12345.678, lookahead=0.2)
    n = 1000 * 3600 * 24  # one day of samples
    assert sc.timestamp(n) == pytest.approx(12345.678 + 86400.0, abs=1e-9)
    # float accumulation would drift; the integer counter does not
    acc = 12345.678
    for _ in range(100_000):
        acc += 1 / 1000.0
    assert abs(sc.timestamp(100_000) - (12345.678 + 100.0)) < 1e-9 < abs(acc - (12345.678 + 100.0))
    ts = sc.timestamps(n, 5)
    assert np.allclose(np.diff(ts), 1e-3, atol=1e-8)


def test_sample_clock_due_and_emit_times():
    sc = SampleClock(250.0, t0=10.0, lookahead=0.2)
    assert sc.n_due(10.0) == 0 and sc.n_due(10.1999) == 0
    assert sc.n_due(10.2) == 1  # sample 0 (stamped 10.0) is due at 10.0 + lookahead
    assert sc.n_due(10.2 + 10 / 250) == 11
    assert sc.emit_time(11) == pytest.approx(10.0 + 11 / 250 + 0.2)
    assert sc.sample_index(10.0 + 7.4 / 250) == 7 and sc.sample_index(10.0 + 7.6 / 250) == 8
    assert chunk_samples(1000, 0.005) == 5 and chunk_samples(250, 0.005) == 1


def test_pacer_sleeps_to_absolute_targets_and_catches_up():
    clk = FakeClock(100.0)
    sc = SampleClock(1000.0, t0=100.0, lookahead=0.1)
    pacer = Pacer(sc, chunk=5, clock=clk, sleep=clk.sleep)
    emitted = []
    for _ in range(50):
        start, n = pacer.due()
        if n:
            emitted.append((start, n, clk()))
            pacer.advance(n)
        pacer.wait()
    # first push exactly when the first full chunk is due, then every 5 samples
    assert emitted[0][0] == 0
    starts = [s for s, _, _ in emitted]
    assert starts == sorted(starts) and all(n == 5 for _, n, _ in emitted[1:])
    for start, n, t in emitted:
        assert t >= sc.emit_time(start + n - 1) - 1e-9  # never early
        assert t - sc.emit_time(start + n - 1) < 1e-6   # and on time with a perfect clock
    # a 0.5 s stall: the next push catches up with every due sample, with correct indices
    clk.t += 0.5
    start, n = pacer.due()
    assert start == pacer.n_emitted and n == min(sc.n_due(clk()) - start, pacer.max_chunk)


# synthesis -----------------------------------------------------------------------------------------------------
def test_resample_factors():
    assert resample_factors(100, 250) == (5, 2)
    assert resample_factors(200, 1000) == (5, 1)
    assert resample_factors(100, 1000) == (10, 1)
    assert resample_factors(200, 250) == (5, 4)


@pytest.mark.parametrize(("up", "down"), [(4, 1), (5, 2), (1, 2), (41, 10)])
def test_resample_epochs_with_its_filter_made_once_equals_scipys_default(up, down):
    from scipy.signal import resample_poly

    epochs = np.random.default_rng(up).normal(size=(2, 3, 250))
    expected = resample_poly(epochs, up, down, axis=-1)
    for _ in range(2):  # the second call reuses the filter
        np.testing.assert_array_equal(resample_epochs(epochs, up, down), expected)


@pytest.mark.parametrize("srate", [250, 500, 1000])
def test_synth_places_pulse_at_onset_plus_latency(srate):
    pred = PulsePredictor(latency=0.1)
    synth = Synthesizer(pred.montage, srate, background=None, t0=50.0)
    onset = 50.0 + 0.3123
    assert synth.add(pred.epoch, onset) == "ok"
    out = synth.render(0, 2 * srate)  # two seconds
    peak = int(np.argmax(out[:, 0]))
    t_peak = 50.0 + peak / srate
    assert abs(t_peak - (onset + 0.1)) <= 1.0 / srate
    # EEG out in microvolts: the 10 uV pulse reads ~10 (resampling keeps the amplitude of a smooth pulse)
    assert out[peak, 0] == pytest.approx(10.0, rel=0.02)
    assert out[peak, 3] == pytest.approx(13.0, rel=0.02)
    # nothing before the onset (pre-stimulus part not added by default)
    assert np.all(out[: int((onset - 50.0) * srate) - 1] == 0)
    assert synth.idle


def test_synth_overlap_add_is_linear_and_continuous_across_renders():
    pred = PulsePredictor(latency=0.15)
    a = Synthesizer(pred.montage, 500, background=None, t0=0.0)
    b = Synthesizer(pred.montage, 500, background=None, t0=0.0)
    onsets = [0.1, 0.13, 0.5, 0.52, 1.7]
    for t in onsets:
        a.add(pred.epoch, t)
    single = []
    for t in onsets:
        s = Synthesizer(pred.montage, 500, background=None, t0=0.0)
        s.add(pred.epoch, t)
        single.append(s.render(0, 1500))
    # render in odd chunk sizes: same as one render of the sum of single responses
    pieces, start = [], 0
    for n in [7, 1, 333, 250, 909]:
        pieces.append(a.render(start, n))
        start += n
    assert np.allclose(np.concatenate(pieces), np.sum(single, axis=0), atol=1e-5)
    with pytest.raises(ValueError):
        b.render(5, 10)  # must continue where it stopped


def test_synth_late_policies():
    pred = PulsePredictor(latency=0.1)
    for policy in ("clip", "drop"):
        s = Synthesizer(pred.montage, 1000, background=None, t0=0.0, late_policy=policy)
        s.render(0, 150)  # 150 ms already emitted
        status = s.add(pred.epoch, 0.05)  # starts at 50 ms: late
        out = s.render(150, 800)
        assert s.counters["late"] == 1
        if policy == "clip":
            assert status == "clipped" and s.counters["late_clipped"] == 1
            assert out[0, 0] > 1.0  # the remaining tail of the pulse (peak at 150 ms) is there
        else:
            assert status == "late" and s.counters["late_dropped"] == 1
            assert np.all(out == 0)
    s = Synthesizer(pred.montage, 1000, background=None, t0=0.0, late_policy="clip")
    s.render(0, 2000)
    assert s.add(pred.epoch, 0.05) == "late"  # entirely in the past: dropped even when clipping


def test_synth_never_outputs_nonfinite():
    pred = PulsePredictor(nan=True)
    s = Synthesizer(pred.montage, 500, background=None, t0=0.0)
    assert s.add(pred.epoch * np.nan, 0.0) == "nonfinite"
    assert s.counters["nonfinite_dropped"] == 1

    class BadBackground:
        def generate(self, n):
            x = np.zeros((n, 4), np.float32)
            x[0, 1] = np.inf
            return x

    s = Synthesizer(pred.montage, 500, background=BadBackground(), t0=0.0)
    out = s.render(0, 100)
    assert np.all(np.isfinite(out)) and s.counters["nonfinite_samples"] == 1
    huge = np.full(PulsePredictor().epoch.shape, 1e40)  # overflows float32 once in microvolts
    s = Synthesizer(pred.montage, 500, background=None, t0=0.0)
    s.add(huge, 0.0)
    assert np.all(np.isfinite(s.render(0, 500)))


def test_synth_far_future_onsets_grow_the_ring_buffer():
    pred = PulsePredictor(latency=0.1)
    s = Synthesizer(pred.montage, 1000, background=None, t0=0.0)
    cap = s._buf.shape[0]
    s.render(0, 3)
    assert s.add(pred.epoch, 10.0) == "ok"  # 10 s ahead: beyond the initial capacity
    assert s._buf.shape[0] > cap
    out = np.concatenate([s.render(i, 1000) for i in range(3, 11003, 1000)])
    assert abs(int(np.argmax(out[:, 0])) + 3 - 10100) <= 1
    assert s.add(pred.epoch, 500.0) == "too_far" and s.counters["too_far"] == 1


def test_background_and_line_noise():
    m = small_montage()
    bg = make_background(m, 500, seed=1)
    x = bg.generate(2000)
    assert x.shape == (2000, 4) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert 1e-6 < x.std() < 100e-6  # volts, EEG-like
    assert isinstance(make_background(m, 500, scale=0), ZeroBackground)
    pink = PinkBackground(m, 500, seed=0)
    y = pink.generate(20000)
    assert y.std() == pytest.approx(10e-6, rel=0.3)
    # line noise is phase-continuous across chunks and has the right frequency
    ln = LineNoise(50, 1000, np.ones(4), seed=0)
    whole = ln.render(0, 1000)
    assert np.allclose(np.concatenate([ln.render(0, 333), ln.render(333, 667)]), whole)
    spec = np.abs(np.fft.rfft(whole[:, 0]))
    assert int(np.argmax(spec)) == 50
    s = Synthesizer(m, 1000, background=None, line_noise=60, t0=0.0)
    out = s.render(0, 1000)
    assert int(np.argmax(np.abs(np.fft.rfft(out[:, 0])))) == 60
    assert 0.5 < np.abs(out).max() < 3.5  # 1-3 uV peak
    with pytest.raises(ConfigError):
        Synthesizer(m, 1000, line_noise=55)


def test_meg_output_in_tesla():
    from vibe_rt.montage import get_montage

    meg = get_montage("things-meg").pick(["MLO11", "MRO12", "MZO01"])
    s = Synthesizer(meg, 1000, background=None, t0=0.0)
    assert s.units == ["tesla"] * 3 and np.all(s.scale == 1.0)
    ep = np.zeros((3, meg.n_times), np.float32)
    ep[:, 60] = 100e-15
    s.add(ep, 0.0)
    assert 0 < np.abs(s.render(0, 1400)).max() < 1e-12


# events --------------------------------------------------------------------------------------------------------
def _frame(t: float, value: int, i: int = 0) -> Frame:
    return Frame(np.full((48, 64, 3), value, np.uint8), t, i, "test")


def test_every_and_fixed_rate():
    assert all(EveryFrame()(_frame(t, 0)) for t in (0, 0.001, 5))
    pol = FixedRate(4.0)
    frames = [_frame(10 + k / 30, 0, k) for k in range(90)]  # 3 s at 30 fps
    onsets = [f.t_capture for f in frames if pol(f)]
    assert len(onsets) == 12
    assert np.allclose(np.diff(onsets), 0.25, atol=1 / 30)
    # a gap without frames does not make a burst of onsets
    pol = FixedRate(4.0)
    got = [pol(_frame(t, 0)) for t in (0.0, 0.1, 2.0, 2.05, 2.1, 2.26)]
    assert got == [True, False, True, False, False, True]
    with pytest.raises(ConfigError):
        FixedRate(0)


def test_scene_change_threshold_refractory_and_max_interval():
    pol = SceneChange(threshold=12, refractory=0.25, max_interval=None)
    # scene A for 0.5 s, a camera-noise flicker, scene B at 0.5 s, back to A 0.1 s later (refractory), and
    # B again at 1.0 s
    rng = np.random.default_rng(0)
    frames = []
    for k in range(45):
        t = k / 30
        base = 60 if t < 0.5 or 0.6 <= t < 1.0 else 200
        img = np.clip(base + rng.normal(0, 3, (48, 64, 3)), 0, 255).astype(np.uint8)
        frames.append(Frame(img, t, k, "test"))
    onsets = [f.t_capture for f in frames if pol(f)]
    assert onsets[0] == 0.0
    assert onsets[1] == pytest.approx(0.5, abs=1 / 30)
    # the switch back to A at 0.6 s is within 0.25 s after the 0.5 s onset: it registers after the refractory
    assert onsets[2] == pytest.approx(0.75, abs=1 / 30)
    assert len(onsets) == 4 and onsets[3] == pytest.approx(onsets[2] + 0.25, abs=1 / 30)  # B again at 1.0 s
    # a static scene with max_interval produces onsets every max_interval
    pol = SceneChange(threshold=12, refractory=0.25, max_interval=1.0)
    static = [pol(_frame(k / 30, 80, k)) for k in range(91)]
    assert sum(static) == 4  # 0, 1, 2, 3 s
    assert isinstance(make_policy("scene"), SceneChange)
    with pytest.raises(ConfigError):
        make_policy("blink")


def test_demo_scene_triggers_scene_changes():
    src = DemoSource(width=160, height=120, seed=3)
    src._open()
    pol = SceneChange(max_interval=None)
    frames = [Frame(src.render(k / 30), k / 30, k, "demo") for k in range(300)]  # 10 s
    scenes = src.scene_index + 1
    onsets = sum(pol(f) for f in frames)
    assert 10 <= scenes <= 21
    assert scenes * 0.6 <= onsets <= scenes * 2
    assert all(f.image.dtype == np.uint8 and f.image.shape == (120, 160, 3) and f.image.max() > 0 for f in frames)


def test_stimulus_marker_and_codes():
    fac = StimulusFactory()
    s1 = fac(Frame(np.zeros((2, 2, 3), np.uint8), 5.0, 3, "images:x", {"image": "a.png", "code": 7}))
    s2 = fac(_frame(6.0, 0))
    assert (s1.event_id, s1.code, s2.event_id, s2.code) == (1, 7, 2, 1)
    m = s1.marker("clipped")
    assert m["image"] == "a.png" and m["status"] == "clipped" and m["frame"] == 3 and m["onset"] == 5.0
    assert as_rgb_uint8(np.ones((4, 4), np.float32)).shape == (4, 4, 3)


# calibration ---------------------------------------------------------------------------------------------------
def test_apply_calibration_gain_and_latency(tmp_path):
    """A profile's gain scales the epoch; its latency is the synthesizer's onset delay, per channel, which moves the
    whole tapered response (nothing cut at the window's end, also for a delay that is not a whole sample)."""
    m = small_montage()
    pred = PulsePredictor(montage=m, latency=0.7)  # a response near the window's end (0.79 s)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"format": "vibe-rt-calibration", "version": 1, "ch_names": ["Oz", "O1"],
                                "gain": [2.0, 0.5], "latency_s": [0.0305, -0.02]}))
    res = CalibrationProfile.load(path).resolve(m)  # a profile of an earlier version: channels named "ch_names"
    i_oz, i_o1, i_o2 = m.ch_names.index("Oz"), m.ch_names.index("O1"), m.ch_names.index("O2")
    assert res.latency_s[[i_oz, i_o1, i_o2]].tolist() == [0.0305, -0.02, 0.0]
    scaled = res.apply_gain(pred.epoch[None])[0]
    assert np.allclose(scaled[i_oz], 2 * pred.epoch[i_oz]) and np.array_equal(scaled[i_o2], pred.epoch[i_o2])
    srate = 1000
    plain = Synthesizer(m, srate, background=None, t0=0.0)
    delayed = Synthesizer(m, srate, background=None, t0=0.0, delay_s=res.latency_s)
    plain.add(pred.epoch, 1.0)
    delayed.add(scaled, 1.0)
    a, b = plain.render(0, 3 * srate), delayed.render(0, 3 * srate)
    for ch, gain, lat in ((i_oz, 2.0, 0.0305), (i_o1, 0.5, -0.02), (i_o2, 1.0, 0.0)):
        t_plain, t_delayed = np.argmax(a[:, ch]) / srate, np.argmax(b[:, ch]) / srate
        assert t_delayed - t_plain == pytest.approx(lat, abs=0.6 / srate)
        # the whole response is there, delayed: same area, same peak (the 0.7 s pulse 30 ms later is not cut)
        assert b[:, ch].sum() == pytest.approx(gain * a[:, ch].sum(), rel=1e-3)
        assert b[:, ch].max() == pytest.approx(gain * a[:, ch].max(), rel=0.01)
    # the delay is exact where it is a whole number of samples: the channel equals the plain one, moved
    assert np.allclose(b[:-20, i_o1], 0.5 * a[20:, i_o1], atol=1e-9)
    with pytest.raises(ConfigError):
        CalibrationProfile.load(tmp_path / "missing.json")


def test_stats_snapshot_and_status_line():
    clk = FakeClock(0.0)
    st = PipelineStats(clk)
    for i in range(100):
        st.time("inference", 0.001 * (i + 1))
    st.incr("events", 5)
    st.pushed(0.0, 0)
    clk.t = 10.0
    st.pushed(10.0, 10_000)
    snap = st.snapshot()
    assert snap["inference_ms"]["p50"] == pytest.approx(50.5, abs=0.6)
    assert snap["effective_srate"] == pytest.approx(1000.0)
    line = format_status(snap)
    assert "\n" not in line and "infer p50/p99" in line and "rate=1000.00Hz" in line


def test_block_background_is_the_same_sequence():
    from vibe_rt.stream.synth import BlockBackground

    m = small_montage()
    ref = PinkBackground(m, 1000, seed=5).generate(1000)
    blk = BlockBackground(PinkBackground(m, 1000, seed=5), 64)
    sizes = [5, 1, 63, 64, 65, 200, 2, 600]
    got = np.concatenate([blk.generate(n) for n in sizes])
    assert np.array_equal(got, ref)


# review regressions ------------------------------------------------------------------------------------------
def test_timestamps_are_exact_per_sample_values():
    sc = SampleClock(333.0, t0=12345.678901, lookahead=0.1)
    for start in (0, 7, 10**7, 3 * 10**9 + 1):  # up to ~100 days at 333 Hz
        assert sc.timestamps(start, 250) == [sc.t0 + i / sc.srate for i in range(start, start + 250)]


def test_synth_render_longer_than_the_ring_does_not_repeat_responses():
    """A catch-up push after a stall may be longer than the ring buffer: samples beyond it hold no response."""
    pred = PulsePredictor(latency=0.1)
    s = Synthesizer(pred.montage, 1000, background=None, t0=0.0)
    cap = s._buf.shape[0]
    s.add(pred.epoch, 0.0)
    out = s.render(0, cap + 1024)  # the ring holds a power of two of samples
    assert int(np.argmax(out[:, 0])) == 100  # the pulse once, at its time ...
    assert np.all(out[cap:] == 0)  # ... and not again one ring length later
    ref = Synthesizer(pred.montage, 1000, background=None, t0=0.0)
    ref.add(pred.epoch, 0.0)
    assert np.allclose(np.concatenate([ref.render(i, 128) for i in range(0, cap + 1024, 128)]), out)


def test_pipeline_resolves_calibration_once(tmp_path):
    from vibe_rt.stream.pipeline import StreamPipeline

    m = small_montage()
    foreign = CalibrationProfile(montage="things-meg", channels=["MLC11"], gain=[2.0], latency_s=0.0)
    with pytest.raises(ConfigError, match="none of the streamed channels"):
        StreamPipeline(PulsePredictor(montage=m), calibration=foreign, background=None)
    partial = CalibrationProfile(channels=["oz"], gain=[2.0], latency_s=0.0)
    p = StreamPipeline(PulsePredictor(montage=m), calibration=partial, background=None)
    assert p.calibration.montage is p.montage and p.calibration.missing == tuple(c for c in m.ch_names if c != "Oz")
    assert p.calibration.gain.tolist() == [2.0 if c == "Oz" else 1.0 for c in m.ch_names]
    pred = PulsePredictor(montage=m)
    out = p.calibration.apply_gain(pred.epoch[None])[0]
    assert np.allclose(out, pred.epoch * p.calibration.gain[:, None])
    with pytest.raises(ConfigError, match="takes a CalibrationProfile"):
        StreamPipeline(PulsePredictor(montage=m), calibration=partial.to_dict(), background=None)
