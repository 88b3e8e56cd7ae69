"""The stream's options (one declaration, one validation) and the failures a hostile user found: every float,
int and path option of ``vibe-rt stream`` refuses bad values in one line (exit 2); a recording never replaces an
earlier one; a full disk stops the recording, not the stream; an unreadable image is skipped, not fatal."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from _stream_helpers import PulsePredictor

from vibe_rt import cli
from vibe_rt.errors import ConfigError
from vibe_rt.options import ExistingPath, NewFile, Number, option_specs
from vibe_rt.stream import ImageFolderSource, OutputSpec, RecordSpec, StreamConfig, StreamPipeline, format_status
from vibe_rt.stream.stats import PipelineStats

pylsl = pytest.importorskip("pylsl")


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse errors exit
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith("vibe-rt: error: "), err
    return lines[0]


def _bad_values(name: str, rule, tmp: Path) -> list[str]:
    """Values that ``rule`` must refuse, as command-line text."""
    if isinstance(rule, Number):
        huge = "1e300" if not rule.integer else str(10**30)
        values = ["-5", huge] + ([] if rule.integer else ["nan", "inf", "-inf"])
        if rule.lo > 0 or (rule.lo == 0 and rule.lo_open):
            values.append("0")
        return values
    if type(rule).__name__ == "_Lookahead":  # "auto" or seconds
        return ["-5", "1e300", "nan", "inf", "soon"]
    if isinstance(rule, ExistingPath):
        wrong_kind = tmp / "a-file.png" if rule.kind == "folder" else tmp / "a-folder"
        return ["", str(tmp / "missing"), str(wrong_kind), "/proc/nope"]
    if isinstance(rule, NewFile):
        return ["", str(tmp / "a-folder"), "/proc/self/rec.vhdr", "/dev/full", str(tmp / "rec.txt"),
                str(tmp / "old.vhdr")]
    return []


def test_every_numeric_and_path_option_of_stream_refuses_bad_values(tmp_path, capsys):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file.png").write_bytes(b"x")
    (tmp_path / "old.vhdr").write_text("an earlier session")
    specs = option_specs(StreamConfig)
    tried = 0
    for name, spec in specs.items():
        for value in _bad_values(name, spec.rule, tmp_path):
            tail = [] if spec.flag == "--duration" else ["--duration", "1"]
            rc, err = _main(["stream", spec.flag, value, *tail], capsys)
            assert rc == 2, (spec.flag, value, err)
            line = _one_error_line(err)
            assert spec.flag in line or "argument" in line, (spec.flag, value, line)
            tried += 1
    numeric = [s for s in specs.values() if isinstance(s.rule, Number)]
    assert len(numeric) >= 14 and tried >= 94  # every option is covered, not a few


def test_negative_camera_index_is_refused_without_opencv(capsys):
    """OpenCV's VideoCapture(-1) crashes the process: the CLI and the source both refuse it first."""
    from vibe_rt.errors import SourceError
    from vibe_rt.stream import CameraSource

    rc, err = _main(["stream", "--camera", "-1"], capsys)
    assert rc == 2 and "--camera must be >= 0" in _one_error_line(err)
    with pytest.raises(SourceError, match="camera indexes start at 0"):
        CameraSource(-1)


@pytest.mark.parametrize("argv", [["data", "simulate", "--out", "x", "--noise-scale", "nan"],
                                  ["train", "vae", "--data", "d", "--out", "o", "--lr", "inf"],
                                  ["eval", "--model", "m", "--data", "d", "--splits", "-5"],
                                  ["train", "default", "--threads", "-1"],
                                  ["compare", "--live", "x", "--live-view", "nan"],
                                  ["bench", "stream", "--srate", "nan"]])
def test_every_command_refuses_non_finite_and_negative_numbers(argv, capsys):
    rc, err = _main(argv, capsys)
    assert rc == 2 and argv[-2] in _one_error_line(err)


