"""Frame sources with real files (OpenCV MJPG video, PNG images) and the pipeline driven by them over LSL."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pylsl
import pytest
from _stream_helpers import PulsePredictor

from vibe_rt.errors import SourceError
from vibe_rt.stream import (
    CameraSource,
    EveryFrame,
    ImageFolderSource,
    InferenceSpec,
    OutputSpec,
    RecordSpec,
    SceneChange,
    StreamPipeline,
    VideoSource,
)


def _write_video(path: Path, scenes: list[int], frames_per_scene: int, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for value in scenes:
        for _ in range(frames_per_scene):
            img = np.clip(value + rng.normal(0, 2, (48, 64, 3)), 0, 255).astype(np.uint8)
            writer.write(img)
    writer.release()
    return path


def _drain(source, timeout: float = 5.0) -> list:
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = source.get(timeout=0.05)
        if f is not None:
            frames.append(f)
        elif source.finished.is_set() and source._queue.empty():
            break
    return frames


def test_video_source_realtime_and_fast(tmp_path):
    path = _write_video(tmp_path / "clip.avi", [30, 120, 220], 10)
    with VideoSource(path, realtime=True) as src:
        frames = _drain(src)
    assert len(frames) == 30 and [f.frame_id for f in frames] == list(range(30))
    t = np.array([f.t_capture for f in frames])
    assert np.allclose(np.diff(t), 1 / 30, atol=1e-9)  # stamped on the file's frame grid
    assert abs(t[0] - pylsl.local_clock()) < 10 and frames[0].image.shape == (48, 64, 3)
    start = time.monotonic()
    with VideoSource(path, realtime=False) as src:
        frames = _drain(src)
    assert len(frames) == 30 and time.monotonic() - start < 0.9  # faster than real time (1 s)
    with pytest.raises(SourceError, match="does not exist"):
        VideoSource(tmp_path / "missing.avi").start()


def test_video_pipeline_produces_expected_events(source_id, tmp_path):
    import mne

    path = _write_video(tmp_path / "scenes.avi", [30, 120, 220], 10)  # 3 scenes of 1/3 s
    rec = tmp_path / "rec.vhdr"
    pipe = StreamPipeline(PulsePredictor(), source=VideoSource(path), policy=SceneChange(max_interval=None),
                          output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id), record=RecordSpec(rec))
    with pipe:
        deadline = time.monotonic() + 10
        while not (pipe.source_finished and pipe.idle) and time.monotonic() < deadline:
            time.sleep(0.05)
        status = pipe.status()
    assert status["frames"] == 30 and status["events"] == 3 and status["responses"] == 3
    raw = mne.io.read_raw_brainvision(rec, verbose="error")
    onsets = [a["onset"] for a in raw.annotations if a["description"].startswith("Stimulus")]
    assert len(onsets) == 3 and np.allclose(np.diff(onsets), 10 / 30, atol=1 / 250)
    # the whole response of the last event was emitted before the pipeline reported idle
    assert raw.times[-1] >= onsets[-1] + pipe.model_montage.tmax - 0.05


def test_image_folder_slideshow(tmp_path):
    for i, value in enumerate([10, 100, 200]):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((20, 30, 3), value, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path, on_s=0.1, off_s=0.05) as src:
        frames = _drain(src)
    assert [f.meta["image"] for f in frames] == ["img0.png", "img1.png", "img2.png"]
    assert [f.meta["code"] for f in frames] == [1, 2, 3]
    assert np.allclose(np.diff([f.t_capture for f in frames]), 0.15, atol=1e-9)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(empty).start()


def test_image_folder_shuffle_gives_a_new_order_per_pass(tmp_path, caplog):
    """--shuffle: every pass a new permutation (so no image always follows the same one), the same orders for the
    same seed, the code still naming the image, each pass's order logged."""
    import logging

    n, passes = 6, 4
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), 30 * i, np.uint8))

    def orders(seed: int, shuffle: bool = True) -> list[list[str]]:
        with ImageFolderSource(tmp_path, on_s=0.01, off_s=0.0, loop=True, shuffle=shuffle, seed=seed) as src:
            frames = []
            while len(frames) < n * passes:
                f = src.get(timeout=1.0)
                assert f is not None
                frames.append(f)
        assert [f.meta["pass"] for f in frames] == [k // n + 1 for k in range(n * passes)]
        assert all(f.meta["code"] == int(f.meta["image"][3]) + 1 for f in frames)
        names = [f.meta["image"] for f in frames]
        return [names[k * n:(k + 1) * n] for k in range(passes)]

    with caplog.at_level(logging.INFO, logger="vibe_rt"):
        first = orders(3)
    assert all(sorted(o) == [f"img{i}.png" for i in range(n)] for o in first)
    assert len({tuple(o) for o in first}) == passes  # a new order on every pass
    predecessors = {(o[k - 1], o[k]) for o in first for k in range(1, n)}
    assert len(predecessors) > n  # images follow more than one other image
    assert orders(3) == first and orders(4) != first
    assert orders(3, shuffle=False) == [[f"img{i}.png" for i in range(n)]] * passes
    logged = [r.getMessage() for r in caplog.records if "pass 2 (shuffled, seed 3)" in r.getMessage()]
    assert logged and logged[0].endswith(", ".join(first[1]))


def test_missing_camera_raises_one_clear_error():
    with pytest.raises(SourceError) as err:
        CameraSource(97).start()
    msg = str(err.value)
    assert "no camera at index 97" in msg and "--source demo" in msg and "\n" not in msg


def test_camera_loss_reconnects_and_the_stream_continues(source_id, tmp_path):
    """A 'camera' that delivers 30 frames then fails (a real VideoCapture on a file), then is unplugged for two
    attempts (a capture that cannot open), then comes back."""
    path = _write_video(tmp_path / "cam.avi", [50, 150], 15)  # 1 s at 30 fps
    calls = []

    class Paced:
        """A real VideoCapture whose grab() waits for the next frame time, as a camera's does (30 fps)."""

        def __init__(self, target: str) -> None:
            self.cap, self.next = cv2.VideoCapture(target), time.monotonic()

        def grab(self) -> bool:
            self.next += 1 / 30
            time.sleep(max(0.0, self.next - time.monotonic()))
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    def factory():
        calls.append(time.monotonic())
        if len(calls) in (2, 3):
            return Paced(str(tmp_path / "unplugged.avi"))  # isOpened() is False
        return Paced(str(path))

    cam = CameraSource(0, capture_factory=factory, max_backoff=0.2)
    pipe = StreamPipeline(PulsePredictor(), source=cam, policy=EveryFrame(),
                          output=OutputSpec(srate=250, lookahead=0.1, source_id=source_id),
                          inference=InferenceSpec(max_queue=4))
    with pipe:
        inlet = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", source_id, timeout=5)[0])
        inlet.open_stream(timeout=5)
        stamps = []
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            _, ts = inlet.pull_chunk(timeout=0.1)
            stamps.extend(ts)
        now = pylsl.local_clock()
        status = pipe.status()
        expected = pipe.sample_clock.n_due(now)
    assert status["source_drops"] >= 1 and status["source_reconnects"] >= 1
    assert len(calls) >= 4  # initial open, two failed attempts, a successful one
    assert status["frames"] > 35  # frames came again after the reconnection
    assert abs(status["samples_pushed"] - expected) <= 3 * pipe.chunk
    assert np.max(np.abs(np.diff(stamps) - 1 / 250)) < 1e-6
    assert cam.empty_frames == 0


class _DriverRing:
    """A camera driver as V4L2 runs one: a frame every ``period`` s fills one of ``n`` buffers (the oldest is
    overwritten when all are full); grab() takes the oldest filled buffer, waiting when none is. The image encodes
    the frame number; ``exposed[k]`` is when frame k was filled. ``retrieve`` stalls on every ``stall_every``-th
    call (the capture thread held up), so frames pile up in the buffers meanwhile."""

    def __init__(self, period: float, n: int = 4, stall_every: int = 4, stall: float = 2.5) -> None:
        self.period, self.n, self.stall_every, self.stall = period, n, stall_every, stall
        self.t0 = time.monotonic()
        self.taken = 0  # frames dequeued so far
        self.current = -1
        self.retrieves = 0
        self.exposed: dict[int, float] = {}

    def isOpened(self) -> bool:
        return True

    def set(self, *_: object) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 1 / self.period if prop == cv2.CAP_PROP_FPS else 0.0

    def grab(self) -> bool:
        produced = int((time.monotonic() - self.t0) / self.period)  # frames 0 .. produced-1 exist
        oldest_kept = max(self.taken, produced - self.n)
        if oldest_kept >= produced:  # nothing buffered: wait for the next frame
            time.sleep(self.t0 + (produced + 1) * self.period - time.monotonic())
            oldest_kept = produced
        self.current, self.taken = oldest_kept, oldest_kept + 1
        self.exposed[self.current] = self.t0 + (self.current + 1) * self.period
        return True

    def retrieve(self):
        self.retrieves += 1
        if self.stall_every and self.retrieves % self.stall_every == 0:
            time.sleep(self.stall * self.period)
        img = np.ones((8, 8, 3), np.uint8)
        img[0, 0, 0], img[0, 0, 1] = self.current % 256, self.current // 256  # BGR: blue, green
        return True, img

    def read(self):
        self.grab()
        return self.retrieve()

    def release(self) -> None:
        pass


def _frame_number(frame) -> int:
    return int(frame.image[0, 0, 2]) + 256 * int(frame.image[0, 0, 1])  # RGB after the source's conversion


def _consume(cam: CameraSource, seconds: float, every: float) -> list[tuple[object, float]]:
    """A consumer slower than the camera: one ``get`` every ``every`` s; the frames with the time they were got."""
    frames = []
    with cam:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(every)
            frame = cam.get(timeout=1.0)
            assert frame is not None
            frames.append((frame, time.monotonic()))
    return frames


def test_camera_never_stamps_a_frame_that_waited_in_the_driver():
    """Frames that waited in the driver's buffers while the capture thread was held up are skipped: their exposure
    is older than the stamp they would get. Every frame handed on is stamped when it arrived."""
    period = 0.1
    driver = _DriverRing(period, stall_every=4, stall=2.5)
    cam = CameraSource(0, fps=10, capture_factory=lambda: driver, clock=time.monotonic)
    frames = _consume(cam, 4.0, 0.25)
    assert cam.stale_frames >= 3  # the stalls left frames in the buffers, and they were skipped
    errors = [f.t_capture - driver.exposed[_frame_number(f)] for f, _ in frames]
    assert max(errors) < 0.25 * period, errors


def test_camera_hands_on_the_newest_frame():
    """A consumer that comes late gets the newest frame (a queue of one), not an older one that waited."""
    period = 0.1
    driver = _DriverRing(period, stall_every=0)
    cam = CameraSource(0, fps=10, capture_factory=lambda: driver, clock=time.monotonic)
    frames = _consume(cam, 3.0, 0.25)
    ages = [t_get - f.t_capture for f, t_get in frames]
    assert np.median(ages) < period, ages  # arrived within the last frame period: the newest one
    assert cam.dropped_frames > 0 and cam.stale_frames == 0
