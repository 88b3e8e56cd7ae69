"""Frame sources: camera, video file, image-folder slideshow, built-in demo scene.

Each source runs one capture thread that puts the newest frames into a small bounded queue; the consumer
calls :meth:`FrameSource.get`. Every frame carries its capture time on the LSL clock (``pylsl.local_clock``).
Sources are started with :meth:`~FrameSource.start` (which opens the device synchronously, so a missing camera
raises :class:`~vibe_rt.errors.SourceError` at once) and stopped with :meth:`~FrameSource.stop`, which re-raises
an error of the capture thread; they are also context managers.

Real-time sources (camera, real-time video, demo) drop the oldest queued frame when the consumer lags
(``dropped_frames`` counts them); offline sources (``VideoSource(realtime=False)``, image folders) block
instead, so that every frame is delivered. A camera hands on the newest frame only (a queue of one) and never a
frame that waited in the driver's buffer (:class:`CameraSource`).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import SourceError
from .clock import Clock, lsl_clock

#: Largest OpenCV camera index accepted (OpenCV adds API preferences in steps of 100 above the device index).
MAX_CAMERA_INDEX = 9999
#: A camera grab() that returns within this fraction of a frame period took a frame that was already waiting in
#: the driver's buffer (its exposure is older than the time it would be stamped with): it is skipped.
STALE_GRAB_FRACTION = 0.25
#: At most this many buffered frames are skipped in a row (V4L2 keeps 4 buffers by default).
MAX_STALE_GRABS = 4
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Frame:
    """One captured image.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB pixels.
    t_capture : float
        Capture (or display) time on the LSL clock, seconds.
    frame_id : int
        Running number within the source.
    source : str
        Source name, e.g. ``"camera0"``, ``"video:clip.avi"``, ``"demo"``, ``"external"``.
    meta : dict
        Extra information (``"image"`` file name, ``"code"`` numeric marker, ``"scene"`` ...).
    """

    image: np.ndarray = field(repr=False)
    t_capture: float
    frame_id: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate/convert an image to contiguous uint8 (H, W, 3) RGB (grey and RGBA accepted)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise SourceError(f"an image must have shape (H, W, 3) RGB, got {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.max(initial=0) <= 1.0:
            img = img * 255.0
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


class FrameSource:
    """Base class: a capture thread filling a bounded queue with :class:`Frame` objects.

    Subclasses implement :meth:`_open`, :meth:`_next_frame` (return an RGB image and its capture time, or
    ``None`` at the end of the source) and :meth:`_close`.

    Parameters
    ----------
    name : str
        Source name stored in each frame.
    maxsize : int
        Queue size.
    drop_oldest : bool
        When the queue is full: drop the oldest frame (real time) or block the capture thread (offline).
    clock : callable
        Time source; default ``pylsl.local_clock``.
    """

    def __init__(self, name: str, *, maxsize: int = 2, drop_oldest: bool = True, clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock or lsl_clock
        self.drop_oldest = drop_oldest
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.dropped_frames = 0
        self.drops = 0  # device drop-outs (camera lost)
        self.reconnects = 0
        #: (width, height) of the frames when known before the first one (used to time the processing path).
        self.frame_size: tuple[int, int] | None = None
        #: Things the consumer should know that are not frames (e.g. a skipped image), as marker dicts with a
        #: ``"time"`` (LSL seconds); the pipeline turns each into a marker.
        self.notices: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    # subclass API -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Open the device/file; raise SourceError when impossible."""

    def _next_frame(self) -> tuple[np.ndarray, float, dict] | None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device/file."""

    # lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> FrameSource:
        """Open the source (errors raised here) and start the capture thread."""
        if self._thread is not None:
            return self
        self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"vibe-rt-capture-{self.name}", daemon=True)
        self._thread.start()
        return self

    def probe(self) -> None:
        """Open and release the source once, raising its SourceError now (e.g. before a slow model load)."""
        self._open()
        self._close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the capture thread, release the source, re-raise a capture-thread error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            self._close()
        if self.error is not None:
            err, self.error = self.error, None
            raise err

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the capture thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None after ``timeout`` seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _sleep_until(self, target: float) -> bool:
        """Sleep until ``target`` on the clock; False when stopped meanwhile."""
        while not self._stop.is_set():
            delay = target - self.clock()
            if delay <= 0:
                return True
            self._stop.wait(min(delay, 0.05))
        return False

    def _put(self, frame: Frame) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                if self.drop_oldest:
                    try:
                        self._queue.get_nowait()
                        self.dropped_frames += 1
                    except queue.Empty:
                        pass
                else:
                    time.sleep(0.002)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._next_frame()
                if item is None:
                    break
                image, t, meta = item
                self._put(Frame(image, t, next(self._ids), self.name, meta))
        except BaseException as err:  # reported by stop() and the pipeline status
            logger.error("frame source %s failed: %r", self.name, err)
            self.error = err
        finally:
            self.finished.set()


def _open_capture(target: int | str) -> Any:
    import cv2

    # OpenCV's own warnings about a missing device would bury vibe-rt's one-line explanation.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2.VideoCapture(target)


class CameraSource(FrameSource):
    """A camera through OpenCV, with the newest frame only, stamped when it reaches software, and reconnection.

    No frame waits anywhere unmeasured: the driver is asked for one buffer (``CAP_PROP_BUFFERSIZE`` = 1, which
    not every backend honours), the capture thread grabs continuously, and a grab that returns at once (within
    :data:`STALE_GRAB_FRACTION` of a frame period) took a frame that had waited in the driver's buffer while the
    thread was held up: it is skipped (``stale_frames``) and the next one, which the grab waited for, is used. Each
    frame is stamped when its grab returns, before decoding and colour conversion (which the pipeline times as
    part of ``capture_to_dispatch``), and the queue to the pipeline holds one frame: a newer frame replaces a
    waiting one. What happens before a frame reaches software (exposure, sensor readout, USB transfer: typically
    1-3 frame periods for a USB webcam) is invisible here and not in the stamp.

    When the camera stops delivering frames mid-stream, the source releases it and reopens it with
    exponential back-off (0.1 s doubling up to 2 s), counting ``drops`` and ``reconnects``; it never emits an
    empty or all-black frame (the first frames of many cameras are black).

    Parameters
    ----------
    index : int
        OpenCV camera index.
    width, height, fps : int | None
        Requested capture settings (the camera may choose others).
    capture_factory : callable | None
        ``factory() -> cv2.VideoCapture-like`` (default ``cv2.VideoCapture(index)``); lets tests and special
        devices (a GStreamer pipeline, an RTSP URL) plug in.
    """

    def __init__(self, index: int = 0, width: int | None = 640, height: int | None = 480, fps: float | None = 30,
                 *, capture_factory: Callable[[], Any] | None = None, clock: Clock | None = None,
                 max_backoff: float = 2.0) -> None:
        if not 0 <= index <= MAX_CAMERA_INDEX:  # OpenCV's VideoCapture(-1) crashes the process (SIGSEGV)
            raise SourceError(f"--camera {index}: camera indexes start at 0 (the first camera) and go up to "
                              f"{MAX_CAMERA_INDEX}; give --camera 0, 1, ...")
        super().__init__(f"camera{index}", maxsize=1, drop_oldest=True, clock=clock)
        self.index, self.width, self.height, self.fps = index, width, height, fps
        self.frame_size = (width, height) if width and height else None
        self._factory = capture_factory or (lambda: _open_capture(index))
        self._cap: Any = None
        self.max_backoff = max_backoff
        self.empty_frames = 0
        #: Frames skipped because they had waited in the driver's buffer.
        self.stale_frames = 0
        self._period: float | None = 1.0 / fps if fps else None

    def _configure(self, cap: Any) -> None:
        import cv2

        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)

    def _try_open(self) -> bool:
        cap = self._factory()
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return False
        self._configure(cap)
        self._cap = cap
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS)  # what the camera agreed to (0 when the backend does not say)
        if fps and 0 < fps <= 1000:
            self._period = 1.0 / float(fps)
        return True

    def _open(self) -> None:
        if not self._try_open():
            raise SourceError(f"no camera at index {self.index} (OpenCV could not open it); check the cable and "
                              "permissions, pick another with --camera N, or try --source demo")
        # one good frame proves the device really delivers (VideoCapture without a camera fails quietly)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            ok, img = self._cap.read()
            if ok and img is not None and img.size and img.max() > 0:
                return
            time.sleep(0.02)
        self._cap.release()
        self._cap = None
        raise SourceError(f"camera at index {self.index} opened but delivered no image within 3 s; "
                          "is it used by another program? Try another --camera N, or --source demo")

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _reconnect(self) -> bool:
        self.drops += 1
        logger.warning("camera %d lost (drop %d); reconnecting", self.index, self.drops)
        self._close()
        backoff = 0.1
        while not self._stop.is_set():
            if self._try_open():
                self.reconnects += 1
                logger.info("camera %d reconnected", self.index)
                return True
            self._stop.wait(backoff)
            backoff = min(2 * backoff, self.max_backoff)
        return False

    def _grab_newest(self) -> tuple[bool, float]:
        """``grab()`` until a frame comes that the grab waited for (see the class docstring); its success and
        the time it returned (the frame's stamp)."""
        for attempt in range(MAX_STALE_GRABS + 1):
            t0 = self.clock()
            ok = bool(self._cap.grab())
            t = self.clock()
            waited = self._period is None or t - t0 >= STALE_GRAB_FRACTION * self._period
            if not ok or waited or attempt == MAX_STALE_GRABS:
                break
            self.stale_frames += 1
        return ok, t

    def _next_frame(self) -> tuple[np.ndarray, float, dict] | None:
        import cv2

        fails = 0
        while not self._stop.is_set():
            if self._cap is None and not self._reconnect():
                return None
            ok, t = self._grab_newest()
            img = None
            if ok:
                ok, img = self._cap.retrieve()
            if ok and img is not None and img.size:
                if img.max() == 0:  # black frame: never emitted
                    self.empty_frames += 1
                    continue
                fails = 0
                return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), t, {}
            fails += 1
            if fails >= 3:
                if not self._reconnect():
                    return None
                fails = 0
        return None