@pytest.mark.parametrize("argv, fragment", [
    (["--name", ""], "--name must be a non-empty text"),
    (["--seed", "-5"], "--seed must be >= 0"),
    (["--srate", "1e9"], "<= 65536"),
    (["--duration", "nan"], "--duration must be a finite number"),
    (["--on", "nan"], "--on must be a finite number"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
    (["--max-interval", "nan"], "--max-interval must be a finite number"),
    (["--event-rate", "inf"], "--event-rate must be a finite number"),
    (["--record", ""], "needs a path"),
    (["--model", ""], "needs a path"),
    (["--camera", "0", "--images", "."], "not allowed with argument"),
])
def test_issue_examples(argv, fragment, capsys):
    rc, err = _main(["stream", *argv], capsys)
    assert rc == 2 and fragment in _one_error_line(err), err


def test_config_defaults_are_valid_and_options_are_declared_once():
    StreamConfig().validate()
    cfg = StreamConfig(images=Path("."))
    assert cfg.resolved_source == "images" and cfg.resolved_events == "every"
    assert StreamConfig().resolved_source == "demo" and StreamConfig().resolved_events == "scene"
    out = StreamConfig(srate=500, lookahead=0.1, chunk_ms=10, name="x").output_spec()
    assert out == OutputSpec(srate=500.0, lookahead=0.1, chunk_s=0.01, name="x")
    flags = [s.flag for s in option_specs(StreamConfig).values() if s.flag]
    assert len(flags) == len(set(flags))
    with pytest.raises(ConfigError, match="--srate"):
        StreamConfig(srate=math.nan).validate()


def test_status_line_before_the_first_push_says_not_available():
    line = format_status(PipelineStats(time.monotonic).snapshot())
    assert "rate=n/aHz" in line and "nan" not in line


# recordings ---------------------------------------------------------------------------------------------------
def test_a_second_recording_never_replaces_the_first(tmp_path, capsys):
    from vibe_rt.stream.record import BrainVisionWriter

    path = tmp_path / "session.vhdr"
    BrainVisionWriter(path, ["Oz"], ["microvolts"], 1000.0, 0.0).close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, err = _main(["stream", "--record", str(path), "--duration", "1"], capsys)
    assert rc == 2 and "exists already" in _one_error_line(err) and "--overwrite" in err
    with pytest.raises(ConfigError, match="exists already"):  # and so does the writer itself (no race)
        BrainVisionWriter(path, ["Oz"], ["microvolts"], 1000.0, 0.0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    BrainVisionWriter(path, ["Oz", "O1"], ["microvolts"] * 2, 1000.0, 0.0, overwrite=True).close()
    assert "Ch2=O1" in path.read_text()


def _pull_for(inlet, seconds: float) -> int:
    n, t_end = 0, time.monotonic() + seconds
    while time.monotonic() < t_end:
        _, ts = inlet.pull_chunk(timeout=0.05)
        n += len(ts)
    return n


def test_full_disk_stops_the_recording_not_the_stream(source_id, tmp_path):
    """ENOSPC from the kernel (the .eeg file handle swapped for /dev/full mid-session): the recorder stops with one
    clear line and cuts its files back to whole samples; the stream keeps its rate; what was written is readable."""
    import mne

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    path, srate = tmp_path / "rec.vhdr", 500
    pipe = StreamPipeline(PulsePredictor(), output=OutputSpec(srate=srate, lookahead=0.1, source_id=source_id),
                          record=RecordSpec(path))
    with pipe:
        inlet = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", source_id, timeout=5)[0])
        inlet.open_stream(5)
        pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), pylsl.local_clock() + 0.1)
        time.sleep(0.6)
        writer = pipe.writer
        with writer._lock:
            writer._eeg.close()
            writer._eeg = open("/dev/full", "wb")  # the next flush fails with OSError(28)
        n_after = _pull_for(inlet, 1.5)
        status = pipe.status()
        assert pipe.error is None and pipe.running
    assert writer.failure is not None and "No space left on device" in writer.failure
    assert "the stream went on" in writer.failure and "RECORDING STOPPED" in format_status(status)
    assert status["recording"] == writer.failure
    assert n_after > 0.8 * 1.5 * srate  # samples kept flowing to the inlet at the nominal rate
    size = path.with_suffix(".eeg").stat().st_size
    assert size == writer.n_samples * 4 * 4 and writer.n_samples > 0.3 * srate
    raw = mne.io.read_raw_brainvision(path, preload=True, verbose="error")
    assert raw.n_times == writer.n_samples
    assert all(a["onset"] * srate <= raw.n_times for a in raw.annotations)
    # the events sidecar stopped with the markers: one row per .vmrk marker, none past the recorded data
    rows = (tmp_path / "rec_events.tsv").read_text().splitlines()[1:]
    assert len(rows) == len([d for d in raw.annotations.description if d != "New Segment/"])
    assert all(float(r.split("\t")[0]) * srate <= raw.n_times for r in rows)


