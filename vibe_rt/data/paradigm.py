"""Presentation paradigms: continuous image sequences, their epochs, and the expected epoch of each image.

Real THINGS recordings are continuous: THINGS-EEG2 shows images at 5 Hz (100 ms on, 100 ms blank; sequences
of 20 images), so every epoch holds the tail of the previous images and the start of the next ones. The
simulator reproduces this: each split's trials (image x repetition) are shuffled and cut into sequences, so
every repetition of an image sits at a random position with random neighbours; each sequence is one stretch
of background activity with every trial's single-trial response added at its onset, and each trial's epoch
is cut around its onset and baseline-corrected (``baseline=(None, 0)``).

Timing of the presets (onsets fall on the sample grid: intervals are rounded to whole samples):

============  ======  ========================  ========  ==========  ===========================
paradigm      image   blank (onset to onset)    sequence  image size  source
============  ======  ========================  ========  ==========  ===========================
things-eeg2   100 ms  100 ms (SOA 200 ms, 5 Hz)  20        7 deg       Gifford et al. 2022
things-meg    500 ms  1000 +- 200 ms (uniform)   226       10 deg      Hebart et al. 2023
isolated      -       none                       1         7 deg       (no neighbours)
============  ======  ========================  ========  ==========  ===========================

THINGS-EEG2: ``p.img_duration = .1``, ``p.SOA = .2``, ``p.img_per_sequence = 20``, 750 ms of fixation before
a sequence and after its last image, images of 7 x 7 deg (the published experiment code; Gifford et al.
2022). THINGS-MEG: 500 ms images, onset-to-onset 1.5 +- 0.2 s (1.28-1.70 s in the events of ds004212,
sub-BIGMEG1 run 1), 226 trials per run (Hebart et al. 2023). Image offsets evoke no response in this model
(not modelled), and the target images of the tasks (THINGS-EEG2: Buzz Lightyear; THINGS-MEG: catch images)
are not simulated.

**Expected epoch** (``test/evoked_true.npy``): the expectation of an image's epoch over everything random in
the paradigm except the background: its own response (expected over trial-to-trial gain and latency jitter,
:meth:`EvokedModel.expected`), plus, at every neighbour offset, the probability that a neighbour is there
times the expected response of a random other trial of the split (its interval distribution convolved in
for jittered paradigms), baseline-corrected like the epochs. That is the best any model of these epochs can
predict from the image alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..montage import Montage
    from .noise import BackgroundNoise
    from .simulate import EvokedModel


@dataclass(frozen=True)
class Paradigm:
    """Timing of a presentation paradigm.

    Parameters
    ----------
    name : str
        Preset name or a user label.
    on_s : float
        Image duration in seconds (onset to offset).
    off_s : float
        Mean blank between an image's offset and the next onset, seconds.
    off_jitter_s : float
        Half-width of the uniform jitter of the blank (THINGS-MEG: 0.2 s).
    sequence_length : int
        Images per continuous sequence (1 = every image alone).
    lead_s, tail_s : float
        Blank before the first and after the last image of a sequence.
    image_deg : float
        Visual angle of the image side (degrees); sets the spatial frequencies of the early visual model.
    """

    name: str
    on_s: float
    off_s: float
    off_jitter_s: float = 0.0
    sequence_length: int = 1
    lead_s: float = 0.75
    tail_s: float = 0.75
    image_deg: float = 7.0

    def __post_init__(self) -> None:
        values = (self.on_s, self.off_s, self.off_jitter_s, self.lead_s, self.tail_s, self.image_deg)
        if not all(math.isfinite(v) and v >= 0 for v in values) or self.image_deg <= 0:
            raise ConfigError(f"paradigm {self.name!r}: durations must be finite and >= 0 and image_deg > 0")
        if self.off_jitter_s > self.off_s:
            raise ConfigError(f"paradigm {self.name!r}: off_jitter_s ({self.off_jitter_s}) exceeds off_s "
                              f"({self.off_s})")
        if int(self.sequence_length) != self.sequence_length or self.sequence_length < 1:
            raise ConfigError(f"paradigm {self.name!r}: sequence_length must be an integer >= 1")

    def intervals(self, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
        """Onset-to-onset intervals in samples and their probabilities (uniform over whole samples)."""
        lo = round((self.on_s + self.off_s - self.off_jitter_s) * sfreq)
        hi = round((self.on_s + self.off_s + self.off_jitter_s) * sfreq)
        if lo < 1:
            raise ConfigError(f"paradigm {self.name!r}: onsets closer than one sample at {sfreq:g} Hz")
        support = np.arange(lo, hi + 1)
        return support, np.full(len(support), 1.0 / len(support))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``simulation.json``)."""
        return asdict(self)


