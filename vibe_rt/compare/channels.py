"""Channel matching (live device channels -> model montage channels).

Live channels are matched to the montage by label, case-insensitively. Montage channels that the live
device lacks are interpolated from the live channels through sensor positions:

* ``"spline"`` (default for EEG with >= 4 source channels): spherical-spline interpolation (Perrin et al.
  1989) with MNE's interpolation matrix, the same one :meth:`mne.io.Raw.interpolate_bads` uses;
* ``"idw"``: inverse-distance weighting (power 2) of the ``k`` nearest live channels (used for MEG,
  where spherical splines of scalar EEG potentials do not apply, and as fallback).

Live channels that the montage lacks are ignored. Where no label matches (a cap with labels of its own, such as
BioSemi's A1..D32) but live positions are known, every montage channel is interpolated from them. The result is
one matrix ``W`` of shape
``(n_model_channels, n_live_channels)`` so that ``model_data = W @ live_data``: pure, cheap per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._logs import logger
from ..errors import ConfigError
from ..montage import Montage

__all__ = ["ChannelMatch", "match_channels"]


@dataclass
class ChannelMatch:
    """How model channels are obtained from live channels.

    Attributes
    ----------
    weights : ndarray, shape (n_model, n_live)
        ``model = weights @ live`` (live already in SI units).
    matched : dict
        Model channel -> live channel label, for channels matched by label.
    interpolated : list of str
        Model channels interpolated from neighbours.
    ignored : list of str
        Live channels not used (not in the montage).
    method : str
        Interpolation method used for the missing ones (``"none"`` if nothing was missing).
    """

    weights: np.ndarray
    matched: dict[str, str]
    interpolated: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    method: str = "none"

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable description (for reports and calibration profiles)."""
        out: dict[str, object] = dict(self.matched)
        for ch in self.interpolated:
            out[ch] = f"interpolated:{self.method}"
        return {"map": out, "interpolated": list(self.interpolated), "ignored": list(self.ignored),
                "method": self.method}


def _standard_positions(names: Sequence[str]) -> dict[str, np.ndarray]:
    from ..montage import _mne_eeg_positions

    try:
        pos = _mne_eeg_positions("colin27_1005")
    except Exception:  # pragma: no cover - MNE without that montage
        return {}
    by_lower = {k.lower(): v for k, v in pos.items()}
    return {n: by_lower[n.lower()] for n in names if n.lower() in by_lower}


def match_channels(
    montage: Montage,
    live_names: Sequence[str],
    live_positions: np.ndarray | None = None,
    *,
    method: str = "auto",
    k: int = 4,
    aliases: Mapping[str, str] | None = None,
) -> ChannelMatch:
    """Match live channel labels to a montage; interpolate the montage channels the live data lacks.

    Parameters
    ----------
    montage : Montage
        Model channels and positions.
    live_names : sequence of str
        Live channel labels (any case).
    live_positions : ndarray, shape (n_live, 3) | None
        Live sensor positions in metres (head coordinates); rows of ``nan`` are unknown. Unknown
        positions come from the montage (same label) or from MNE's ``colin27_1005`` (EEG labels).
    method : {"auto", "spline", "idw"}
        Interpolation of missing channels; ``auto`` = spline for EEG with >= 4 sources, else idw.
    k : int
        Neighbours for inverse-distance weighting.
    aliases : mapping | None
        Live label -> the name it matches by (a device profile's 10-10 equivalents, e.g. BioSemi ``A29`` ->
        ``Oz``); the match records the live label.

    Returns
    -------
    match : ChannelMatch
    """
    if method not in ("auto", "spline", "idw"):
        raise ConfigError(f"unknown interpolation method {method!r}; use 'auto', 'spline' or 'idw'")
    aliases = aliases or {}
    lower = [aliases.get(n, n).lower() for n in live_names]
    dup = sorted({n for n in lower if lower.count(n) > 1})
    if dup:
        raise ConfigError(f"live channel labels are duplicated (case-insensitively): {dup}; rename them")
    live_idx = {n: i for i, n in enumerate(lower)}
    model_lower = [c.lower() for c in montage.ch_names]
    n_model, n_live = montage.n_channels, len(live_names)
    w = np.zeros((n_model, n_live))
    matched: dict[str, str] = {}
    missing: list[int] = []
    for m, name in enumerate(model_lower):
        if name in live_idx:
            w[m, live_idx[name]] = 1.0
            matched[montage.ch_names[m]] = live_names[live_idx[name]]
        else:
            missing.append(m)
    ignored = [n for n, low in zip(live_names, lower) if low not in set(model_lower)]
    pos = np.full((n_live, 3), np.nan) if live_positions is None else np.array(live_positions, dtype=float)
    if not matched and int(np.all(np.isfinite(pos), axis=1).sum()) < 4:
        raise ConfigError(
            f"no live channel matches montage {montage.name!r} (live: {list(live_names)[:10]}..., "
            f"model: {list(montage.ch_names)[:10]}...) and the live stream gives no positions to interpolate "
            "from; choose the montage of the recording device, or name its device profile (--device)"
        )
    if not missing:
        return ChannelMatch(w, matched, [], ignored, "none")

    # positions of usable source channels
    model_pos = {c.lower(): p for c, p in zip(montage.ch_names, montage.positions)}
    std = _standard_positions([live_names[i] for i in range(n_live) if not np.all(np.isfinite(pos[i]))])
    for i, n in enumerate(live_names):
        if not np.all(np.isfinite(pos[i])):
            if n.lower() in model_pos:
                pos[i] = model_pos[n.lower()]
            elif n in std:
                pos[i] = std[n]
    src = [i for i in range(n_live) if np.all(np.isfinite(pos[i])) and np.linalg.norm(pos[i]) > 0]
    if not src:
        raise ConfigError("cannot interpolate missing channels: no live channel has a known position")
    is_eeg = all(montage.ch_types[m] == "eeg" for m in missing)
    use = method if method != "auto" else ("spline" if is_eeg and len(src) >= 4 else "idw")
    targets = montage.positions[missing]
    if use == "spline":
        from mne.channels.interpolation import _make_interpolation_matrix

        sub = _make_interpolation_matrix(pos[src], targets)  # (n_missing, n_src)
    else:
        d = np.linalg.norm(targets[:, None, :] - pos[src][None, :, :], axis=-1)
        sub = np.zeros_like(d)
        kk = min(k, len(src))
        for r in range(d.shape[0]):
            near = np.argsort(d[r])[:kk]
            inv = 1.0 / np.maximum(d[r, near], 1e-6) ** 2
            sub[r, near] = inv / inv.sum()
    w[np.ix_(missing, src)] = sub
    interp = [montage.ch_names[m] for m in missing]
    logger.info("interpolating %d missing channel(s) (%s): %s", len(interp), use, ", ".join(interp))
    return ChannelMatch(w, matched, interp, ignored, use)
