"""LSL outlets: the signal stream and two marker streams (JSON strings and int32 codes).

Stream layout
-------------
Signal: name ``<name>``, type ``EEG`` (all-EEG montages) or ``MEG``, ``channel_count`` = montage channels,
``nominal_srate`` = ``--srate``, ``float32``, ``source_id`` ``vibe-rt-<name>-<montage>`` (stable across
restarts so recorders reconnect; overridable). XDF meta-data (``desc``):

- ``channels/channel``: ``label``, ``unit`` (``microvolts`` for EEG, ``tesla`` / ``tesla/meter`` for MEG: the
  words MNE-LSL reads), ``type`` (``EEG``, ``MAG``, ``GRAD``: MNE-LSL lower-cases it to MNE types),
  ``location/X,Y,Z`` in mm (the XDF convention: head coordinates, X right, Y front, Z up), and the fields
  MNE-LSL's ``StreamInfo.get_channel_info`` reads into ``info["chs"]``: ``loc/R0x..Ezz`` (MNE's 12-value
  ``loc`` in metres: the position, then the EEG reference or the MEG coil's orientation), ``kind``,
  ``coil_type`` and ``coord_frame`` (FIFF integers), so that ``mne_lsl.stream.StreamLSL`` shows the positions;
- ``cap``: ``name`` (montage), ``labelscheme``; ``acquisition``: ``manufacturer`` ``vibe-rt``, ``model``
  (checkpoint name), ``precision`` 32, ``compensated_lag`` 0;
- ``synchronization``: ``offset_mean`` 0 (timestamps are the true times of the samples), ``output_delay`` =
  lookahead (s): the time between a sample's timestamp and its push, ``output_delay_mode`` (``auto`` or
  ``fixed``) and ``output_delay_rule`` (how it was chosen; an automatic one may grow once, announced on the marker
  stream), ``chunk_size``;
- ``vibe_rt``: ``version``, ``model_hash``, ``backend``, ``montage``, ``model_sfreq``, ``epoch_tmin``,
  ``late_policy``, ``event_policy``, ``source``; with ``--calibration``, ``calibration`` (``name``, ``channels``,
  ``latency_s``, ``gain``, ``adapter``, ``model_hash``: see
  :meth:`vibe_rt.calibration.ResolvedCalibration.describe`).

An emulated device (``--device``, :mod:`vibe_rt.devices`) changes: the type (its LSL app's), ``cap/name`` (the
profile), with ``cap/reference``, ``cap/ground`` and ``cap/positions`` added; the app's other channels (e.g.
BioSemi's ``Trig1`` first, ``EX1``-``EX8`` and ``AUX1``-``AUX16`` last: label, unit, type, no location) around
the EEG ones; ``acquisition/manufacturer``,
``model`` and ``precision`` (the device's ADC bits), with ``acquisition/resolution`` (the quantization step, in
``resolution_unit``), ``range`` and ``emulated_by`` added; ``synchronization/offset_mean`` is the emulated transport
delay (samples are stamped that much after their true time, as the device's app does); and the children its LSL
app writes besides (e.g. BrainAmp's ``amplifier/settings``) are appended, its ``cap`` and ``acquisition`` entries
joining (or replacing) vibe-rt's own.

Markers: ``<name>-markers`` (type ``Markers``, 1 channel, irregular rate, ``string``, source_id ``<sid>-markers``):
one JSON object per onset, timestamped at the onset (its keys: the marker table of the README); and
``<name>-codes`` (type ``Markers``, int32, ``<sid>-codes``, one channel described as label ``code``, type
``stim``, unit ``none``, which MNE-LSL reads as a stim channel): the numeric code, only for onsets whose
response is in the signal. Both marker outlets
(:class:`MarkerOutlets`) also exist alone, without a signal stream, for sessions with a real amplifier; their
source ids then default to ``vibe-rt-<name>-experiment-markers`` / ``-codes``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import __version__
from ..devices import DeviceProfile
from ..montage import Montage
from .events import onset_marker
from .lookahead import Lookahead

_LSL_TYPES = {"eeg": "EEG", "mag": "MAG", "grad": "GRAD"}


def default_source_id(name: str, montage: Montage) -> str:
    """``vibe-rt-<name>-<montage>``."""
    return f"vibe-rt-{name}-{montage.name}"


#: MNE's 12 ``loc`` values, named as MNE-LSL names the children of ``channel/loc``.
_MNE_LOC_NAMES = ("R0x", "R0y", "R0z", "Exx", "Exy", "Exz", "Eyx", "Eyy", "Eyz", "Ezx", "Ezy", "Ezz")


def signal_info(montage: Montage, srate: float, *, name: str, source_id: str, units: Sequence[str],
                lookahead: Lookahead, chunk_size: int, extra: dict[str, Any] | None = None,
                device: DeviceProfile | None = None, device_delay_s: float = 0.0,
                calibration: dict[str, str] | None = None) -> Any:
    """A ``pylsl.StreamInfo`` for the signal stream with the meta-data described in the module docstring
    (``calibration``: the entries of ``desc/vibe_rt/calibration``, None without one)."""
    import pylsl

    kind = device.lsl.type if device is not None else montage.modality
    n_extra = device.n_extra if device is not None else 0
    info = pylsl.StreamInfo(name, kind, montage.n_channels + n_extra, float(srate), pylsl.cf_float32, source_id)
    desc = info.desc()
    chans = desc.append_child("channels")
    _append_extra_channels(chans, device, "first")
    mne_chs = montage.create_info()["chs"]
    for label, typ, unit, pos, mne_ch in zip(montage.ch_names, montage.ch_types, units, montage.positions, mne_chs):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", _LSL_TYPES[typ])
        loc = ch.append_child("location")
        for axis, v in zip("XYZ", np.asarray(pos, float) * 1000.0):
            loc.append_child_value(axis, f"{v:.3f}")
        mne_loc = ch.append_child("loc")
        for key, v in zip(_MNE_LOC_NAMES, mne_ch["loc"]):
            mne_loc.append_child_value(key, repr(float(v)))
        for key in ("kind", "coil_type", "coord_frame"):
            ch.append_child_value(key, str(int(mne_ch[key])))
    _append_extra_channels(chans, device, "last")
    cap = {"name": montage.name, "labelscheme": "10-20" if montage.modality == "EEG" else "CTF"}
    acquisition = {"manufacturer": "vibe-rt", "model": str((extra or {}).get("model", "ViBE")), "precision": "32",
                   "compensated_lag": "0"}
    app_desc: dict[str, Any] = {}
    if device is not None:
        cap.update(reference=device.reference, ground=device.ground, positions=device.positions_from)
        acquisition.update(manufacturer=device.manufacturer, model=device.model, precision=str(device.precision_bits),
                           resolution=f"{device.resolution:.10g}", resolution_unit=device.unit,
                           range=f"{device.range:g}", emulated_by=f"vibe-rt {__version__}")
        app_desc = dict(device.lsl.desc)
        cap.update(app_desc.pop("cap", {}))
        acquisition.update(app_desc.pop("acquisition", {}))
    _append_tree(desc.append_child("cap"), cap)
    _append_tree(desc.append_child("acquisition"), acquisition)
    sync = desc.append_child("synchronization")
    sync.append_child_value("offset_mean", f"{device_delay_s:g}")
    sync.append_child_value("output_delay", f"{lookahead.seconds:.6f}")
    sync.append_child_value("output_delay_mode", lookahead.mode)
    sync.append_child_value("output_delay_rule", lookahead.rule)
    sync.append_child_value("chunk_size", str(chunk_size))
    meta = desc.append_child("vibe_rt")
    meta.append_child_value("version", __version__)
    meta.append_child_value("montage", montage.name)
    meta.append_child_value("model_sfreq", f"{montage.sfreq:g}")
    meta.append_child_value("epoch_tmin", f"{montage.tmin:g}")
    for key, value in (extra or {}).items():
        meta.append_child_value(str(key), str(value))
    _append_tree(desc, app_desc)
    if calibration is not None:
        cal = meta.append_child("calibration")
        for key, value in calibration.items():
            cal.append_child_value(str(key), str(value))
    return info


def _append_extra_channels(channels: Any, device: DeviceProfile | None, place: str) -> None:
    """The device app's non-EEG channels (label, unit, type; no location) before or after the EEG ones."""
    for group in device.extras(place) if device is not None else ():
        for label in group.labels:
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", group.unit)
            ch.append_child_value("type", group.type)


