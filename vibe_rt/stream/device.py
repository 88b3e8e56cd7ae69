"""The last step of an emulated device's stream: its values, as its ADC and LSL app deliver them.

:class:`DeviceOutput` takes the rendered samples (output units, everything added) and puts them on the device's
resolution grid (integer multiples of the step, ``round(x / step) * step``) within its range (a larger value
saturates at the largest code, as an amplifier does). It is the final transformation before the samples are
pushed and recorded, so whatever is added to the signal must be added before it.
"""

from __future__ import annotations

import numpy as np

from ..devices import DeviceProfile


class DeviceOutput:
    """Quantization and saturation of a device (see the module docstring).

    Parameters
    ----------
    device : DeviceProfile
        Its resolution (step) and range, in the output unit.
    """

    def __init__(self, device: DeviceProfile) -> None:
        self.step = float(device.resolution)
        self.max_code = int(np.floor(device.range / self.step))
        self.saturated = 0  # samples clipped at the range so far

    @property
    def max_value(self) -> float:
        """The largest magnitude delivered (a whole number of steps)."""
        return self.max_code * self.step

    def codes(self, data: np.ndarray) -> np.ndarray:
        """The integer ADC codes of ``data`` (output units), saturated at the range; counts saturated samples."""
        codes = np.rint(np.asarray(data, dtype=np.float64) / self.step)
        over = np.abs(codes) > self.max_code
        if over.any():
            self.saturated += int(over.sum())
            np.clip(codes, -self.max_code, self.max_code, out=codes)
        return codes

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``data`` (n, C) on the device's grid, float32 (as the device's LSL app sends it)."""
        return (self.codes(data) * self.step).astype(np.float32)


__all__ = ["DeviceOutput"]