class VideoSource(FrameSource):
    """Frames of a video file, paced in real time by the file's frame rate or as fast as possible.

    Parameters
    ----------
    path : path-like
        Any file OpenCV reads (MJPG/XVID/mp4v AVI, ...).
    realtime : bool
        Emit frame k at ``start + k / fps`` (its capture time); otherwise as fast as the consumer takes them,
        each stamped with the time it was read.
    loop : bool
        Start again at the end.
    fps : float | None
        Override the file's frame rate.
    """

    def __init__(self, path: str | Path, realtime: bool = True, loop: bool = False, fps: float | None = None,
                 *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"video:{self.path.name}", maxsize=2 if realtime else 8, drop_oldest=realtime, clock=clock)
        self.realtime, self.loop, self._fps = realtime, loop, fps
        self._cap: Any = None
        self._t_start = 0.0
        self._k = 0

    def _open(self) -> None:
        import cv2

        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist; give an existing file to --video")
        self._cap = _open_capture(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot read the video {self.path}; convert it to MJPG/mp4v AVI or MP4")
        fps = self._fps or self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self._t_start = self.clock()
        self._k = 0

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _next_frame(self) -> tuple[np.ndarray, float, dict] | None:
        import cv2

        ok, img = self._cap.read()
        if not ok or img is None:
            if not self.loop or self._k == 0:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self._cap.read()
            if not ok:
                return None
        k, self._k = self._k, self._k + 1
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.realtime:
            target = self._t_start + k / self.fps
            if not self._sleep_until(target):
                return None
            return rgb, target, {"video_frame": k}
        return rgb, self.clock(), {"video_frame": k}


class ImageFolderSource(FrameSource):
    """A slideshow of the images in a folder: each shown for ``on_s`` then a blank for ``off_s``.

    Emits one frame per image at its onset ``start + k * (on_s + off_s)`` (the blank emits nothing); the
    frame's meta carries ``"image"`` (file name), ``"code"`` (1-based index of the image in name order, the
    numeric marker: it names the image whatever the order), ``"duration"`` (``on_s``) and ``"pass"`` (1-based).
    The images are shown in name order, or with ``shuffle`` in a new random order on every pass (drawn from
    ``seed``: the same seed gives the same orders), so that no image always follows the same one (an overlap
    confound of every fixed order); each pass's order is logged.
    Images are read before their onset so that file reading never delays it. An image that cannot be read is
    skipped, never ends the slideshow: its slot stays blank, a warning is logged, ``skipped`` counts it and a
    notice (``{"status": "skipped", "reason": "unreadable image", "image": ...}``) becomes a marker.

    Parameters
    ----------
    directory : path-like
        Folder with PNG/JPEG/BMP/TIFF/WebP images (sorted by name).
    on_s, off_s : float
        Presentation and blank durations in seconds.
    loop : bool
        Start again after the last image.
    shuffle : bool
        A new random order on every pass.
    seed : int | None
        Seed of the orders (None: different every run).
    """

    def __init__(self, directory: str | Path, on_s: float = 0.5, off_s: float = 0.5, loop: bool = False,
                 *, shuffle: bool = False, seed: int | None = None, clock: Clock | None = None) -> None:
        self.directory = Path(directory)
        super().__init__(f"images:{self.directory.name}", maxsize=4, drop_oldest=False, clock=clock)
        if on_s <= 0 or off_s < 0:
            raise SourceError(f"--on must be > 0 and --off >= 0 seconds, got {on_s} and {off_s}")
        self.on_s, self.off_s, self.loop = on_s, off_s, loop
        self.shuffle, self.seed = shuffle, seed
        self.paths: list[Path] = []
        self.skipped = 0
        self._k = 0
        self._rng = np.random.default_rng(seed)
        self._order: list[int] = []
        self._order_pass = -1

    def pass_order(self, pass_index: int) -> list[int]:
        """Indexes into :attr:`paths` of the images of pass ``pass_index`` (from 0), in the order shown; drawn
        (and logged) when the pass begins."""
        if len(self._order) != len(self.paths) or self._order_pass != pass_index:
            n = len(self.paths)
            self._order = [int(i) for i in self._rng.permutation(n)] if self.shuffle else list(range(n))
            self._order_pass = pass_index
            names = [self.paths[i].name for i in self._order]
            shown = ", ".join(names[:12]) + (f", ... ({n} images)" if n > 12 else "")
            how = f"shuffled, seed {self.seed}" if self.shuffle else "name order"
            logger.info("%s pass %d (%s): %s", self.name, pass_index + 1, how, shown)
        return self._order

    def _open(self) -> None:
        if not self.directory.is_dir():
            raise SourceError(f"image folder {self.directory} does not exist; give a folder to --images")
        self.paths = sorted(p for p in self.directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.directory}; put stimulus "
                              "images there or give another folder to --images")
        self._t_start = self.clock()
        self._k = 0
        self._rng = np.random.default_rng(self.seed)  # a restarted source shows the same orders again
        self._order, self._order_pass = [], -1

    def _next_frame(self) -> tuple[np.ndarray, float, dict] | None:
        import cv2

        while True:
            k = self._k
            if k >= len(self.paths) and not self.loop:
                return None
            pass_index, position = divmod(k, len(self.paths))
            index = self.pass_order(pass_index)[position]
            path = self.paths[index]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            self._k += 1
            target = self._t_start + k * (self.on_s + self.off_s)
            if img is not None:
                break
            self.skipped += 1
            logger.warning("skipping the unreadable image %s (its slot stays blank); convert it to PNG or remove "
                           "it", path)
            self.notices.put({"time": target, "status": "skipped", "reason": "unreadable image",
                              "image": path.name, "source": self.name})
            if self.skipped >= len(self.paths) and self.skipped == self._k:
                raise SourceError(f"none of the images in {self.directory} can be read; convert them to PNG")
        if not self._sleep_until(target):
            return None
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), target, {
            "image": path.name, "code": index + 1, "duration": self.on_s, "pass": pass_index + 1}


