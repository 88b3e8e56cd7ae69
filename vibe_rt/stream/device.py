"""The last step of an emulated device's stream: its values and channels, as its ADC and LSL app deliver them.

:class:`DeviceOutput` takes the rendered EEG samples (output units, everything added) and

- puts them on the device's resolution grid (integer multiples of the step, ``round(x / step) * step``) within
  its range (a larger value saturates at the largest code, as an amplifier does);
- adds the app's other channels (:class:`vibe_rt.devices.profile.ExtraChannels`) before and after them: zeros
  for unconnected inputs, and on a trigger channel the stimulus code of each onset for the profile's pulse
  duration, from the onset's sample (plus the device's transport delay: the amplifier samples its trigger input
  with the EEG) on.

It is the final transformation before the samples are pushed, so whatever is added to the EEG must be added
before it.
"""

from __future__ import annotations

import threading

import numpy as np

from ..devices import DeviceProfile


class DeviceOutput:
    """Quantization, saturation and extra channels of a device (see the module docstring).

    Parameters
    ----------
    device : DeviceProfile
        Its resolution (step) and range, in the output unit, and its extra channels.
    srate : float
        Output rate (Hz), for the trigger pulses.
    """

    def __init__(self, device: DeviceProfile, srate: float) -> None:
        self.step = float(device.resolution)
        self.max_code = int(np.floor(device.range / self.step))
        self.saturated = 0  # samples clipped at the range so far
        self._first = [c for g in device.extras("first") for c in g.labels]
        self._last = [c for g in device.extras("last") for c in g.labels]
        self.n_first, self.n_extra = len(self._first), device.n_extra
        trigger = [g for g in device.extra_channels if g.content == "trigger"]
        self._trigger_label = trigger[0].labels[0] if trigger else None
        self.pulse_samples = max(1, int(round(trigger[0].pulse_s * srate))) if trigger else 0
        self._pulses: list[tuple[int, int, float]] = []  # (first sample, end sample, code)
        self._lock = threading.Lock()

    def codes(self, data: np.ndarray) -> np.ndarray:
        """The integer ADC codes of ``data`` (output units), saturated at the range; counts saturated samples."""
        codes = np.rint(np.asarray(data, dtype=np.float64) / self.step)
        over = np.abs(codes) > self.max_code
        if over.any():
            self.saturated += int(over.sum())
            np.clip(codes, -self.max_code, self.max_code, out=codes)
        return codes

    def apply(self, data: np.ndarray) -> np.ndarray:
        """EEG ``data`` (n, C) on the device's grid, float32 (as the device's LSL app sends it)."""
        return (self.codes(data) * self.step).astype(np.float32)

    def trigger(self, sample: int, code: int) -> None:
        """Record ``code`` on the trigger channel from output sample ``sample`` on (no trigger channel: nothing)."""
        if self.pulse_samples:
            with self._lock:
                self._pulses.append((int(sample), int(sample) + self.pulse_samples, float(code)))

    def frame(self, eeg: np.ndarray, start: int) -> np.ndarray:
        """The samples ``start ..`` of every channel the app sends: extras before, ``eeg`` (from :meth:`apply`),
        extras after."""
        n = eeg.shape[0]
        if not self.n_extra:
            return eeg
        out = np.zeros((n, eeg.shape[1] + self.n_extra), np.float32)
        out[:, self.n_first:self.n_first + eeg.shape[1]] = eeg
        if self._trigger_label is not None:  # a trigger channel (then pulse_samples >= 1)
            column = self._column(self._trigger_label, eeg.shape[1])
            with self._lock:
                self._pulses = [p for p in self._pulses if p[1] > start]  # forget the pulses already pushed
                for first, end, code in self._pulses:
                    lo, hi = max(first, start) - start, min(end, start + n) - start
                    if lo < hi:
                        out[lo:hi, column] = code
        return out

    def _column(self, label: str, n_eeg: int) -> int:
        """The column of the trigger channel ``label`` in a frame with ``n_eeg`` EEG channels."""
        if label in self._first:
            return self._first.index(label)
        return self.n_first + n_eeg + self._last.index(label)


__all__ = ["DeviceOutput"]