def _append_tree(element: Any, tree: dict[str, Any]) -> None:
    """Append ``tree`` (name -> text or nested dict) under an XML element, in order."""
    for key, value in tree.items():
        if isinstance(value, dict):
            _append_tree(element.append_child(key), value)
        else:
            element.append_child_value(key, str(value))


def default_marker_source_id(name: str) -> str:
    """``vibe-rt-<name>-experiment``: the source id prefix of marker-only outlets (``--no-synth`` sessions)."""
    return f"vibe-rt-{name}-experiment"


class MarkerOutlets:
    """The two marker outlets: ``<name>-markers`` (JSON strings) and ``<name>-codes`` (int32).

    Part of every :class:`LslOutlets`; on its own it is the onset sink of sessions with a real amplifier
    (``vibe-rt experiment rsvp --no-synth``): the same marker streams, without a signal stream.

    Parameters
    ----------
    name : str
        Stream name prefix: the outlets are ``<name>-markers`` and ``<name>-codes``.
    source_id : str | None
        Prefix of the source ids (``<source_id>-markers``, ``<source_id>-codes``); default
        :func:`default_marker_source_id` (``vibe-rt-<name>-experiment``), stable across restarts so recorders
        reconnect.
    signal_source_id : str | None
        Source id of the signal stream the markers belong to, written as ``desc/signal_source_id``.
    """

    def __init__(self, name: str = "vibe-rt", source_id: str | None = None, *,
                 signal_source_id: str | None = None) -> None:
        import pylsl

        self.name = name
        self.source_id = source_id or default_marker_source_id(name)
        minfo = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                 f"{self.source_id}-markers")
        minfo.desc().append_child_value("format", "json")
        cinfo = pylsl.StreamInfo(f"{name}-codes", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_int32,
                                 f"{self.source_id}-codes")
        code = cinfo.desc().append_child("channels").append_child("channel")
        for key, value in (("label", "code"), ("type", "stim"), ("unit", "none")):
            code.append_child_value(key, value)
        if signal_source_id is not None:
            minfo.desc().append_child_value("signal_source_id", signal_source_id)
            cinfo.desc().append_child_value("signal_source_id", signal_source_id)
        self.markers = pylsl.StreamOutlet(minfo)
        self.codes = pylsl.StreamOutlet(cinfo)
        self._ids = itertools.count()

    def push_marker(self, marker: dict[str, Any], timestamp: float, code: int | None = None) -> None:
        """Push a JSON marker and (when not None) its numeric code, both stamped ``timestamp``."""
        self.markers.push_sample([json.dumps(marker, separators=(",", ":"))], timestamp)
        if code is not None:
            self.codes.push_sample([int(code)], timestamp)

    def submit_onset(self, image: np.ndarray, onset_time: float, meta: dict) -> None:
        """Push the markers of an onset (status ``marker-only``; the image is not used: there is no signal).

        The onset-sink method of :class:`vibe_rt.experiment.markers.OnsetSink`; ``meta["code"]`` (default 1)
        is the numeric code.
        """
        marker = onset_marker(next(self._ids), onset_time, meta)
        self.push_marker(marker, onset_time, int(meta.get("code", 1)))

    def close(self) -> None:
        """Drop the outlets (consumers see the streams disappear)."""
        self.markers = self.codes = None