def test_stream_command_reports_a_failed_recording_with_exit_1(tmp_path, monkeypatch, capsys):
    """The CLI's end: the summary, then one line saying the recording stopped, exit 1 (not a traceback)."""
    from vibe_rt.stream import record

    real_write = record.BrainVisionWriter.write
    calls = {"n": 0}

    def failing_write(self, chunk):
        calls["n"] += 1
        if calls["n"] == 20:  # the disk fills up 20 chunks in
            with self._lock:
                self._eeg.close()
                self._eeg = open("/dev/full", "wb")
        real_write(self, chunk)

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    monkeypatch.setattr(record.BrainVisionWriter, "write", failing_write)
    rc, err = _main(["stream", "--source", "none", "--record", str(tmp_path / "r.vhdr"), "--duration", "1.5",
                     "--srate", "250", "-q"], capsys)
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("vibe-rt: error: the recording") and "No space left on device" in last


def test_graceful_stop_leaves_no_marker_past_the_recorded_data(source_id, tmp_path):
    import mne

    path = tmp_path / "rec.vhdr"
    pipe = StreamPipeline(PulsePredictor(), output=OutputSpec(srate=250, lookahead=0.3, source_id=source_id),
                          record=RecordSpec(path))
    with pipe:
        now = pylsl.local_clock()
        for k in range(4):
            pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), now + 0.1 * k)
        time.sleep(0.5)  # the later onsets' samples are still inside the lookahead when it stops
    raw = mne.io.read_raw_brainvision(path, preload=False, verbose="error")
    onsets = raw.annotations.onset[[d.startswith("Stimulus") for d in raw.annotations.description]]
    assert len(onsets) >= 1 and np.all(onsets * 250 < raw.n_times)


# images --------------------------------------------------------------------------------------------------------
def test_an_unreadable_image_is_skipped_with_a_marker(source_id, tmp_path):
    import cv2
    import mne

    folder = tmp_path / "stimuli"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(folder / name), np.full((16, 16, 3), 200, np.uint8))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    path = tmp_path / "rec.vhdr"
    pipe = StreamPipeline(PulsePredictor(), source=ImageFolderSource(folder, on_s=0.1, off_s=0.1),
                          output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id), record=RecordSpec(path))
    with pipe:
        deadline = time.monotonic() + 5
        while not (pipe.source_finished and pipe.idle) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        status = pipe.status()
    assert pipe.error is None and status["source_skipped"] == 1 and status["responses"] == 2
    desc = list(mne.io.read_raw_brainvision(path, verbose="error").annotations.description)
    assert desc.count("Stimulus/S  1: a.png") + desc.count("Stimulus/S  3: c.png") == 2  # the .vmrk names images
    assert "Comment/skipped-unreadable image" in desc, desc