class DemoSource(FrameSource):
    """A built-in moving scene that needs no camera: drifting coloured gratings and moving shapes.

    A new scene (grating orientation, spatial frequency, colours, shapes) starts every 0.5-1 s (random), and
    within a scene the grating drifts and the shapes move, like a camera view between saccades.

    Parameters
    ----------
    width, height : int
        Frame size.
    fps : float
        Frame rate (frames are paced on absolute targets).
    seed : int | None
        Random seed (a given seed gives the same scenes).
    change_interval : (float, float)
        Range of scene durations in seconds.
    """

    def __init__(self, width: int = 320, height: int = 240, fps: float = 30.0, seed: int | None = 0,
                 change_interval: tuple[float, float] = (0.5, 1.0), *, clock: Clock | None = None) -> None:
        super().__init__("demo", maxsize=2, drop_oldest=True, clock=clock)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frame_size = (self.width, self.height)
        self.change_interval = change_interval
        self._rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        self._xx, self._yy = xx / self.width, yy / self.height
        self.scene_index = -1

    def _open(self) -> None:
        self._t_start = self.clock()
        self._k = 0
        self._scene_end = -np.inf

    def _new_scene(self, t: float) -> None:
        rng = self._rng
        self.scene_index += 1
        self._scene_end = t + rng.uniform(*self.change_interval)
        self._theta = rng.uniform(0, np.pi)
        self._freq = rng.uniform(2, 10)
        self._speed = rng.uniform(-0.3, 0.3)  # cycles/s: slow drift within a scene
        self._c1, self._c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
        n = rng.integers(1, 4)
        self._shapes = [(rng.uniform(0.1, 0.9, 2), rng.uniform(-0.1, 0.1, 2), rng.uniform(0.05, 0.2),
                         rng.uniform(0, 255, 3), bool(rng.integers(2))) for _ in range(n)]
        self._scene_t0 = t

    def render(self, t: float) -> np.ndarray:
        """The demo image at time ``t`` (starts a new scene when the current one is over)."""
        if t >= self._scene_end:
            self._new_scene(t)
        dt = t - self._scene_t0
        # float32 throughout (the capture thread shares the cores with inference and the outlet)
        phase = np.float32(2 * np.pi * self._freq) * (self._xx * np.float32(np.cos(self._theta))
                                                       + self._yy * np.float32(np.sin(self._theta)))
        w = np.sin(phase - np.float32(2 * np.pi * self._speed * dt))
        w = np.float32(0.5) + np.float32(0.5) * w
        img = self._c2 + w[:, :, None] * (self._c1 - self._c2)
        for centre, vel, radius, colour, is_disc in self._shapes:
            cx, cy = (centre + vel * dt) % 1.0
            if is_disc:
                mask = (self._xx - cx) ** 2 + ((self._yy - cy) * self.height / self.width) ** 2 < radius ** 2
            else:
                mask = (np.abs(self._xx - cx) < radius) & (np.abs(self._yy - cy) < radius)
            img[mask] = colour
        return np.clip(img, 1, 255).astype(np.uint8)

    def _next_frame(self) -> tuple[np.ndarray, float, dict] | None:
        target = self._t_start + self._k / self.fps
        self._k += 1
        img = self.render(target)  # drawn before its time, emitted at it
        if not self._sleep_until(target):
            return None
        return img, target, {"scene": self.scene_index}

