"""The benchmark suite behind ``vibe-rt bench``: its names, one configuration for all of them, one call to run one.

:class:`BenchConfig` holds every option of ``vibe-rt bench`` (each benchmark reads those it uses; ``quick``
picks short settings for what is not given); :func:`run` runs one benchmark with it and :func:`run_suite` the
ones of ``vibe-rt bench all``. Every benchmark is a module of :mod:`vibe_rt.bench` with
``run(**options) -> (result, path)``; the README tables (:mod:`~vibe_rt.bench.tables`) are not a benchmark and
have their own ``run``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, VibeError

__all__ = ["BENCHMARKS", "SUITE", "BenchConfig", "run", "run_suite"]

#: ``vibe-rt bench all``: the four questions of a deployment (as ``vibe-rt bench`` without a name).
SUITE = ("latency", "stream", "throughput", "quality")

Result = tuple[dict[str, Any], Path | None]


@dataclass
class BenchConfig:
    """The options of ``vibe-rt bench`` (None: the benchmark's default, shorter with ``quick``).

    Attributes
    ----------
    out : path-like | None
        Result folder (default ``benchmarks/results/`` in a source checkout, else ``./vibe-rt-bench/``).
    write : bool
        Write the JSON result (and figures).
    quick : bool
        Short settings: a smoke check, not a result.
    threads : int | None
        CPU threads (default: physical cores; model-size: 1).
    backend, device, model, engines_dir
        Inference variants (see :func:`~vibe_rt.bench.inference.parse_variants`), ``"cpu"``/``"cuda"``, models
        (checkpoints or ``tiny``/``base``; throughput uses the first, quality each checkpoint, latency and
        inference each of ``default``/presets/checkpoints, model-size each preset) and the engine cache.
    duration : float | None
        Seconds of streaming (latency 30, stream 60, experiment-timing 120; quick 5, 10, 10).
    lookahead, srate, chunk_ms, channels, peer, artifacts
        Output delay (s), rate (Hz), push interval (ms), stream channels, run MNE-LSL's PlayerLSL too, and the
        ``--artifacts`` list vibe-rt injects (stream).
    event_rate, events, lookahead_mode, fps, refresh_hz, video, tag
        Latency: onsets/s (5, quick 10), ``"rate"`` or ``"every"`` frame an onset, the lookaheads compared
        (``"both"``: the fixed ``lookahead`` and the automatic one; ``"fixed"``, ``"auto"``), demo-source frame
        rate, display refresh of the floor, a video instead of the demo source, and a name added to the result
        file's (``latency[_every]_<tag>-<machine>.json``, e.g. a 10-minute run beside the side-by-side one).
    target_ms, max_batch
        Throughput: p99 target per call (default lookahead / 2) and largest batch (512, quick 8).
    data, splits
        Quality: dataset folder to score on and random half splits (100, quick 20); simulate: the folder the
        dataset is written to (default: a temporary one, deleted).
    montage : tuple of str
        Inference and simulate: one montage (things-eeg2); model-size: each (things-eeg2 and things-meg).
    seconds, min_iters, max_iters, warmup, repeats
        Inference: time per batch-1 measurement, rounds at least/at most, untimed calls; model-size: warmup and
        timed calls (10 and 50, quick 2 and 10).
    seed, n_train, n_test, noise_scale, machine
        Simulate: seed, images (the montage's default; quick 50 and 12), background level, result name.
    pacing, size, synth
        Experiment-timing: frame pacing, window ``WxH``, drive the synthesized stream too.
    """

    out: str | Path | None = None
    write: bool = True
    quick: bool = False
    threads: int | None = None
    backend: str | None = None
    device: str = "cpu"
    model: tuple[str, ...] = ()
    engines_dir: str | Path | None = None
    duration: float | None = None
    lookahead: float = 0.25
    srate: float = 1000.0
    chunk_ms: float = 5.0
    channels: int = 64
    peer: bool = True
    artifacts: str | None = None
    event_rate: float | None = None
    events: str = "rate"
    lookahead_mode: str = "both"
    fps: float = 30.0
    refresh_hz: float = 60.0
    video: str | Path | None = None
    tag: str | None = None
    target_ms: float | None = None
    max_batch: int | None = None
    data: str | Path | None = None
    splits: int | None = None
    montage: tuple[str, ...] = ()
    seconds: float | None = None
    min_iters: int | None = None
    max_iters: int = 2000
    warmup: int | None = None
    repeats: int | None = None
    seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    noise_scale: float = 0.4
    machine: str | None = None
    pacing: str = "auto"
    size: str = "800x600"
    synth: bool = False

    def __post_init__(self) -> None:
        self.model = tuple(str(m) for m in self.model)
        self.montage = tuple(self.montage)

    def validate(self) -> None:
        """Raise :class:`~vibe_rt.errors.ConfigError` on an invalid number, before any benchmark runs."""
        checks = [("--srate", self.srate, 0, False), ("--lookahead", self.lookahead, 0, True),
                  ("--chunk-ms", self.chunk_ms, 0, False), ("--duration", self.duration, 0, False),
                  ("--channels", self.channels, 1, True), ("--event-rate", self.event_rate, 0, False),
                  ("--fps", self.fps, 0, False), ("--refresh-hz", self.refresh_hz, 0, False),
                  ("--target-ms", self.target_ms, 0, False), ("--max-batch", self.max_batch, 1, True),
                  ("--splits", self.splits, 1, True), ("--threads", self.threads, 1, True),
                  ("--seconds", self.seconds, 0, False), ("--min-iters", self.min_iters, 1, True),
                  ("--max-iters", self.max_iters, 1, True), ("--warmup", self.warmup, 0, True),
                  ("--repeats", self.repeats, 1, True), ("--n-train", self.n_train, 1, True),
                  ("--n-test", self.n_test, 3, True), ("--noise-scale", self.noise_scale, 0, True)]
        for option, value, low, inclusive in checks:
            if value is None:
                continue
            if not (math.isfinite(value) and (value >= low if inclusive else value > low)):
                raise ConfigError(f"{option} must be {'>=' if inclusive else '>'} {low}, got {value:g}; see "
                                  "`vibe-rt bench <name> --help` for typical values")
        if self.tag is not None and not re.fullmatch(r"[a-z0-9]+", self.tag):
            raise ConfigError(f"--tag must be lower-case letters and digits (it names a file), got {self.tag!r}")
        self.window_size()

    def window_size(self) -> tuple[int, int]:
        """``size`` as ``(width, height)`` in pixels."""
        try:
            w, h = (int(v) for v in self.size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size must look like 800x600, got {self.size!r}") from None
        if w < 1 or h < 1:
            raise ConfigError(f"--size must be at least 1x1, got {self.size!r}")
        return w, h

    def one_montage(self, default: str = "things-eeg2") -> str:
        """The single ``--montage`` of a benchmark that takes one."""
        if len(self.montage) > 1:
            raise ConfigError(f"this benchmark takes one --montage, got {len(self.montage)}: "
                              f"{', '.join(self.montage)}")
        return self.montage[0] if self.montage else default

    def pick(self, value: Any, normal: Any, quick: Any) -> Any:
        """``value`` when given, else the default for a normal or a quick run."""
        return value if value is not None else (quick if self.quick else normal)


def _latency(c: BenchConfig) -> Result:
    from . import latency

    return latency.run(backend=c.backend, models=c.model, device=c.device, duration=c.pick(c.duration, 30.0, 5.0),
                       event_rate=c.pick(c.event_rate, 5.0, 10.0), events=c.events, srate=c.srate,
                       lookahead=c.lookahead, lookahead_mode=c.lookahead_mode, fps=c.fps, refresh_hz=c.refresh_hz,
                       video=c.video, chunk_ms=c.chunk_ms, threads=c.threads, engines_dir=c.engines_dir,
                       tag=c.tag, out_dir=c.out, write=c.write)


def _stream(c: BenchConfig) -> Result:
    from . import stream

    return stream.run(duration=c.pick(c.duration, 60.0, 10.0), channels=c.channels, srate=c.srate,
                      chunk_ms=c.chunk_ms, lookahead=c.lookahead, peer=c.peer, artifacts=c.artifacts, out_dir=c.out,
                      write=c.write)


def _throughput(c: BenchConfig) -> Result:
    from . import throughput

    return throughput.run(backend=c.backend, model=c.model[0] if c.model else None, device=c.device,
                          lookahead=c.lookahead, target_ms=c.target_ms, max_batch=c.pick(c.max_batch, 512, 8),
                          seconds=0.5 if c.quick else 1.5, min_iters=5 if c.quick else 10, threads=c.threads,
                          engines_dir=c.engines_dir, out_dir=c.out, write=c.write)


def _quality(c: BenchConfig) -> Result:
    from . import quality

    checkpoints: list[str | Path] = [m for m in c.model if m not in ("tiny", "base")]  # presets have no trained weights
    return quality.run(models=checkpoints, data=c.data, quick=c.quick, n_splits=c.splits, threads=c.threads,
                       out_dir=c.out, write=c.write)


def _inference(c: BenchConfig) -> Result:
    from . import inference

    return inference.run(device=c.device, models=",".join(c.model) or ("default" if c.quick else "default,base"),
                         montage=c.one_montage(), backend=c.backend, seconds=c.pick(c.seconds, None, 0.3),
                         min_iters=c.pick(c.min_iters, 20, 5), max_iters=c.max_iters, warmup=c.pick(c.warmup, 10, 2),
                         threads=c.threads, engines_dir=c.engines_dir, out_dir=c.out, write=c.write)


def _comparator(c: BenchConfig) -> Result:
    from . import comparator

    return comparator.run(quick=c.quick, out_dir=c.out, write=c.write)


def _model_size(c: BenchConfig) -> Result:
    from . import model_size

    return model_size.run(sizes=c.model or (("tiny",) if c.quick else model_size.SIZES),
                          montages=c.montage or (("things-eeg2",) if c.quick else model_size.MONTAGES),
                          threads=c.threads or 1, warmup=c.pick(c.warmup, 10, 2), repeats=c.pick(c.repeats, 50, 10),
                          out_dir=c.out, write=c.write)


def _simulate(c: BenchConfig) -> Result:
    from . import simulate

    return simulate.run(montage=c.one_montage(), data_dir=c.data, seed=c.seed, n_train=c.pick(c.n_train, None, 50),
                        n_test=c.pick(c.n_test, None, 12), noise_scale=c.noise_scale, machine=c.machine,
                        out_dir=c.out, write=c.write)


def _experiment_timing(c: BenchConfig) -> Result:
    from . import experiment_timing

    return experiment_timing.run(duration=c.pick(c.duration, 120.0, 10.0), pacing=c.pacing, size=c.window_size(),
                                 synth=c.synth, out_dir=c.out, write=c.write)


def _artifacts(c: BenchConfig) -> Result:
    from . import artifacts

    return artifacts.run(out_dir=c.out, write=c.write)


_RUNNERS: dict[str, Callable[[BenchConfig], Result]] = {
    "latency": _latency, "stream": _stream, "throughput": _throughput, "quality": _quality,
    "inference": _inference, "comparator": _comparator, "model-size": _model_size, "simulate": _simulate,
    "experiment-timing": _experiment_timing, "artifacts": _artifacts,
}
#: Every benchmark, by its ``vibe-rt bench`` name.
BENCHMARKS = tuple(_RUNNERS)


def run(name: str, config: BenchConfig) -> Result:
    """Run the benchmark ``name`` (one of :data:`BENCHMARKS`) with ``config``; returns its result and JSON path."""
    if name not in _RUNNERS:
        raise ConfigError(f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARKS)}")
    config.validate()
    return _RUNNERS[name](config)


def run_suite(config: BenchConfig, names: tuple[str, ...] = SUITE) -> dict[str, Result | VibeError]:
    """Run ``names`` one after the other; a benchmark that cannot run here (a :class:`VibeError`, e.g. quality
    without a model) is returned as its error and the others still run."""
    from .._logs import logger

    config.validate()
    out: dict[str, Result | VibeError] = {}
    for name in names:
        try:
            out[name] = run(name, config)
        except VibeError as err:
            logger.error("bench %s skipped: %s", name, err)
            out[name] = err
    return out
