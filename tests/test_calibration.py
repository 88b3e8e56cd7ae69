"""vibe_rt.calibration: the typed calibration profile (JSON both ways, validation), its resolution for the streamed
channels, the latency shift, and the module's place below the streamer and the comparator."""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _stream_helpers import PulsePredictor, small_montage
from scipy import ndimage

from vibe_rt.calibration import (
    AcceptsLatentAdapter,
    CalibrationProfile,
    LatentAdapter,
    ResolvedCalibration,
    shift_signal,
)
from vibe_rt.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1] / "vibe_rt"


def _profile(**changes) -> CalibrationProfile:
    base = dict(name="lab", montage="test-occipital", sfreq=100.0, channels=("O1", "Oz", "O2", "Pz"),
                gain=(0.5, 2.0, 1.0, -1.5), latency_s=0.02)
    return CalibrationProfile(**{**base, **changes})


def test_shift_signal_is_scipys_cubic_spline_shift():
    """The numpy shift gives scipy.ndimage.shift(order=3, mode="nearest")'s numbers: fractional, negative, beyond
    the window, one shift per channel; float32 stays float32, a zero shift is an exact copy."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((3, 5, 100)), axis=-1)
    scale = np.abs(x).max()
    for shift in (0.3, 2.4, -3.7, 1.0, 17.25, 99.5, -150.0):
        ref = ndimage.shift(x, [0, 0, shift], order=3, mode="nearest")
        assert np.max(np.abs(shift_signal(x, shift) - ref)) < 1e-8 * scale, shift
    per = np.array([0.0, 0.5, -2.25, 7.0, 30.1])
    ref = np.stack([[ndimage.shift(row, s, order=3, mode="nearest") for row, s in zip(batch, per)] for batch in x])
    got = shift_signal(x, per)
    assert np.max(np.abs(got - ref)) < 1e-8 * scale
    assert np.array_equal(got[:, 0], x[:, 0])  # the channel shifted by 0
    y32 = shift_signal(x.astype(np.float32), 2.4)
    assert y32.dtype == np.float32 and np.allclose(y32, shift_signal(x, 2.4), atol=1e-5 * scale)
    same = shift_signal(x, 0.0)
    assert same is not x and np.array_equal(same, x)
    assert shift_signal(np.arange(10), 1.0).dtype == np.float64


def test_profile_json_round_trip_and_versions(tmp_path):
    prof = _profile(latency_s=(0.01, 0.02, -0.03, 0.0), channel_map={"O1": "EEG 1", "Pz": "interpolated:spline"},
                    uncertainty={"method": "block bootstrap over events", "gain_se": [0.01, 0.02, 0.0, 0.03],
                                 "latency_se_s": [0.001, 0.0, 0.002, 0.001]}, model_hash="0123456789abcdef",
                    metrics={"before": {"erp_r": 0.5, "noise_ceiling": float("nan")}}, n_events=40, n_keys=10,
                    created="2026-01-01T00:00:00+00:00")
    path = prof.save(tmp_path / "sub" / "lab.json")
    data = json.loads(path.read_text())
    assert data["format"] == "vibe-rt-calibration" and data["version"] == 1 and data["adapter"] is None
    assert data["channels"] == ["O1", "Oz", "O2", "Pz"] and "ch_names" not in data
    assert data["metrics_before"]["erp_r"] == 0.5 and data["latency_s"] == [0.01, 0.02, -0.03, 0.0]
    back = CalibrationProfile.load(path)
    for f in ("name", "montage", "sfreq", "channels", "gain", "latency_s", "channel_map", "created", "n_events",
              "n_keys", "uncertainty", "model_hash"):
        assert getattr(back, f) == getattr(prof, f), f
    assert np.isnan(back.metrics["before"]["noise_ceiling"])
    # with an adapter: version 2, the adapter's numbers survive
    adapter = LatentAdapter(np.full((2, 3), 1.5), np.zeros((2, 3)), "0123456789abcdef", {"penalty": 0.1})
    with_adapter = CalibrationProfile.from_dict(dataclasses.replace(prof, adapter=adapter).to_dict())
    assert with_adapter.version == 2 and with_adapter.adapter.latent_shape == (2, 3)
    assert np.array_equal(with_adapter.adapter.scale, adapter.scale) and with_adapter.adapter.info == {"penalty": 0.1}
    # a profile of an earlier vibe-rt: channels named "ch_names", no name, unknown keys
    old = {"format": "vibe-rt-calibration", "version": 1, "ch_names": ["Oz"], "gain": [2], "latency_s": 0,
           "shift_samples": [0.0]}
    loaded = CalibrationProfile.from_dict(old)
    assert loaded.channels == ("Oz",) and loaded.gain == (2.0,) and loaded.latency_s == 0.0
    with pytest.raises(ConfigError, match=r"x.json: calibration format version 3 is newer .* upgrade vibe-rt"):
        CalibrationProfile.from_dict({**old, "version": 3}, "x.json")
    with pytest.raises(ConfigError, match="version must be 1..2, got 'two'"):
        CalibrationProfile.from_dict({**old, "version": "two"})
    with pytest.raises(ConfigError, match="lacks 'gain'"):
        CalibrationProfile.from_dict({k: v for k, v in old.items() if k != "gain"})
    with pytest.raises(ConfigError, match="malformed adapter"):
        CalibrationProfile.from_dict({**old, "adapter": {**adapter.to_dict(), "scale": "big"}})
    (tmp_path / "broken.json").write_text('{"format": ')
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        CalibrationProfile.load(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="is a folder, expected a file"):
        prof.save(tmp_path / "sub")


@pytest.mark.parametrize("changes, fragment", [
    ({"channels": ()}, "channels must be a non-empty list"),
    ({"channels": ("O1", "oz", "OZ", "Pz")}, "channels ['OZ', 'oz'] appear more than once"),
    ({"channels": ("O1", "", "O2", "Pz")}, "channels must be a non-empty list of channel labels"),
    ({"gain": (0.5, 2.0, 1.0, 2000.0)}, "gain 2000 of channel Pz is outside the plausible range"),
    ({"gain": (0.5, 2.0, -1e-4, 1.0)}, "gain -0.0001 of channel O2 is outside"),
    ({"gain": (0.5, 2.0, True, 1.0)}, "gain[2] must be a number, got True"),
    ({"gain": (0.5, float("nan"), 1.0, 1.0)}, "gain[1] is nan, not a finite number"),
    ({"gain": np.ones((2, 2))}, "gain must be a list of numbers, one per channel"),
    ({"latency_s": -1.5}, "latency_s -1.5 s is outside +-1 s"),
    ({"latency_s": (0.0, 0.0, 2.0, 0.0)}, "latency_s 2 s is outside"),
    ({"latency_s": "0.02"}, "latency_s must be a number, got '0.02'"),
    ({"latency_s": (0.01,)}, "latency_s has 1 values for 4 channels"),
    ({"sfreq": 0}, "sfreq must be a positive number of Hz"),
    ({"sfreq": float("inf")}, "sfreq is inf, not a finite number"),
    ({"n_events": -1}, "n_events must be a count >= 0"),
    ({"channel_map": {"Oz": 3}}, "channel_map must map model channel labels to device labels"),
    ({"name": None}, "name must be a string"),
    ({"adapter": {"kind": "latent-affine"}}, "adapter must be a LatentAdapter or None"),
    ({"uncertainty": {"gain_se": [0.1, 0.1]}}, "uncertainty.gain_se has 2 values for 4 channels"),
    ({"uncertainty": {"latency_se_s": -0.001}}, "uncertainty.latency_se_s must be >= 0"),
    ({"uncertainty": {"gain_se": [0.1, float("nan"), 0.1, 0.1]}}, "uncertainty.gain_se[1] is nan"),
    ({"uncertainty": "small"}, "uncertainty must be a mapping"),
    ({"model_hash": 5}, "model_hash must be a string"),
])
def test_invalid_values_are_refused(changes, fragment):
    with pytest.raises(ConfigError) as err:
        _profile(**changes)
    assert str(err.value).startswith("calibration profile: ") and fragment in str(err.value)
    if {"adapter", "name"} & set(changes):
        return  # from JSON, an adapter is a dict (read by LatentAdapter.from_dict) and a null name reads as ""
    with pytest.raises(ConfigError) as err:  # from JSON, the message names the file
        CalibrationProfile.from_dict({**_profile().to_dict(), **changes}, "lab.json")
    assert str(err.value).startswith("lab.json: ") and fragment in str(err.value)


def test_limits_themselves_are_valid():
    prof = _profile(gain=(1e-3, -1e3, 1.0, 1.0), latency_s=(1.0, -1.0, 0.0, 0.5), n_events=0)
    assert prof.gain == (1e-3, -1e3, 1.0, 1.0) and prof.latency_s == (1.0, -1.0, 0.0, 0.5)
    assert isinstance(_profile(gain=np.array([1, 2, 3, 4])).gain[0], float)  # numpy in, floats stored


def test_resolve_for_the_streamed_channels():
    """Labels match ignoring case, in montage order; channels the profile lacks keep gain 1 and no shift; the
    output labels are the device's from the channel map except interpolated ones; apply = gain * delayed x."""
    m = small_montage(6)  # O1, Oz, O2, Pz, P3, P4
    prof = _profile(channels=("pz", "OZ", "o1", "FCz"), gain=(2.0, 0.5, 1.5, 3.0), latency_s=(0.03, 0.0, -0.01, 0.0),
                    channel_map={"Oz": "EEG 2", "o1": "interpolated:spline", "PZ": "eeg-pz"})
    res = prof.resolve(m)
    assert isinstance(res, ResolvedCalibration) and res.montage is m
    assert res.gain.tolist() == [1.5, 0.5, 1.0, 2.0, 1.0, 1.0]
    assert res.latency_s == pytest.approx([-0.01, 0.0, 0.0, 0.03, 0.0, 0.0])
    assert res.missing == ("O2", "P3", "P4")
    assert res.labels == ("O1", "EEG 2", "O2", "eeg-pz", "P3", "P4")
    assert res.output_montage.ch_names == res.labels and res.output_montage.positions is m.positions
    x = PulsePredictor(montage=m).epoch[None].repeat(2, axis=0)
    y = res.apply_gain(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.allclose(y, x * res.gain[:, None], rtol=1e-6, atol=1e-12)
    desc = res.describe()
    assert desc["name"] == "lab" and desc["latency_s"].split(",")[3] == "0.03" and desc["adapter"] == "none"
    assert desc["gain"].split(",")[:4] == ["1.5", "0.5", "1", "2"] and desc["channels"].startswith("O1,Oz")
    assert "'lab': latency -10.0..+30.0 ms (an onset delay), gain 0.5..2" in res.summary()
    with pytest.raises(ConfigError, match="epochs have 4 channels, montage 'test-occipital' has 6"):
        res.apply_gain(x[:, :4])
    clash = dataclasses.replace(prof, channel_map={"Oz": "same", "O1": "same"}).resolve(m)
    assert clash.labels == tuple(m.ch_names) and clash.output_montage is m
    with pytest.raises(ConfigError, match="none of the streamed channels"):
        _profile(channels=("MLC11",), gain=(1.0,), latency_s=0.0).resolve(m)


def test_the_adapter_goes_only_to_a_predictor_that_accepts_it():
    from vibe_rt.runtime.predictor import Predictor

    assert issubclass(Predictor, AcceptsLatentAdapter)
    pulse = PulsePredictor()
    assert not isinstance(pulse, AcceptsLatentAdapter)
    _profile().resolve(pulse.montage).install_adapter(pulse)  # no adapter: nothing to install
    adapter = LatentAdapter(np.ones((2, 3)), np.zeros((2, 3)), "0123456789abcdef")
    with pytest.raises(ConfigError, match="only a ViBE predictor can apply"):
        _profile(adapter=adapter).resolve(pulse.montage).install_adapter(pulse)


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative ones resolved inside vibe_rt)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            out.add(".".join(p for p in (base, node.module) if p))
    return out


def test_calibration_sits_below_the_streamer_and_the_comparator():
    """calibration.py needs only numpy, the standard library and vibe_rt's errors, logger and montage; the streamer
    reads profiles through it and imports nothing of the comparator."""
    allowed = {"numpy", "vibe_rt.errors", "vibe_rt._logs", "vibe_rt.montage"}
    used = _imports(PACKAGE / "calibration.py")
    assert {m for m in used if m.split(".")[0] not in sys.stdlib_module_names} - {"__future__"} <= allowed, used
    for path in sorted((PACKAGE / "stream").glob("*.py")):
        assert not {m for m in _imports(path) if m.startswith("vibe_rt.compare")}, path.name
