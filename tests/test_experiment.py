"""Experiment logic without a window: design, frame timing, drop detection, clocks, log, markers, CLI parsing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vibe_rt.errors import ConfigError, MissingDependencyError
from vibe_rt.experiment import (
    ExperimentLog,
    FramePacer,
    MarkerOutlets,
    RsvpConfig,
    build_trials,
    detect_drops,
    frame_timing,
    frames_for_duration,
    measure_offset,
    read_log,
    score_responses,
)
from vibe_rt.experiment.rsvp import estimate_refresh, planned_onsets


# design and timing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, hz, expected", [(0.1, 60, 6), (0.05, 60, 3), (0.1, 144, 14), (0.1, 75, 8),
                                                   (0.1, 120, 12), (0.2, 59.94, 12), (0.0, 60, 0), (0.004, 60, 0)])
def test_frames_for_duration(seconds: float, hz: float, expected: int) -> None:
    assert frames_for_duration(seconds, hz) == expected


def test_frame_timing_image_at_least_one_frame() -> None:
    t = frame_timing(RsvpConfig(on_s=0.004, off_s=0.1), 60.0)
    assert (t.on_frames, t.off_frames, t.soa_frames) == (1, 6, 7)
    assert t.on_s == pytest.approx(1 / 60) and t.off_s == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="refresh rate"):
        frames_for_duration(0.1, 0)
    for bad in (0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--on must be a number > 0"):
            RsvpConfig(on_s=bad)
    with pytest.raises(ConfigError, match="--pause"):
        RsvpConfig(pause_s=float("nan"))


def test_build_trials_seeded_balanced_sequences() -> None:
    images = [f"im{i:02d}.png" for i in range(23)]
    cfg = RsvpConfig(repetitions=3, sequence_length=10, seed=7, target_prob=0.0)
    trials = build_trials(images, cfg)
    assert trials == build_trials(images, cfg)  # same seed, same design
    assert [t.image for t in trials] != [t.image for t in build_trials(images, RsvpConfig(
        repetitions=3, sequence_length=10, seed=8, target_prob=0.0))]
    assert Counter(t.image for t in trials) == {name: 3 for name in images}
    assert [t.trial for t in trials] == list(range(69))
    lengths = Counter(t.sequence for t in trials)
    assert [lengths[s] for s in range(7)] == [10] * 6 + [9]
    assert all(trials[i].image != trials[i + 1].image for i in range(len(trials) - 1))
    assert all(t.code == images.index(t.image) + 1 and not t.is_target for t in trials)
    # each repetition is a full permutation
    for r in range(3):
        assert sorted(t.image for t in trials[23 * r:23 * (r + 1)]) == images


def test_build_trials_targets() -> None:
    images = [f"im{i}.png" for i in range(40)]
    targets = ["buzz1.png", "buzz2.png"]
    trials = build_trials(images, RsvpConfig(sequence_length=8, seed=1, target_prob=1.0), targets)
    seqs = sorted({t.sequence for t in trials})
    assert len(seqs) == 5
    for s in seqs:
        seq = [t for t in trials if t.sequence == s]
        tgt = [t for t in seq if t.is_target]
        assert len(tgt) == 1 and len(seq) == 9 and tgt[0].position >= 1
        assert tgt[0].image in targets and tgt[0].code == 40 + 1 + targets.index(tgt[0].image)
        assert [t.position for t in seq] == list(range(9))
    half = build_trials(images * 10, RsvpConfig(sequence_length=4, seed=2, target_prob=0.5), targets)
    n_seq = half[-1].sequence + 1
    frac = sum(t.is_target for t in half) / n_seq
    assert 0.35 < frac < 0.65


def test_planned_onsets_whole_frames() -> None:
    timing = frame_timing(RsvpConfig(on_s=0.1, off_s=0.1), 60.0)
    trials = build_trials(["a", "b", "c"], RsvpConfig(sequence_length=3, seed=0))
    np.testing.assert_allclose(planned_onsets(trials, timing), [0.0, 12 / 60, 24 / 60])


def test_detect_drops_on_synthetic_flips() -> None:
    period = 1 / 60
    rng = np.random.default_rng(0)
    n_frames = np.arange(200, dtype=float)
    # frames 50 and 120 are late by one and two refreshes; jitter of +-0.3 periods is not a drop
    n_frames[50:] += 1
    n_frames[120:] += 2
    times = 10.0 + n_frames * period + rng.uniform(-0.15, 0.15, 200) * period
    intervals, missed = detect_drops(times, period)
    assert math.isnan(intervals[0])
    assert np.flatnonzero(missed).tolist() == [50, 120]
    assert missed[50] == 1 and missed[120] == 2 and missed.sum() == 3
    # PsychoPy's stricter 1.2 threshold flags jitter of 1.3 periods; 1.5 does not
    times2 = np.array([0, 1, 2.3, 3.3, 4.3]) * period
    assert detect_drops(times2, period)[1].sum() == 0
    assert detect_drops(times2, period, threshold=1.2)[1].sum() == 1
    assert estimate_refresh(times) == pytest.approx(60.0, rel=0.02)


def test_score_responses() -> None:
    score = score_responses([10.0, 20.0, 30.0], [10.5, 10.6, 20.05, 31.0, 45.0], window=(0.15, 1.5))
    assert (score.hits, score.misses, score.false_alarms) == (2, 1, 3)
    assert score.reaction_times == pytest.approx([0.5, 1.0])
    assert score.to_dict()["median_rt"] == pytest.approx(0.75)


def test_frame_pacer_absolute_grid_and_skips() -> None:
    now = [100.0]
    slept: list[float] = []

    def clock() -> float:
        return now[0]

    def sleep(dt: float) -> None:
        slept.append(dt)
        now[0] += dt

    pacer = FramePacer(50.0, clock=clock, sleep=sleep, spin_s=0.0)
    times = [pacer.wait()]
    for _ in range(3):
        now[0] += 0.003  # drawing takes 3 ms
        times.append(pacer.wait())
    np.testing.assert_allclose(times, [100.0, 100.02, 100.04, 100.06])
    now[0] += 0.05  # a stall of 2.5 frames: the missed refreshes are lost, the grid is kept
    t = pacer.wait()
    assert t == pytest.approx(100.12) and (t - 100.0) / 0.02 == pytest.approx(6)


# clocks -------------------------------------------------------------------------------------------------------
def test_measure_offset_fake_clocks() -> None:
    state = {"t": 50.0}

    def dst() -> float:
        state["t"] += 1e-6
        return state["t"]

    def src() -> float:
        state["t"] += 1e-6
        return state["t"] - 7.25

    off = measure_offset(src, dst, n_reads=20)
    assert off.offset == pytest.approx(7.25, abs=1e-9) and off.uncertainty == pytest.approx(1e-6)
    assert off.to_dst(1.0) == pytest.approx(8.25) and off.to_src(8.25) == pytest.approx(1.0)


def test_lsl_clock_is_the_steady_clock() -> None:
    """pylsl.local_clock (liblsl's steady_clock) and time.monotonic/perf_counter are one clock on Linux."""
    pylsl = pytest.importorskip("pylsl")
    if not sys.platform.startswith("linux"):
        pytest.skip("the clock identity is documented for Linux only")
    off = measure_offset(time.perf_counter, pylsl.local_clock, n_reads=200)
    assert abs(off.offset) < 1e-3 and off.uncertainty < 1e-4
    off_mono = measure_offset(time.monotonic, pylsl.local_clock, n_reads=200)
    assert abs(off_mono.offset) < 1e-3


def test_psychopy_clock_offset_to_lsl() -> None:
    """core.getTime() = raw timer - import time; the bracketing offset recovers exactly that (no window needed)."""
    pytest.importorskip("psychopy", reason="PsychoPy is not installed (pip install 'vibe-rt[psychopy]')")
    import pylsl
    from psychopy import clock as pclock
    from psychopy import core

    from vibe_rt.experiment import psychopy_to_lsl

    off = psychopy_to_lsl()
    assert off.uncertainty < 1e-4
    t_ps = core.getTime()
    assert off.to_dst(t_ps) == pytest.approx(pylsl.local_clock(), abs=2e-3)
    raw = measure_offset(pclock.getTime, pylsl.local_clock, n_reads=200)
    assert off.offset == pytest.approx(raw.offset + core.monotonicClock.getLastResetTime(), abs=1e-4)
    if sys.platform.startswith("linux"):
        assert abs(raw.offset) < 1e-3  # psychtoolbox.GetSecs or perf_counter: CLOCK_MONOTONIC like liblsl
    time.sleep(0.05)
    assert psychopy_to_lsl().offset == pytest.approx(off.offset, abs=1e-4)  # no drift


# log ----------------------------------------------------------------------------------------------------------
def test_log_roundtrip_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.tsv"
    with ExperimentLog(path, {"refresh_hz": 60.0, "config": {"a": 1}}) as log:
        log.write(trial=0, sequence=0, position=0, image="a.png", is_target=False, code=1, planned_onset=12.5,
                  actual_onset_lsl=12.500123, flip_interval=1 / 60, on_duration=0.1, dropped=0, marker="stim")
        log.write(image="<space>", code=99999, actual_onset_lsl=13.0, marker="response")
        log.comment("n_dropped", 0)
        with pytest.raises(ConfigError, match="unknown experiment-log columns"):
            log.write(nope=1)
    header, rows = read_log(path)
    assert header["refresh_hz"] == "60.000000" and json.loads(header["config"]) == {"a": 1}
    assert header["n_dropped"] == "0"
    assert rows[0]["actual_onset_lsl"] == 12.500123 and rows[0]["is_target"] == 0 and rows[0]["code"] == 1
    assert rows[1]["trial"] is None and rows[1]["marker"] == "response"


def test_log_intact_after_kill(tmp_path: Path) -> None:
    """Rows are on disk as soon as written: a process killed mid-run leaves a readable log."""
    path = tmp_path / "killed.tsv"
    code = (f"import os, time\nfrom vibe_rt.experiment.log import ExperimentLog\n"
            f"log = ExperimentLog({str(path)!r}, {{'run': 1}})\n"
            "for i in range(5):\n    log.write(trial=i, image=f'{i}.png', actual_onset_lsl=1.0 + i)\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.kill()  # no cleanup at all (harsher than Ctrl-C)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, rows = read_log(path)
    assert [r["trial"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[-1]["actual_onset_lsl"] == 5.0


# markers (real LSL, no display) -------------------------------------------------------------------------------
def test_marker_outlets_alone(source_id: str) -> None:
    import pylsl

    outlets = MarkerOutlets("exp-test", source_id)
    try:
        infos = {}
        for kind in ("markers", "codes"):
            found = pylsl.resolve_byprop("source_id", f"{source_id}-{kind}", timeout=5.0)
            assert found, f"the {kind} stream was not found"
            infos[kind] = found[0]
        assert infos["markers"].type() == "Markers" and infos["markers"].channel_format() == pylsl.cf_string
        assert infos["codes"].channel_format() == pylsl.cf_int32
        inlets = {k: pylsl.StreamInlet(v) for k, v in infos.items()}
        for inlet in inlets.values():
            inlet.open_stream(timeout=5.0)
        time.sleep(0.2)
        t0 = pylsl.local_clock()
        for i in range(5):
            outlets.submit_onset(np.zeros((4, 4, 3), np.uint8), t0 + 0.1 * i,
                                 {"image": f"im{i}.png", "code": i + 1, "trial": i, "target": i == 3})
        got: dict[str, tuple[list, list]] = {}
        for kind, inlet in inlets.items():
            samples, stamps = [], []
            deadline = time.monotonic() + 5.0
            while len(samples) < 5 and time.monotonic() < deadline:
                s, ts = inlet.pull_chunk(timeout=0.5)
                samples += s
                stamps += ts
            got[kind] = (samples, stamps)
        np.testing.assert_allclose(got["markers"][1], t0 + 0.1 * np.arange(5), atol=1e-6)
        np.testing.assert_allclose(got["codes"][1], t0 + 0.1 * np.arange(5), atol=1e-6)
        assert [c[0] for c in got["codes"][0]] == [1, 2, 3, 4, 5]
        markers = [json.loads(m[0]) for m in got["markers"][0]]
        assert [m["image"] for m in markers] == [f"im{i}.png" for i in range(5)]
        assert markers[3]["target"] is True and markers[0]["status"] == "marker-only"
        assert markers[2]["onset"] == pytest.approx(t0 + 0.2, abs=1e-6)
    finally:
        outlets.close()


def test_key_press_goes_through_the_pipeline_lock_and_recording(source_id: str, tmp_path: Path) -> None:
    """OnsetReporter.response on a StreamPipeline: the key press is on the LSL marker streams and in --record."""
    import mne
    import pylsl

    from vibe_rt.experiment import ClockOffset, OnsetReporter
    from vibe_rt.montage import get_montage
    from vibe_rt.stream import OutputSpec, RecordSpec, StreamPipeline

    path = tmp_path / "keys.vhdr"
    pipe = StreamPipeline(montage=get_montage("things-eeg2"), background=None,
                          output=OutputSpec(srate=200, lookahead=0.05, source_id=source_id), record=RecordSpec(path))
    with pipe:
        inlets = {}
        for kind in ("markers", "codes"):
            (info,) = pylsl.resolve_byprop("source_id", f"{source_id}-{kind}", timeout=5.0)
            inlets[kind] = pylsl.StreamInlet(info)
            inlets[kind].open_stream(timeout=5.0)
        rep = OnsetReporter(None, pipe, clock_offset=ClockOffset(100.0, 0.0))  # LSL = PsychoPy + 100 s
        t_key = rep.response("space", pipe.sample_clock.t0 + 0.2 - 100.0, {"trial": 3})
        time.sleep(0.5)
        (marker,), (m_ts,) = inlets["markers"].pull_chunk(timeout=2.0)
        (code,), (c_ts,) = inlets["codes"].pull_chunk(timeout=2.0)
        t0 = pipe.sample_clock.t0
    assert t_key == pytest.approx(t0 + 0.2) and m_ts == pytest.approx(t_key) and c_ts == pytest.approx(t_key)
    m = json.loads(marker[0])
    assert (m["key"], m["kind"], m["status"], m["trial"], code[0]) == ("space", "response", "response", 3, 99999)
    raw = mne.io.read_raw_brainvision(path, verbose="error")
    (ann,) = [a for a in raw.annotations if a["description"].startswith("Response")]
    assert ann["description"] == "Response/R99999" and ann["onset"] == pytest.approx(0.2, abs=1 / 200)


# CLI and optional dependency ----------------------------------------------------------------------------------
def test_cli_help_and_targets(tmp_path: Path) -> None:
    from vibe_rt._commands.experiment import config_from_args
    from vibe_rt.cli import build_parser
    from vibe_rt.experiment.session import resolve_targets

    parser = build_parser()
    args = parser.parse_args(["experiment", "rsvp", "--images", str(tmp_path), "--on", "0.05", "--windowed",
                              "--no-synth", "--targets", "0.25", "--seed", "3", "--srate", "250"])
    cfg = config_from_args(args)
    assert cfg.design.on_s == 0.05 and cfg.windowed and cfg.no_synth and args.func.__name__ == "run"
    assert (cfg.stream.srate, cfg.stream.seed, cfg.stream.source) == (250.0, 3, "none")
    cfg.validate()
    assert parser.parse_args(["experiment", "rsvp", "--images", "x"]).windowed is False
    assert parser.parse_args(["experiment", "rsvp", "--images", "x", "--fullscreen"]).windowed is False
    images = [tmp_path / f"{i}.png" for i in range(5)]
    kept, targets, prob = resolve_targets("0.25", images, 0.5, seed=3)
    assert len(kept) == 4 and len(targets) == 1 and targets[0] not in kept and prob == 0.25
    assert resolve_targets("0.25", images, 0.5, seed=3) == (kept, targets, prob)
    tdir = tmp_path / "targets"
    tdir.mkdir()
    (tdir / "t.png").write_bytes(b"")
    kept2, targets2, prob2 = resolve_targets(str(tdir), images, 0.4, seed=None)
    assert kept2 == images and [p.name for p in targets2] == ["t.png"] and prob2 == 0.4
    with pytest.raises(ConfigError, match="folder of images or a fraction"):
        resolve_targets("nope", images, 0.5, None)
    assert resolve_targets(None, images, 0.5, None) == (images, [], 0.0)


def test_missing_psychopy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from vibe_rt.experiment.psychopy_rsvp import import_psychopy

    monkeypatch.setitem(sys.modules, "psychopy", None)  # import psychopy -> ImportError
    with pytest.raises(MissingDependencyError, match=r"vibe-rt\[psychopy\]"):
        import_psychopy()


def test_no_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psychopy")
    if not sys.platform.startswith("linux"):
        pytest.skip("DISPLAY matters on Linux only")
    from vibe_rt.experiment.psychopy_rsvp import import_psychopy

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="xvfb-run"):
        import_psychopy()