PARADIGMS = {
    "things-eeg2": Paradigm("things-eeg2", 0.1, 0.1, 0.0, 20, 0.75, 0.75, 7.0),
    "things-meg": Paradigm("things-meg", 0.5, 1.0, 0.2, 226, 2.85, 1.0, 10.0),
    "isolated": Paradigm("isolated", 0.5, 0.0, 0.0, 1, 0.0, 0.0, 7.0),
}


def get_paradigm(paradigm: str | dict | Paradigm | None, montage_name: str = "things-eeg2") -> Paradigm:
    """A paradigm from a preset name, a dict of :class:`Paradigm` fields, or None (the montage's dataset:
    things-meg for the things-meg montage, else things-eeg2)."""
    if isinstance(paradigm, Paradigm):
        return paradigm
    if paradigm is None:
        return PARADIGMS["things-meg" if montage_name == "things-meg" else "things-eeg2"]
    if isinstance(paradigm, str):
        if paradigm not in PARADIGMS:
            raise ConfigError(f"unknown paradigm {paradigm!r}; use one of {', '.join(PARADIGMS)}")
        return PARADIGMS[paradigm]
    if isinstance(paradigm, dict):
        fields = set(Paradigm.__dataclass_fields__)
        unknown = sorted(set(paradigm) - fields)
        if unknown:
            raise ConfigError(f"unknown paradigm fields {unknown}; valid: {sorted(fields)}")
        return Paradigm(**{"name": "custom", **paradigm})
    raise ConfigError(f"a paradigm is a preset name ({', '.join(PARADIGMS)}), a dict or a Paradigm")


