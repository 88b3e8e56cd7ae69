"""Scores against the simulator's noise-free truth, a shuffled-image control and bootstrap confidence intervals.

- :func:`truth_metrics`: amplitude-aware scores of predictions against ``test/evoked_true.npy`` (RMSE in µV,
  R^2 of the image-specific variance, r across images) and the peak latency/amplitude errors of the C1, P1,
  N1 and face N170 components (:data:`COMPONENTS`).
- :func:`shuffled_control`: the encoding r of the predictions with the images permuted (a derangement): what
  a prediction without any image-specific information earns under the same protocol.
- :func:`encoding_r_ci`: percentile bootstrap CI over test images of the encoding r against the full
  repetition average; :func:`bootstrap_encoding_r`: the resampled statistics themselves (also used by the
  ablation study's two-level bootstrap).

All numpy; the encoding protocol is :mod:`vibe_rt.training.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..stats import repetition_mean
from .metrics import encoding_r, encoding_scores

__all__ = ["Component", "COMPONENTS", "truth_metrics", "derangement", "shuffled_control", "bootstrap_encoding_r",
           "encoding_r_ci"]


@dataclass(frozen=True)
class Component:
    """A peak to measure: the window (s, inclusive), the channels averaged, and the polarity (+1, -1, 0 = |max|)."""

    name: str
    window: tuple[float, float]
    channels: tuple[str, ...]
    polarity: int


#: The components of :func:`vibe_rt.data.simulate.default_sources` (docs/simulator.md, "The model", 4):
#:
#: - C1: calcarine dipoles, peak 66-106 ms (``latency`` 0.066 s + ``dlatency`` 0.040 s) plus the SF and ON
#:   delays; their forward gains are largest at Oz and POz (the midline; O1/O2 carry more of the C2
#:   negativity at 116 ms). Its polarity flips with the visual field (positive lower, negative upper), so the
#:   peak is the largest |value|.
#: - P1: dorsal extrastriate, 100-135 ms, positive; largest gains at PO8/PO7 (the documented checkerboard P1
#:   +5.2/+4.9 µV at PO8/PO7, 106 ms); O1/O2 are left out because the C2 negativity at 116 ms cancels P1 there.
#: - N1: ventral occipito-temporal, 155-185 ms, negative; largest gains at P8/P7 then PO8/PO7.
#: - N170: the face-selective component (``face`` input), 158 ms + 15 ms contrast term (+10 ms inverted),
#:   negative, largest at P8 then PO8 (right-lateralised; documented faces -6.8 µV at P8, 174 ms).
COMPONENTS: tuple[Component, ...] = (
    Component("C1", (0.06, 0.11), ("Oz", "POz"), 0),
    Component("P1", (0.08, 0.14), ("PO7", "PO8"), 1),
    Component("N1", (0.14, 0.20), ("PO7", "PO8", "P7", "P8"), -1),
    Component("N170", (0.15, 0.20), ("P8", "PO8"), -1),
)


def _peaks(x: np.ndarray, polarity: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and signed value of the peak of each row of ``x`` (N, T_window)."""
    idx = np.argmax(x * polarity if polarity else np.abs(x), axis=1)
    return idx, np.take_along_axis(x, idx[:, None], axis=1)[:, 0]