class LslOutlets:
    """The three outlets of a vibe-rt stream.

    Parameters
    ----------
    montage : Montage
        Channels to stream.
    srate : float
        Nominal rate.
    units : list of str
        Unit words per channel.
    name : str
        Stream name.
    source_id : str | None
        Default :func:`default_source_id`.
    lookahead : Lookahead
        Output delay and how it was chosen, declared in ``desc/synchronization``.
    chunk_size : int
        Samples per push (LSL transmission chunk hint).
    extra : dict | None
        Entries for ``desc/vibe_rt`` (model hash, backend ...).
    device : DeviceProfile | None
        An emulated device (type and meta-data: see the module docstring).
    device_delay_s : float
        Its emulated transport delay (``synchronization/offset_mean``).
    calibration : dict | None
        Entries for ``desc/vibe_rt/calibration`` (the active calibration), None without one.
    """

    def __init__(self, montage: Montage, srate: float, units: Sequence[str], *, name: str = "vibe-rt",
                 source_id: str | None = None, lookahead: Lookahead = Lookahead.fixed(0.25), chunk_size: int = 5,
                 extra: dict[str, Any] | None = None, device: DeviceProfile | None = None,
                 device_delay_s: float = 0.0, calibration: dict[str, str] | None = None) -> None:

        self.name = name
        self.source_id = source_id or default_source_id(name, montage)
        self._info = signal_info(montage, srate, name=name, source_id=self.source_id, units=units,
                                 lookahead=lookahead, chunk_size=chunk_size, extra=extra, device=device,
                                 device_delay_s=device_delay_s, calibration=calibration)
        self._chunk_size = chunk_size
        self.signal: Any = None
        self.open_signal()
        self.marker_outlets: MarkerOutlets | None = MarkerOutlets(name, self.source_id,
                                                                  signal_source_id=self.source_id)

    @property
    def markers(self) -> Any:
        """The ``<name>-markers`` outlet (None once closed)."""
        return self.marker_outlets.markers if self.marker_outlets is not None else None

    @property
    def codes(self) -> Any:
        """The ``<name>-codes`` outlet (None once closed)."""
        return self.marker_outlets.codes if self.marker_outlets is not None else None

    def open_signal(self) -> None:
        """Create the signal outlet (again, after :meth:`close_signal`: same info and ``source_id``, so that
        recovering inlets reconnect)."""
        import pylsl

        self.signal = pylsl.StreamOutlet(self._info, chunk_size=self._chunk_size, max_buffered=360)

    def close_signal(self) -> None:
        """Destroy the signal outlet alone (an outlet restart fault); the marker outlets stay."""
        self.signal = None

    def push_signal(self, chunk: np.ndarray, timestamps: list[float]) -> None:
        """Push (n, C) float32 samples with one timestamp per sample."""
        self.signal.push_chunk(np.ascontiguousarray(chunk, dtype=np.float32), timestamps)

    def push_marker(self, marker: dict[str, Any], timestamp: float, code: int | None = None) -> None:
        """Push a JSON marker, and the numeric code when not None, both at ``timestamp``."""
        assert self.marker_outlets is not None, "the outlets are closed"
        self.marker_outlets.push_marker(marker, timestamp, code)

    def close(self) -> None:
        """Drop the outlets (consumers see the streams disappear)."""
        if self.marker_outlets is not None:
            self.marker_outlets.close()
        self.signal = self.marker_outlets = None