# lookahead ------------------------------------------------------------------------------------------------------
def test_auto_lookahead_rule_and_growth_policy():
    from vibe_rt.stream.lookahead import (
        AUTO_MARGIN_FRACTION,
        AUTO_MARGIN_S,
        GROW_LATE_FRACTION,
        GROW_MIN_RESPONSES,
        Lookahead,
        auto_lookahead,
        grown_lookahead,
        should_grow,
    )

    times = np.r_[np.full(99, 0.004), 0.010]  # p99 lies between the bulk and the slowest run
    choice = auto_lookahead(times, 0.005, 10.0)
    p99 = float(np.percentile(times, 99))
    assert choice.mode == "auto" and choice.seconds == pytest.approx(
        p99 * (1 + AUTO_MARGIN_FRACTION) + AUTO_MARGIN_S + 0.005)
    assert "p99 of 100 warm-up runs" in choice.rule and "push interval 5 ms" in choice.rule
    assert auto_lookahead([], 0.005, 10.0).seconds == pytest.approx(AUTO_MARGIN_S + 0.005)  # no model: margins only
    slow = auto_lookahead([30.0] * 30, 0.005, 10.0)  # a warm-up slower than the longest allowed delay
    assert slow.seconds == 10.0 and slow.rule.endswith("capped at 10 s")
    n = GROW_MIN_RESPONSES
    assert GROW_LATE_FRACTION * n == 1  # the documented reading: two late among the first hundred grow it
    assert not should_grow(choice, 5, 1, grown=False)  # one late response early on: not yet 1 % of 100
    assert should_grow(choice, 5, 2, grown=False)  # a path slower than its warm-up is caught early
    assert not should_grow(choice, 3 * n, 3, grown=False) and should_grow(choice, 3 * n, 4, grown=False)
    assert not should_grow(choice, n, n, grown=True)  # once only
    assert not should_grow(Lookahead.fixed(0.01), n, n, grown=False)  # a fixed lookahead never changes
    grown = grown_lookahead(choice, [0.05] * 60, 0.005, maximum_s=10.0)
    assert grown.seconds >= 2 * choice.seconds and grown.seconds > 0.05 and "grown once" in grown.rule
    assert grown_lookahead(choice, [50.0], 0.005, maximum_s=10.0).seconds == 10.0


def _meta(info, *path):
    node = info.desc()
    for p in path[:-1]:
        node = node.child(p)
    return node.child_value(path[-1])


def test_auto_lookahead_is_measured_declared_and_grows_once_without_touching_timestamps(source_id):
    """A predictor that becomes 40 ms slower after the warm-up: responses come late, the lookahead grows once
    (log, status, a marker), and the stream's timestamps stay regular through the longer push delay."""
    pred = PulsePredictor(delay=0.002)
    pipe = StreamPipeline(pred, background=None, output=OutputSpec(srate=250, source_id=source_id))
    with pipe:
        first = pipe.lookahead
        assert pipe.lookahead_choice.mode == "auto" and 0.007 < first < 0.2
        info = pylsl.resolve_byprop("source_id", source_id, timeout=5)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=60)
        inlet.open_stream(5)
        markers = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", f"{source_id}-markers", timeout=5)[0])
        markers.open_stream(5)
        assert float(_meta(inlet.info(5), "synchronization", "output_delay")) == pytest.approx(first, abs=1e-6)
        assert _meta(inlet.info(5), "synchronization", "output_delay_mode") == "auto"
        pred.delay = 0.04
        stamps = []
        t_end = time.monotonic() + 6.0
        next_onset = time.monotonic()
        while time.monotonic() < t_end:
            if time.monotonic() >= next_onset:
                pipe.submit_onset(np.zeros((8, 8, 3), np.uint8))
                next_onset += 0.06
            _, ts = inlet.pull_chunk(timeout=0.0)
            stamps.extend(ts)
            time.sleep(0.005)
        status = pipe.status()
        got, _ = markers.pull_chunk(timeout=1.0, max_samples=1000)
    assert status["late"] > 0 and pipe.lookahead >= 2 * first and status["lookahead_s"] == pipe.lookahead
    assert "grown once" in status["lookahead_rule"]
    grown = [m[0] for m in got if '"kind":"lookahead"' in m[0]]
    assert len(grown) == 1 and '"status":"grown"' in grown[0]
    d = np.diff(stamps)
    assert np.max(np.abs(d - 1 / 250)) < 1e-6  # no gap, no jump: only the push delay changed


def test_precision_option_reaches_the_predictor(tmp_path, monkeypatch):
    """--precision int8 with ONNX Runtime streams the quantized embedded model and says so in the stream's meta."""
    from vibe_rt.app import build_stream
    from vibe_rt.stream import StreamConfig

    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, fp16, int8"):
        StreamConfig(precision="int4").validate()
    monkeypatch.setenv("VIBE_RT_ENGINES_DIR", str(tmp_path))
    config = StreamConfig(source="demo", backend="onnxruntime", precision="int8", duration=1)
    config.validate()
    pipe = build_stream(config)
    assert pipe.predictor.precision == "int8" and pipe.extra_meta["precision"] == "int8"
    assert list(tmp_path.glob("*/onnxruntime-int8/manifest.json"))
    assert build_stream(StreamConfig(source="demo", backend="onnxruntime")).predictor.precision == "fp32"