def truth_metrics(pred: np.ndarray, truth: np.ndarray, *, times: np.ndarray, ch_names: list[str] | tuple[str, ...],
                  std: np.ndarray | None = None, components: tuple[Component, ...] = COMPONENTS) -> dict[str, Any]:
    """Amplitude-aware scores and component peak errors of predictions against the noise-free truth.

    Parameters
    ----------
    pred, truth : ndarray, shape (N, C, T)
        Predicted and true (``test/evoked_true.npy``) responses to the same N images, in volts (tesla for MEG:
        the ``_uv`` numbers are then 1e6 x the unit).
    times : ndarray, shape (T,)
        Epoch times in seconds.
    ch_names : sequence of str
        The C channel names.
    std : ndarray, shape (C,) | None
        Per-channel scale (e.g. the training std); when given, ``r2_scaled`` is R^2 with every channel divided
        by it (channels weigh equally, e.g. mixed MEG sensor types).
    components : tuple of Component
        The peaks to measure (default :data:`COMPONENTS`).

    Returns
    -------
    dict
        - ``rmse_uv``: root mean square of ``pred - truth`` over all images, channels and times, in µV.
        - ``r2``: ``1 - SSE / SST`` with ``SSE = sum (pred - truth)^2`` and ``SST = sum (truth - mean_i truth)^2``,
          both summed over images, channels and times, ``mean_i truth`` the truth averaged over the images
          for each channel and time: the share of the truth's image-specific variance that the prediction
          gets right, in amplitude (the truth's image-average ERP scores 0; a right shape at a wrong scale
          loses).
        - ``r2_scaled``: the same with channels divided by ``std`` (None without ``std``).
        - ``r``: mean over channels x time of the Pearson r across images between pred and truth (undefined r,
          e.g. constant before the onset, counts as 0; :func:`~vibe_rt.training.metrics.encoding_r`).
        - ``truth_rms_uv``: the truth's rms in µV (the scale of ``rmse_uv``).
        - ``components``: name -> None when none of its channels are present, else ``latency_error_ms`` and
          ``amplitude_error_uv`` (medians over images of the absolute differences between the peak latency
          and the signed peak amplitude of pred and truth, the peak taken per image on the mean over the
          component's present channels within its window), ``truth_peak_uv`` (median over images of the
          truth's |peak amplitude|, for scale), ``channels`` (those used) and ``window_s``.
    """
    pred = np.asarray(pred, np.float64)
    truth = np.asarray(truth, np.float64)
    times = np.asarray(times, np.float64)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must be (N, C, T) of one shape; got {pred.shape} and {truth.shape}")
    if len(ch_names) != pred.shape[1] or times.shape != (pred.shape[2],):
        raise ValueError(f"{len(ch_names)} channel names and {times.shape} times for arrays of shape {pred.shape}")
    err = pred - truth
    dev = truth - truth.mean(0, keepdims=True)

    def r2(inv: np.ndarray | float) -> float:
        sst = float(((dev * inv) ** 2).sum())
        return 1.0 - float(((err * inv) ** 2).sum()) / sst if sst > 0 else float("nan")

    out: dict[str, Any] = {
        "rmse_uv": float(np.sqrt((err**2).mean()) * 1e6),
        "r2": r2(1.0),
        "r2_scaled": None if std is None else r2(1.0 / np.asarray(std, np.float64)[None, :, None]),
        "r": float(encoding_r(pred, truth, axis=0).mean()),
        "truth_rms_uv": float(np.sqrt((truth**2).mean()) * 1e6),
        "components": {},
    }
    names = list(ch_names)
    dt_ms = 1e3 * float(np.median(np.diff(times))) if times.size > 1 else 0.0
    for comp in components:
        chans = [c for c in comp.channels if c in names]
        in_win = (times >= comp.window[0] - 1e-9) & (times <= comp.window[1] + 1e-9)
        if not chans or not in_win.any():
            out["components"][comp.name] = None
            continue
        rows = [names.index(c) for c in chans]
        ip, ap = _peaks(pred[:, rows][:, :, in_win].mean(1), comp.polarity)
        it, at = _peaks(truth[:, rows][:, :, in_win].mean(1), comp.polarity)
        out["components"][comp.name] = {
            "latency_error_ms": float(np.median(np.abs(ip - it)) * dt_ms),
            "amplitude_error_uv": float(np.median(np.abs(ap - at)) * 1e6),
            "truth_peak_uv": float(np.median(np.abs(at)) * 1e6),
            "channels": chans,
            "window_s": list(comp.window),
        }
    return out


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` without fixed points (one random cycle through all n), n >= 2."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    idx = np.empty(n, dtype=np.intp)
    idx[order] = np.roll(order, -1)
    return idx


def shuffled_control(pred: np.ndarray, test_epochs: np.ndarray, *, seed: int = 0, n_splits: int = 100,
                     scale: np.ndarray | None = None) -> float:
    """Encoding r (the headline, :func:`~vibe_rt.training.metrics.encoding_scores`) of the predictions with
    the images deranged: image i gets the prediction for another image (:func:`derangement`).

    What the shared ERP waveform alone earns under the protocol: about 0 for the channel x time r (it is
    r across images), so a model's r above it is image-specific. ``seed`` seeds the derangement and the half
    splits (pass the headline's seed to score on the same splits).
    """
    pred = np.asarray(pred)
    return encoding_scores(pred[derangement(len(pred), seed)], test_epochs, n_splits=n_splits, seed=seed,
                           scale=scale).r


def _bootstrap_r(pred: np.ndarray, target: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over columns of the Pearson r across images, for each row of image ``counts`` (B, N)."""
    a = pred - pred.mean(0)  # centring first keeps the moments below accurate
    b = target - target.mean(0)
    w = counts / counts.sum(1, keepdims=True)
    ma, mb = w @ a, w @ b
    cov = w @ (a * b) - ma * mb
    va = np.clip(w @ (a * a) - ma * ma, 0.0, None)
    vb = np.clip(w @ (b * b) - mb * mb, 0.0, None)
    den = np.sqrt(va * vb)
    ok = den > 1e-12 * np.sqrt((a * a).mean(0) * (b * b).mean(0))  # constant in a resample: r undefined -> 0
    r = np.where(ok, cov / np.where(ok, den, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0).mean(1)


def bootstrap_encoding_r(pred: np.ndarray, target: np.ndarray, n_boot: int, rng: np.random.Generator
                         ) -> np.ndarray:
    """The encoding r (mean over columns of the Pearson r across images) of ``n_boot`` resamples of the images.

    ``pred`` and ``target`` are (N, ...) arrays of the same shape; each resample draws N images with replacement
    from ``rng``. Returns the ``n_boot`` statistics.
    """
    n = len(pred)
    a = np.asarray(pred, np.float64).reshape(n, -1)
    b = np.asarray(target, np.float64).reshape(n, -1)
    if a.shape != b.shape:
        raise ValueError(f"pred {np.shape(pred)} does not match the target {np.shape(target)}")
    chunk = max(1, int(5e6 // a.shape[1]))  # resamples per matrix product (about 40 MB per array)
    return np.concatenate([
        _bootstrap_r(a, b, rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - i)).astype(np.float64))
        for i in range(0, n_boot, chunk)
    ])


def encoding_r_ci(pred: np.ndarray, test_epochs: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI over the test images of the encoding r against the full repetition average.

    The statistic is the mean over channels x time of the Pearson r across images between ``pred`` (N, C, T)
    and the average of all repetitions of ``test_epochs`` (N, R, C, T) (NaN repetitions left out); each of
    ``n_boot`` seeded resamples draws N images with replacement. Note the statistic is r against the full
    average, which is higher than the split-half headline (r against half of the repetitions): the CI gives
    the uncertainty from the choice of test images, to read beside the headline, not an interval around it.
    """
    target = repetition_mean(np.asarray(test_epochs))
    stats = bootstrap_encoding_r(pred, target, n_boot, np.random.default_rng(seed))
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [q, 100 - q])
    return float(lo), float(hi)
