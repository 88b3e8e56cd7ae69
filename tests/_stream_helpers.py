"""Shared test doubles for the stream tests: a deterministic predictor implementing the Predictor protocol."""

from __future__ import annotations

import time

import numpy as np

from vibe_rt.montage import Montage, make_montage


def small_montage(n_channels: int = 4, sfreq: float = 100.0, tmin: float = -0.2, n_times: int = 100) -> Montage:
    names = ["O1", "Oz", "O2", "Pz", "P3", "P4", "PO7", "PO8"][:n_channels]
    return make_montage("colin27_1005", names, sfreq=sfreq, tmin=tmin, n_times=n_times, name="test-occipital")


class PulsePredictor:
    """Every image gives the same epoch: a Gaussian pulse (sigma ``width`` s) of ``amplitude`` volts peaking at
    ``latency`` s after onset on every channel (channel c scaled by 1 + c/10). Optional delay and NaN output."""

    backend_name = "test-pulse"

    def __init__(self, montage: Montage | None = None, *, latency: float = 0.1, amplitude: float = 10e-6,
                 width: float = 0.01, delay: float = 0.0, nan: bool = False, image_size: int = 8) -> None:
        self.montage = montage or small_montage()
        self.image_size = image_size
        self.latency, self.delay, self.nan = latency, delay, nan
        t = self.montage.times
        gain = 1 + np.arange(self.montage.n_channels) / 10
        self.epoch = (amplitude * gain[:, None] * np.exp(-0.5 * ((t - latency) / width) ** 2)).astype(np.float32)
        self.calls: list[int] = []

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        assert frames.ndim == 4 and frames.dtype == np.uint8 and frames.shape[-1] == 3
        step_y, step_x = max(1, frames.shape[1] // self.image_size), max(1, frames.shape[2] // self.image_size)
        small = frames[:, ::step_y, ::step_x][:, : self.image_size, : self.image_size]
        return np.ascontiguousarray(small.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        b = pixels.shape[0]
        self.calls.append(b)
        out = np.repeat(self.epoch[None], b, axis=0)
        if self.nan:
            out = out.copy()
            out[:, 0, 10] = np.nan
        dt = time.perf_counter() - t0
        return out, {"encoder": dt / 3, "qformer": dt / 3, "decoder": dt / 3}


def collect_stream(source_id: str, seconds: float, timeout: float = 5.0):
    """Resolve the signal stream ``source_id`` over LSL, pull it for ``seconds``; returns (full info, (n, C) data,
    (n,) timestamps)."""
    import pylsl

    infos = pylsl.resolve_byprop("source_id", source_id, timeout=timeout)
    assert infos, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(infos[0], max_buflen=60, recover=False)
    inlet.open_stream(timeout=5)
    info = inlet.info(timeout=5)
    data, stamps = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        chunk, ts = inlet.pull_chunk(timeout=0.1)
        data.extend(chunk)
        stamps.extend(ts)
    return info, np.array(data), np.array(stamps)