def sequence_lengths(n_trials: int, paradigm: Paradigm) -> np.ndarray:
    """Lengths of the sequences that ``n_trials`` shuffled trials are cut into (as equal as possible)."""
    n_seq = -(-n_trials // int(paradigm.sequence_length))
    return np.array([len(c) for c in np.array_split(np.arange(n_trials), n_seq)])


def baseline_mask(times: np.ndarray) -> np.ndarray:
    """Samples of the baseline window, ``tmin..0`` s inclusive (MNE's ``baseline=(None, 0)``, as THINGS-EEG2)."""
    return (times <= 1e-9) if times[0] < 0 else np.zeros(len(times), bool)


def _window(montage: Montage) -> tuple[int, int]:
    """First epoch sample relative to onset, and epoch length."""
    return round(montage.tmin * montage.sfreq), montage.n_times


def simulate_epochs(model: EvokedModel, noise: BackgroundNoise, paradigm: Paradigm, amplitude: np.ndarray,
                    latency: np.ndarray, reps: int, out: np.ndarray, rng: np.random.Generator,
                    variability: float, block: int = 512) -> None:
    """Fill ``out`` (n_images, reps, C, T) with the epochs of a continuous presentation of one split.

    Parameters
    ----------
    model : EvokedModel
    noise : BackgroundNoise
        Continuous background; every sequence is one stretch of it.
    paradigm : Paradigm
    amplitude, latency : ndarray, shape (n_images, n_sources)
        Drives of the images (:meth:`EvokedModel.drives`).
    reps : int
        Repetitions of every image.
    out : ndarray, shape (n_images, reps, C, T)
        Written in place (a memory map for big splits).
    rng : numpy.random.Generator
        Trial order, intervals and trial-to-trial variability.
    variability : float
        Scales trial-to-trial gain and latency jitter.
    block : int
        About how many trials are simulated at once (memory).
    """
    m = model.montage
    i0, n_t = _window(m)
    resp_len = model.response_samples
    intervals, prob = paradigm.intervals(m.sfreq)
    lead = max(round(paradigm.lead_s * m.sfreq), -i0)
    tail = round(paradigm.tail_s * m.sfreq)
    base = baseline_mask(m.times)
    order = rng.permutation(amplitude.shape[0] * reps)
    bounds = np.cumsum(np.r_[0, sequence_lengths(len(order), paradigm)])
    seqs_per_block = max(1, block // int(paradigm.sequence_length))
    for b0 in range(0, len(bounds) - 1, seqs_per_block):
        b1 = min(b0 + seqs_per_block, len(bounds) - 1)
        idx = order[bounds[b0]: bounds[b1]]
        img, rep = np.divmod(idx, reps)
        resp = model.trials(amplitude[img], latency[img], rng, variability, times=model.response_times)
        onsets, lengths = [], []
        for s in range(b0, b1):
            n = bounds[s + 1] - bounds[s]
            o = lead + np.r_[0, np.cumsum(rng.choice(intervals, size=n - 1, p=prob))].astype(int)
            onsets.append(o)
            lengths.append(int(o[-1]) + max(i0 + n_t, 1) + tail)
        background = noise.generate(int(sum(lengths))).T  # (C, total), one continuous stretch
        start, j = 0, 0
        for o, length in zip(onsets, lengths):
            sig = background[:, start: start + length]
            for k in range(len(o)):
                stop = min(int(o[k]) + resp_len, length)
                sig[:, o[k]: stop] += resp[j + k, :, : stop - o[k]]
            for k in range(len(o)):
                ep = sig[:, o[k] + i0: o[k] + i0 + n_t]
                out[img[j + k], rep[j + k]] = ep - ep[:, base].mean(-1, keepdims=True) if base.any() else ep
            start += length
            j += len(o)


def neighbour_kernel(paradigm: Paradigm, n_trials: int, sfreq: float, max_offset: int) -> np.ndarray:
    """Expected number of neighbour onsets at each offset ``-max_offset..max_offset`` samples (0 excluded).

    ``h[m + max_offset]`` is the probability that some other trial of the same sequence has its onset ``m``
    samples after (m > 0) or before (m < 0) a random trial's onset: sum over neighbour ranks k of
    P(a k-th neighbour exists) (from the sequence lengths) times the k-fold interval distribution.
    """
    h = np.zeros(2 * max_offset + 1)
    lengths = sequence_lengths(n_trials, paradigm)
    support, prob = paradigm.intervals(sfreq)
    pmf: np.ndarray = np.zeros(max_offset + 1)
    pmf[0] = 1.0  # k = 0: offset 0
    step = np.zeros(int(support[-1]) + 1)
    step[support] = prob
    for k in range(1, int(lengths.max())):
        pmf = np.convolve(pmf, step)[: max_offset + 1]
        if not pmf.any():
            break
        p_k = np.maximum(lengths - k, 0).sum() / n_trials
        h[max_offset + 1:] += p_k * pmf[1:]
        h[: max_offset][::-1] += p_k * pmf[1:]
    return h


def expected_epochs(model: EvokedModel, paradigm: Paradigm, amplitude: np.ndarray, latency: np.ndarray,
                    reps: int, variability: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected epoch of every image under ``paradigm``, and its expected isolated response.

    Parameters
    ----------
    model : EvokedModel
    paradigm : Paradigm
    amplitude, latency : ndarray, shape (n_images, n_sources)
        Drives of all images of the split (the neighbours are drawn from them).
    reps : int
        Repetitions per image in the split.
    variability : float
        Trial-to-trial variability the epochs were simulated with.

    Returns
    -------
    expected, isolated : ndarray, shape (n_images, C, T), float32
        Baseline-corrected like the epochs. ``isolated`` is the image's own expected response alone.
    """
    m = model.montage
    i0, n_t = _window(m)
    resp_len = model.response_samples
    own = model.expected(amplitude, latency, variability, times=model.response_times)  # (n, C, R)
    n_img = own.shape[0]
    n_trials = n_img * reps
    r = np.arange(resp_len)
    n = i0 + np.arange(n_t)
    shift = (r[None, :] == n[:, None]).astype(float)  # (T, R): epoch sample n <- response sample n
    max_off = resp_len - i0 + n_t
    h = neighbour_kernel(paradigm, n_trials, m.sfreq, max_off)
    lag = n[:, None] - r[None, :]  # neighbour onset offset that puts response sample r at epoch sample n
    overlap = np.where(np.abs(lag) <= max_off, h[np.clip(lag + max_off, 0, 2 * max_off)], 0.0)  # (T, R)
    others = (reps * own.sum(0, keepdims=True) - own) / max(n_trials - 1, 1)  # mean response of the others
    isolated = np.einsum("icr,tr->ict", own, shift)
    expected = isolated + np.einsum("icr,tr->ict", others, overlap)
    base = baseline_mask(m.times)
    if base.any():
        isolated -= isolated[..., base].mean(-1, keepdims=True)
        expected -= expected[..., base].mean(-1, keepdims=True)
    return expected.astype(np.float32), isolated.astype(np.float32)
