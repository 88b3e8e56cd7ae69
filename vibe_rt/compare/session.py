"""Where the synthesized epoch comes from, and the one pairing path shared by live and offline modes.

A :class:`Session` receives markers and chunks (from LSL inlets or from a file), epochs them with
:class:`~vibe_rt.compare.epocher.EpochExtractor`, pairs each live epoch with its synthesized epoch and feeds the
:class:`~vibe_rt.compare.comparator.Comparator`. The synthesized side is always a continuous signal epoched by
the same kind of extractor, around the same markers: either a second, synthesized stream (``--synth``: live,
or a recording), or the signal the stream would have produced, rendered from a :class:`SynthSource`'s
per-marker responses overlap-added at the true onsets (:class:`~vibe_rt.compare.predicted.PredictedSignal`), so
that overlapping responses (any SOA shorter than the epoch) are modelled, not confounded. The synthesized
epochs are wide (the comparator's margin on each side) so that the latency can be fitted without inventing
samples at the window's edges. Pure: no threads, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._logs import logger
from ..errors import ConfigError, DataError
from ..montage import Montage
from .comparator import Comparator
from .epocher import EpochExtractor, Marker
from .predicted import PredictedSignal, synthesis_rate

__all__ = ["SynthSource", "DictSynth", "PredictorSynth", "Session", "find_image", "image_name", "no_image_error"]


class SynthSource(Protocol):
    """Gives the predicted response ``(C, T)`` (SI, model channels, the isolated epoch of its image) for an event,
    or None if unknown; :class:`Session` overlap-adds these at their onsets."""

    def __call__(self, marker: Marker) -> np.ndarray | None: ...


class DictSynth:
    """Synthesized epochs looked up by marker key (e.g. precomputed predictions or ground truth)."""

    def __init__(self, epochs: Mapping[str, np.ndarray]) -> None:
        self.epochs = {str(k): np.asarray(v, dtype=np.float64) for k, v in epochs.items()}

    def __call__(self, marker: Marker) -> np.ndarray | None:
        return self.epochs.get(marker.key)


_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_name(key: str, payload: Mapping[str, Any]) -> str:
    """The image a marker names: its payload's ``image`` (vibe-rt's JSON markers), else its key."""
    return str(payload.get("image", key))


def find_image(name: str, image_root: Path | None) -> Path | None:
    """The existing image file ``name`` refers to: the name as a path, else relative to ``image_root`` (also with
    an image extension added); None when there is none."""
    cands = [Path(name)]
    if image_root is not None:
        cands.append(image_root / name)
        cands += [image_root / (name + e) for e in _IMAGE_EXTS]
    return next((c for c in cands if c.is_file()), None)


def no_image_error(names: Sequence[str], image_root: Path | None) -> DataError:
    """The error for markers none of which names an existing image (``names``: the names they carry)."""
    from ..data.recordings import normalise_code

    example = names[0] if names else ""
    if all(normalise_code(n).isdigit() for n in names):
        return DataError(f"the markers carry no image names, only event codes (such as {example!r}), so no response "
                         "can be predicted for them; give a stimulus log with the image of each onset "
                         "(--stimulus-log CSV), or compare with the synthesized stream or its recording (--synth)")
    if image_root is None:
        return DataError(f"no marker named an image file that exists (such as {example!r}): pass --images DIR (the "
                         "folder the stimuli were shown from)")
    return DataError(f"none of the {len(set(names))} images the markers name (such as {example!r}) is in "
                     f"{image_root}: pass the folder the stimuli were shown from to --images")


class PredictorSynth:
    """Predicts the response to the image named by the marker (cached per image); :class:`Session` overlap-adds the
    responses at their onsets into the signal the stream would have produced.

    Parameters
    ----------
    predictor : vibe_rt.runtime.Predictor
        Anything with ``preprocess(frames uint8 (B,H,W,3)) -> pixels`` and ``predict(pixels) -> (epochs, t)``.
    image_root : path | None
        Folder against which relative image paths / ids in markers are resolved.
    model_scale : float
        SI units per unit of the predictor's output (1 for a model that emits SI; see
        :func:`vibe_rt.stream.run.si_per_model_unit`): the responses compared are in SI, as the live data.
    """

    def __init__(self, predictor: Any, image_root: str | Path | None = None, model_scale: float = 1.0) -> None:
        self.predictor = predictor
        self.image_root = Path(image_root) if image_root else None
        self.model_scale = float(model_scale)
        self._cache: dict[str, np.ndarray | None] = {}

    def resolve(self, marker: Marker) -> Path | None:
        """The image file for a marker (``payload['image']`` or the key), or None."""
        return find_image(image_name(marker.key, marker.payload), self.image_root)

    def __call__(self, marker: Marker) -> np.ndarray | None:
        if marker.key in self._cache:
            return self._cache[marker.key]
        path = self.resolve(marker)
        out = None
        if path is None:
            logger.warning("marker %r names no image file that exists (image root: %s)", marker.key, self.image_root)
        else:
            import cv2

            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"cannot read image {path}; give a PNG/JPEG file")
            frames = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[None]
            epochs, _ = self.predictor.predict(self.predictor.preprocess(frames))
            out = np.asarray(epochs[0], dtype=np.float64) * self.model_scale
        self._cache[marker.key] = out
        return out


class Session:
    """Pairs live epochs with synthesized ones and feeds a :class:`Comparator`.

    Parameters
    ----------
    comparator : Comparator
    live : EpochExtractor
        Epochs the live stream.
    synth : SynthSource | EpochExtractor
        Either a source of each event's predicted response (rendered into the signal the stream would have
        produced), or an extractor on a synthesized stream epoched around the same markers, with the
        comparator's margin (``EpochExtractor(..., margin_s=comparator.margin_s)``).
    on_event : callable | None
        Called with each event record after :meth:`Comparator.update`.
    lag_s : float
        With a source: how far the rendered signal stays behind the live data (markers may arrive that late).
    """

    def __init__(
        self,
        comparator: Comparator,
        live: EpochExtractor,
        synth: SynthSource | EpochExtractor,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        lag_s: float = 0.5,
    ) -> None:
        self.comparator = comparator
        self.live = live
        self.source: SynthSource | None = None
        self.predicted: PredictedSignal | None = None
        if isinstance(synth, EpochExtractor):
            if synth.margin != comparator.margin:
                raise ConfigError(f"the synthesized extractor's margin ({synth.margin} samples) must be the "
                                  f"comparator's ({comparator.margin}): EpochExtractor(..., "
                                  "margin_s=comparator.margin_s)")
            self.synth = synth
        else:
            self.source = synth
            self.predicted = PredictedSignal(comparator.montage, synthesis_rate(comparator.montage.sfreq, live.sfreq),
                                             margin_s=comparator.margin_s, lag_s=lag_s)
            self.synth = self.predicted.extractor
        self.on_event = on_event
        self._seq = 0
        self._live_ready: dict[int, tuple[Marker, np.ndarray]] = {}
        self._synth_ready: dict[int, np.ndarray] = {}
        self._dead: set[int] = set()
        self._unplaced: list[tuple[Marker, np.ndarray]] = []  # responses that came before the first live sample

    @property
    def montage(self) -> Montage:
        """The comparator's montage."""
        return self.comparator.montage

    def add_marker(self, time: float, key: str, payload: dict[str, Any] | None = None) -> Marker:
        """Register an event at ``time`` (LSL seconds)."""
        m = Marker(float(time), str(key), dict(payload or {}), self._seq)
        self._seq += 1
        self.live.add_marker(m)
        if self.predicted is None:
            self.synth.add_marker(m)
            return m
        assert self.source is not None
        epoch = self.source(m)
        if epoch is None:
            self._lose(m, "no synthesized epoch", "synth")
            return m
        if self.predicted.started:
            self.predicted.add(m, epoch)
        else:  # placed once the live data's sample grid is known
            self._unplaced.append((m, epoch))
        return m

    def push_live(self, timestamps: np.ndarray, data: np.ndarray) -> None:
        """Live chunk ``(N,)`` timestamps, ``(N, n_live)`` data in stream units."""
        self.live.push(timestamps, data)
        if self.predicted is not None and not self.predicted.started and len(timestamps):
            self._start_rendering(float(np.asarray(timestamps).reshape(-1)[0]))

    def _start_rendering(self, first: float) -> None:
        """Start the rendered timeline on the live data's sample grid (a whole number of rendering samples before
        its first sample, well before the first response), so that responses are placed on the samples a stream
        recorded at that grid placed them on; then add the responses that came before."""
        assert self.predicted is not None
        earliest = min([first] + [m.time for m, _ in self._unplaced])
        lead = first - earliest + 2 * (self.montage.tmax - self.montage.tmin) + 1.0
        self.predicted.start(first - int(np.ceil(lead * self.predicted.srate)) / self.predicted.srate)
        for m, epoch in self._unplaced:
            self.predicted.add(m, epoch)
        self._unplaced = []

    def push_synth(self, timestamps: np.ndarray, data: np.ndarray) -> None:
        """Synthesized-stream chunk (only when ``synth`` is an extractor)."""
        if self.predicted is not None:
            raise ConfigError("this session renders its synthesized signal from a source, not from a stream")
        self.synth.push(timestamps, data)

    def _lose(self, m: Marker, reason: str, stream: str) -> None:
        if m.seq in self._dead:
            return
        self._dead.add(m.seq)
        self._live_ready.pop(m.seq, None)
        self._synth_ready.pop(m.seq, None)
        self.comparator.record_lost(m, reason, stream=stream)

    def process(self) -> list[dict[str, Any]]:
        """Epoch what is complete, compare pairs; returns the new event records."""
        ready, lost = self.live.pop_ready()
        for m, reason in lost:
            self._lose(m, reason, "live")
        for m, ep in ready:
            if m.seq not in self._dead:
                self._live_ready[m.seq] = (m, ep)
        if self.predicted is not None and self.live.last_time is not None:
            self.predicted.render_until(self.live.last_time)
        sready, slost = self.synth.pop_ready()
        for m, reason in slost:
            self._lose(m, reason, "synth")
        for m, ep in sready:
            if m.seq not in self._dead:
                self._synth_ready[m.seq] = ep
        records = []
        margin, n_times = self.comparator.margin, self.montage.n_times
        for seq in sorted(set(self._live_ready) & set(self._synth_ready)):
            m, a = self._live_ready.pop(seq)
            wide = self._synth_ready.pop(seq)
            rec = self.comparator.update(a, wide[:, margin:margin + n_times], m.key, synth_wide=wide, time=m.time,
                                         meta={"seq": m.seq, **_small(m.payload)})
            records.append(rec)
            if self.on_event is not None:
                self.on_event(rec)
        return records

    def finish(self) -> None:
        """At the end: the rest of the rendered signal, then whatever is still pending is lost (``incomplete at
        stop``)."""
        if self.predicted is not None and self.live.last_time is not None:
            self.predicted.render_until(self.live.last_time + self.montage.tmax - self.montage.tmin
                                        + self.comparator.margin_s + self.synth.pad_s, final=True)
        self.process()
        for m, reason in self.live.flush():
            self._lose(m, reason, "live")
        for m, reason in self.synth.flush():
            self._lose(m, reason, "synth")
        for m, _ in list(self._live_ready.values()):
            self._lose(m, "incomplete at stop", "synth")


def _small(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if isinstance(v, (str, int, float, bool)) and k != "seq"}
