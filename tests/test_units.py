"""Units are honest end to end: a model of a.u. data never streams as microvolts or tesla unless a scale is
declared, and what the stream says it emits is what it emits."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from _stream_helpers import PulsePredictor, small_montage

from vibe_rt import cli
from vibe_rt.app import build_stream
from vibe_rt.checkpoint import default_checkpoint_path
from vibe_rt.errors import ConfigError
from vibe_rt.montage import get_montage
from vibe_rt.stream import OutputSpec, StreamConfig
from vibe_rt.stream.run import si_per_model_unit
from vibe_rt.units import parse_quantity, unit_dimension

pylsl = pytest.importorskip("pylsl")


def test_quantities_and_dimensions():
    assert parse_quantity("2 uV", "--x") == (pytest.approx(2e-6), "V")
    assert parse_quantity("300fT", "--x") == (pytest.approx(3e-13), "T")
    assert unit_dimension("volt") == "V" and unit_dimension("ft") == "T" and unit_dimension("fT/cm") == "T/m"
    for bad in ("abc", "-2 uV", "0 uV", "2 furlongs", "inf V"):
        with pytest.raises(ConfigError, match="--x"):
            parse_quantity(bad, "--x")


def test_scale_per_model_unit():
    eeg, meg = small_montage(), get_montage("things-meg")
    assert si_per_model_unit("V", eeg, None) == 1.0 and si_per_model_unit("T", meg, None) == 1.0
    assert si_per_model_unit("uV", eeg, None) == pytest.approx(1e-6)  # a declared physical unit is converted
    assert si_per_model_unit("a.u.", eeg, "2 uV") == pytest.approx(2e-6)
    with pytest.raises(ConfigError, match="a.u..*--unit-scale"):
        si_per_model_unit("a.u.", eeg, None)
    with pytest.raises(ConfigError, match="is in T, but montage"):
        si_per_model_unit("a.u.", eeg, "5 fT")
    with pytest.raises(ConfigError, match="already emits V"):
        si_per_model_unit("V", eeg, "2 uV")
    with pytest.raises(ConfigError, match="not a unit of montage"):
        si_per_model_unit("T", eeg, None)


@pytest.fixture
def au_checkpoint(tmp_path):
    """The embedded default with its document saying it was trained on a.u. data (THINGS-like)."""
    weights = default_checkpoint_path()
    doc = json.loads(weights.with_suffix(".json").read_text())
    doc["extra"]["unit"] = "a.u."
    (tmp_path / "au.json").write_text(json.dumps(doc))
    shutil.copy(weights, tmp_path / "au.safetensors")
    return tmp_path / "au"


def test_an_au_checkpoint_cannot_stream_as_microvolts(au_checkpoint, capsys):
    try:
        rc = cli.main(["stream", "--model", str(au_checkpoint), "--duration", "1"])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "a.u." in err and "--unit-scale" in err and "cannot stream as V" in err


def test_a_declared_scale_is_what_the_stream_emits(source_id):
    """A pulse of 3 a.u. with --unit-scale '2 uV' reaches the inlet as 6 microvolts, labelled microvolts."""
    pred = PulsePredictor(amplitude=3.0)
    pred.unit = "a.u."
    cfg = StreamConfig(source="none", unit_scale="2 uV", noise_scale=0, srate=250, lookahead=0.1,
                       source_id=source_id)
    pipe = build_stream(cfg, predictor=pred)
    assert pipe.output == OutputSpec(srate=250.0, lookahead=0.1, source_id=source_id)
    with pipe:
        inlet = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", source_id, timeout=5)[0])
        info = inlet.info(5)
        inlet.open_stream(5)
        pipe.submit_onset(np.zeros((8, 8, 3), np.uint8), pylsl.local_clock() + 0.2)
        data, t_end = [], time.monotonic() + 1.2
        while time.monotonic() < t_end:
            d, _ = inlet.pull_chunk(timeout=0.05)
            data.extend(d)
    x = np.array(data)
    assert info.desc().child("channels").child("channel").child_value("unit") == "microvolts"
    assert info.desc().child("vibe_rt").child_value("model_unit_in_si") == "2e-06 V"
    assert np.max(x[:, 0]) == pytest.approx(6.0, rel=0.02)  # channel 0 of the pulse has gain 1
    with pytest.raises(ConfigError, match="a.u."):
        build_stream(StreamConfig(source="none", srate=250), predictor=pred)


def test_an_au_model_is_not_compared_as_volts_either(au_checkpoint, tmp_path, capsys):
    """The comparator predicts from the model in SI, as the live data: the same rule as the stream."""
    from vibe_rt.compare.run import CompareConfig, build_synth

    cfg = CompareConfig(live_file=tmp_path / "x.fif", model=au_checkpoint, backend="torch")
    with pytest.raises(ConfigError, match="a.u..*--unit-scale"):
        build_synth(cfg)
    synth = build_synth(CompareConfig(live_file=tmp_path / "x.fif", model=au_checkpoint, backend="torch",
                                      unit_scale="2 uV"))
    assert synth.predictor.model_scale == pytest.approx(2e-6)
