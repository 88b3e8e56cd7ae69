"""User errors of the ``vibe-rt`` command: one line ``vibe-rt: error: ...`` naming the problem and the fix, exit
code 2, never a traceback. Runs ``vibe_rt.cli.main`` in-process; no case loads a model (inputs that depend on the
model's channels are checked against the checkpoint document before the model is built)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vibe_rt import __version__, cli
from vibe_rt.checkpoint import default_checkpoint_path

TMP = "{tmp}"  # replaced by the test's tmp_path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Bad inputs: corrupt and truncated checkpoints and ONNX graph, an empty folder, foreign calibration."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    weights = default_checkpoint_path()
    shutil.copy(weights.with_suffix(".json"), tmp_path / "truncated.json")
    (tmp_path / "truncated.safetensors").write_bytes(weights.read_bytes()[:100_000])
    (tmp_path / "foreign-calibration.json").write_text(json.dumps(
        {"format": "vibe-rt-calibration", "version": 1, "name": "meg", "montage": "things-meg",
         "channels": ["MLC11", "MLC12"], "gain": [1.0, 2.0], "latency_s": 0.01}))
    (tmp_path / "not-a-calibration.json").write_text(json.dumps({"gain": [1.0]}))
    eeg = json.loads(weights.with_suffix(".json").read_text())["montage"]["ch_names"]
    adapter = {"kind": "latent-affine", "latent_shape": [1, 2], "model_hash": "0123456789abcdef",
               "scale": [[1.0, 1.0]], "shift": [[0.0, 0.0]]}
    for name, bad in (("other-model", adapter), ("ragged", dict(adapter, scale=[[1.0], [1.0, 2.0]]))):
        (tmp_path / f"adapter-{name}.json").write_text(json.dumps(
            {"format": "vibe-rt-calibration", "version": 2, "name": name, "montage": "things-eeg2",
             "channels": eeg, "gain": [1.0] * len(eeg), "latency_s": 0.0, "adapter": bad}))
    (tmp_path / "truncated.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    valid = {"format": "vibe-rt-calibration", "version": 1, "name": "bad", "montage": "things-eeg2",
             "channels": eeg, "gain": [1.0] * len(eeg), "latency_s": 0.01}
    for name, bad in (("gain-nan", {"gain": [float("nan")] + [1.0] * (len(eeg) - 1)}),
                      ("gain-inf", {"gain": [float("inf")] * len(eeg)}), ("gain-zero", {"gain": [0.0] * len(eeg)}),
                      ("gain-text", {"gain": "abc"}), ("gain-words", {"gain": ["abc"] * len(eeg)}),
                      ("gain-short", {"gain": [1.0, 1.0, 1.0]}),
                      ("latency-nan", {"latency_s": float("nan")}), ("latency-huge", {"latency_s": 1e9}),
                      ("latency-short", {"latency_s": [0.01, 0.02]})):
        (tmp_path / f"calibration-{name}.json").write_text(json.dumps({**valid, **bad}))  # NaN/Infinity as JSON has it
    _recordings(tmp_path, eeg)
    return tmp_path


def _recordings(folder: Path, channels: list[str]) -> None:
    """Recordings a comparison cannot use: markers that name images absent from here, or only event codes (a
    BrainVision file written by vibe-rt's own stream recorder, as `vibe-rt stream --record` does)."""
    import mne
    import numpy as np

    from vibe_rt.stream.record import BrainVisionWriter

    sfreq, n = 250.0, 1500
    data = 1e-6 * np.random.default_rng(0).standard_normal((len(channels), n))
    raw = mne.io.RawArray(data, mne.create_info(channels, sfreq, "eeg"), verbose="error")
    names = [f"img{i:03d}.png" for i in range(3)]
    raw.set_annotations(mne.Annotations([1.0, 2.0, 3.0], [0.0] * 3,
                                        [json.dumps({"image": name, "source": "images"}) for name in names]))
    raw.save(folder / "images_raw.fif", verbose="error")
    writer = BrainVisionWriter(folder / "streamed.vhdr", channels, ["V"] * len(channels), sfreq, t0=100.0)
    writer.write(data.T.astype(np.float32))
    for onset in (101.0, 102.0, 103.0):
        writer.marker(onset, "S  1")
    writer.close()
    (folder / "late.csv").write_text("onset,image\n50.0,img000.png\n60.0,img001.png\n")


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse errors, --help and --version exit
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


CASES = [
    # (id, argv, message fragment)
    ("srate-zero", ["stream", "--srate", "0", "--duration", "1"], "--srate must be a number > 0"),
    ("srate-negative", ["stream", "--srate", "-250", "--duration", "1"], "--srate must be a number > 0"),
    ("srate-not-rational", ["stream", "--srate", "333.3333", "--duration", "1"], "cannot resample"),
    ("lookahead-negative", ["stream", "--lookahead", "-0.1", "--duration", "1"], "--lookahead must be a number >= 0"),
    ("max-batch-zero", ["stream", "--max-batch", "0", "--duration", "1"], "--max-batch must be an integer >= 1"),
    ("video-missing", ["stream", "--video", "{tmp}/nope.mp4"], "does not exist; give an existing file to --video"),
    ("images-empty", ["stream", "--images", "{tmp}/empty"], "give another folder to --images"),
    ("images-missing", ["stream", "--images", "{tmp}/nope"], "does not exist; give a folder to --images"),
    ("model-missing", ["stream", "--model", "{tmp}/nope", "--duration", "1"], "not found"),
    ("model-corrupt", ["stream", "--model", "{tmp}/corrupt", "--duration", "1"], "not valid JSON"),
    ("model-truncated", ["stream", "--model", "{tmp}/truncated.safetensors", "--duration", "1"], "truncated"),
    ("montage-unknown", ["stream", "--montage", "things-eeg3", "--duration", "1"], "neither a preset montage"),
    ("montage-wrong-channels", ["stream", "--montage", "Oz,XYZ", "--duration", "1"], "not produced by the model"),
    ("montage-duplicates", ["stream", "--montage", "Oz,Oz", "--duration", "1"], "more than once"),
    ("calibration-foreign", ["stream", "--calibration", "{tmp}/foreign-calibration.json", "--duration", "1"],
     "none of the streamed channels"),
    ("calibration-adapter-other-model", ["stream", "--calibration", "{tmp}/adapter-other-model.json",
                                         "--duration", "1"], "fitted for model 0123456789abcdef"),
    ("calibration-adapter-malformed", ["stream", "--calibration", "{tmp}/adapter-ragged.json", "--duration", "1"],
     "malformed adapter"),
    ("calibration-missing", ["stream", "--calibration", "{tmp}/nope.json", "--duration", "1"], "does not exist"),
    ("calibration-not-a-profile", ["stream", "--calibration", "{tmp}/not-a-calibration.json", "--duration", "1"],
     "not a vibe-rt calibration profile"),
    # invalid values are refused when the profile loads, before the model does (they used to stream: NaN dropped
    # every event, a latency of 1e9 s streamed "ok" events whose response never came, a text gain a traceback)
    ("calibration-gain-nan", ["stream", "--calibration", "{tmp}/calibration-gain-nan.json", "--duration", "1"],
     "calibration-gain-nan.json: gain[0] is nan, not a finite number; refit the profile"),
    ("calibration-gain-inf", ["stream", "--calibration", "{tmp}/calibration-gain-inf.json", "--duration", "1"],
     "gain[0] is inf, not a finite number"),
    ("calibration-gain-zero", ["stream", "--calibration", "{tmp}/calibration-gain-zero.json", "--duration", "1"],
     "gain 0 of channel Pz is outside the plausible range (|gain| 0.001 to 1000)"),
    ("calibration-gain-text", ["stream", "--calibration", "{tmp}/calibration-gain-text.json", "--duration", "1"],
     "gain must be a list of numbers, one per channel, got 'abc'"),
    ("calibration-gain-words", ["stream", "--calibration", "{tmp}/calibration-gain-words.json", "--duration", "1"],
     "gain[0] must be a number, got 'abc'"),
    ("calibration-gain-short", ["stream", "--calibration", "{tmp}/calibration-gain-short.json", "--duration", "1"],
     "gain has 3 values for 17 channels; give one per channel"),
    ("calibration-latency-nan", ["stream", "--calibration", "{tmp}/calibration-latency-nan.json",
                                 "--duration", "1"], "latency_s is nan, not a finite number"),
    ("calibration-latency-huge", ["stream", "--calibration", "{tmp}/calibration-latency-huge.json",
                                  "--duration", "1"], "latency_s 1e+09 s is outside +-1 s"),
    ("calibration-latency-short", ["stream", "--calibration", "{tmp}/calibration-latency-short.json",
                                   "--duration", "1"], "latency_s has 2 values for 17 channels"),
    ("calibration-folder", ["stream", "--calibration", "{tmp}/empty", "--duration", "1"],
     "calibration profile {tmp}/empty is a folder, expected a file"),
    ("size-malformed", ["stream", "--camera", "0", "--size", "big"], "--size must look like"),
    ("engines-model-truncated", ["engines", "verify", "--model", "{tmp}/truncated"], "truncated"),
    ("compare-no-input", ["compare", "--synth", "vibe-rt"], "give --live"),
    ("compare-montage-unknown", ["compare", "--live", "x", "--synth", "vibe-rt", "--montage", "nope"],
     "unknown montage"),
    ("compare-live-file-missing", ["compare", "--live-file", "{tmp}/nope.xdf", "--synth", "vibe-rt"], "nope.xdf"),
    ("compare-streams-missing", ["compare", "--live", "NoSuchStream", "--synth", "NoSuchSynth", "--duration", "1"],
     "no LSL signal stream 'NoSuchSynth' found within 1 s (synth)"),  # the synthesized stream is resolved first
    ("calibrate-session-missing", ["calibrate", "--session", "{tmp}/nope", "--out", "{tmp}/c.json",
                                   "--synth", "vibe-rt"], "nope"),
    # a comparison that can compare nothing is an error naming the cause, decided before the model loads (it was
    # "0 events compared", exit 0, and calibrate then said "the ERPs are flat")
    ("compare-images-not-found", ["compare", "--live-file", "{tmp}/images_raw.fif"],
     "no marker named an image file that exists (such as 'img000.png'): pass --images DIR"),
    ("compare-images-other-folder", ["compare", "--live-file", "{tmp}/images_raw.fif", "--images", "{tmp}/empty"],
     "none of the 3 images the markers name (such as 'img000.png') is in {tmp}/empty"),
    ("compare-own-recording", ["compare", "--live-file", "{tmp}/streamed.vhdr", "--model", "{tmp}/nope"],
     "the markers carry no image names, only event codes (such as 'Stimulus/S  1')"),
    ("calibrate-own-recording", ["calibrate", "--session", "{tmp}/streamed.vhdr", "--out", "{tmp}/c.json"],
     "the markers carry no image names"),
    ("compare-markers-outside", ["compare", "--live-file", "{tmp}/images_raw.fif", "--synth",
                                 "{tmp}/images_raw.fif", "--stimulus-log", "{tmp}/late.csv"],
     "none of the 2 events could be compared (lost: incomplete at stop)"),
    ("compare-unit-unknown", ["compare", "--live-file", "{tmp}/images_raw.fif", "--synth", "{tmp}/images_raw.fif",
                              "--live-unit", "furlongs"], "--live-unit 'furlongs' is not a unit vibe-rt knows; give "
                                                          "one of V, mV, uV, nV, T, pT, fT, T/m, fT/cm, fT/m"),
    ("calibrate-unit-unknown", ["calibrate", "--session", "{tmp}/images_raw.fif", "--synth", "{tmp}/images_raw.fif",
                                "--live-unit", "furlongs"], "--live-unit 'furlongs' is not a unit"),
    # a path of the wrong kind is named as such, not as missing
    ("compare-live-file-folder", ["compare", "--live-file", "{tmp}/empty", "--synth", "vibe-rt"],
     "recording {tmp}/empty is a folder, expected a file"),
    ("compare-stimulus-log-folder", ["compare", "--live-file", "{tmp}/images_raw.fif", "--synth",
                                     "{tmp}/images_raw.fif", "--stimulus-log", "{tmp}/empty"],
     "stimulus log {tmp}/empty is a folder, expected a file"),
    ("compare-images-file", ["compare", "--live-file", "{tmp}/images_raw.fif", "--images", "{tmp}/late.csv"],
     "--images {tmp}/late.csv is a file, expected a folder"),
    ("compare-report-file", ["compare", "--live-file", "{tmp}/images_raw.fif", "--synth", "{tmp}/images_raw.fif",
                             "--report", "{tmp}/late.csv"], "--report {tmp}/late.csv is a file, expected a folder"),
    ("compare-synth-folder", ["compare", "--live-file", "{tmp}/images_raw.fif", "--synth", "{tmp}/empty"],
     "--synth {tmp}/empty is a folder"),
    ("calibrate-out-folder", ["calibrate", "--session", "{tmp}/images_raw.fif", "--out", "{tmp}/empty"],
     "--out {tmp}/empty is a folder, expected a file"),
    ("data-import-recording-folder", ["data", "import", "recording", "{tmp}/empty", "--out", "{tmp}/ds"],
     "recording {tmp}/empty is a folder, expected a file"),
    ("data-simulate-montage-unknown", ["data", "simulate", "--montage", "nope", "--out", "{tmp}/sim"],
     "unknown montage"),
    ("data-info-empty", ["data", "info", "{tmp}/empty"], "is not a vibe-rt dataset"),
    ("eval-model-missing", ["eval", "--model", "{tmp}/nope", "--data", "{tmp}/empty", "--no-baseline"],
     "not found"),
    ("train-qformer-vae-missing", ["train", "qformer", "--data", "{tmp}/empty", "--vae", "{tmp}/nope",
                                   "--out", "{tmp}/m"], "{tmp}"),
    ("bench-srate-zero", ["bench", "stream", "--srate", "0", "--out", "{tmp}/bench"], "--srate must be > 0"),
    ("bench-lookahead-negative", ["bench", "latency", "--lookahead", "-1", "--out", "{tmp}/bench"],
     "--lookahead must be >= 0"),
    ("srate-infinite", ["stream", "--srate", "inf", "--duration", "1"], "--srate must be a finite number"),
    ("chunk-ms-zero", ["stream", "--chunk-ms", "0", "--duration", "1"], "--chunk-ms must be a number > 0 and <= 100"),
    ("record-not-vhdr", ["stream", "--record", "{tmp}/rec.txt", "--duration", "1"], "give a name ending in .vhdr"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("unknown-option", ["stream", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("bad-number", ["stream", "--srate", "fast"], "argument --srate: invalid float value: 'fast'"),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_with_exit_code_2(argv, fragment, files, capsys):
    argv = [a.replace(TMP, str(files)) for a in argv]
    rc, out, err = _main(argv, capsys)
    assert rc == 2, (out, err)
    assert "Traceback" not in err + out
    last = err.strip().splitlines()[-1]
    assert last.startswith("vibe-rt: error: "), err
    assert fragment.replace(TMP, str(files)) in last, err
    # VibeErrors print exactly one line; argparse errors print the usage line first
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, err


def _set(path: str, value):
    """An edit of a checkpoint document: set the dotted ``path`` (``"config.vae.widths"``) to ``value``."""
    def edit(doc: dict) -> None:
        *parents, key = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[key] = value
    return edit


# (id, edit of a copy of the embedded default document, what the one line says). The sha256 covers only the
# weights, so each edited document reaches the loaders; before, most of them ended in a deep traceback.
DOCUMENT_CASES = [
    ("vae-widths-string", _set("config.vae.widths", "abc"), "config.vae.widths is 'abc', expected a list of integers"),
    ("vae-widths-floats", _set("config.vae.widths", [8, 16.5]), "config.vae.widths is [8, 16.5]"),
    ("qformer-hidden-float", _set("config.qformer.hidden", 12.5), "config.qformer.hidden is 12.5, expected an integer"),
    ("qformer-dropout-range", _set("config.qformer.dropout", 2.0), "dropout must be in [0, 1)"),
    ("qformer-dropout-string", _set("config.qformer.dropout", "0.1"), "expected a finite number"),
    ("encoder-name-number", _set("config.encoder.name", 5), "config.encoder.name is 5, expected a string"),
    ("vae-unknown-key", _set("config.vae.depth", 3), "config.vae has unknown keys ['depth']"),
    ("config-missing-vae", lambda d: d["config"].pop("vae"), "config lacks the keys ['vae']"),
    ("normalisation-string", _set("normalisation", "abc"), "normalisation is 'abc', expected null or an object"),
    ("normalisation-short", lambda d: d["normalisation"]["mean"].pop(), "expected a list of 17 finite numbers"),
    ("normalisation-nan", _set("normalisation.std", [float("nan")] * 17), "normalisation.std is"),
    ("normalisation-std-zero", lambda d: d["normalisation"]["std"].__setitem__(3, 0.0),
     "normalisation.std[3] is 0.0, expected a standard deviation > 0"),
    ("montage-sfreq-string", _set("montage.sfreq", "fast"), "montage.sfreq is 'fast', expected a finite number"),
    ("montage-channels-string", _set("montage.ch_names", "O1,Oz"), "montage.ch_names is 'O1,Oz', expected a list"),
    ("weights-record", _set("weights", "x"), "weights is 'x', expected an object"),
    ("weights-sha-number", _set("weights.sha256", 123), "weights.sha256 is 123, expected 64 lower-case hex"),
    ("kind-unknown", _set("kind", "gpt"), "kind is 'gpt', expected 'vibe' or 'tsc-vae'"),
    ("metrics-list", _set("metrics", [1]), "metrics is [1], expected an object"),
]
DOCUMENT_COMMANDS = {
    "stream": ["stream", "--model", "{model}", "--duration", "1"],
    "eval": ["eval", "--model", "{model}", "--data", "{tmp}/empty", "--no-baseline"],
    "engines-build": ["engines", "build", "--model", "{model}", "--backend", "onnxruntime", "--out", "{tmp}/eng"],
}


@pytest.mark.parametrize("edit, fragment", [c[1:] for c in DOCUMENT_CASES], ids=[c[0] for c in DOCUMENT_CASES])
def test_malformed_checkpoint_document_is_one_line_in_every_command(edit, fragment, files, capsys):
    weights = default_checkpoint_path()
    shutil.copy(weights, files / "edited.safetensors")
    doc = json.loads(weights.with_suffix(".json").read_text())
    edit(doc)
    (files / "edited.json").write_text(json.dumps(doc))
    for command, argv in DOCUMENT_COMMANDS.items():
        argv = [a.replace("{model}", str(files / "edited")).replace(TMP, str(files)) for a in argv]
        rc, out, err = _main(argv, capsys)
        assert rc == 2, (command, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vibe-rt: error: checkpoint document "), (command, err)
        assert "edited.json" in lines[0] and fragment in lines[0], (command, err)
        assert "restore the original or re-save the checkpoint" in lines[0]
    assert not (files / "eng").exists()


def test_non_finite_weights_are_a_checkpoint_error_in_eval_and_engines_build(files, capsys):
    """A consistent checkpoint (sha256 recorded) whose weights hold NaN: eval reported r = 0.000 with exit 0 and
    the ONNX export blamed an operator; both now exit 2 naming the tensors."""
    import hashlib

    from safetensors.torch import load_file, save_file

    weights = default_checkpoint_path()
    tensors = load_file(str(weights))
    tensors["qformer.head.bias"][0] = float("nan")
    tensors["vae.decoder.out.bias"][:] = float("inf")
    save_file(tensors, str(files / "nan.safetensors"))
    doc = json.loads(weights.with_suffix(".json").read_text())
    doc["weights"]["sha256"] = hashlib.sha256((files / "nan.safetensors").read_bytes()).hexdigest()
    (files / "nan.json").write_text(json.dumps(doc))
    for command in ("eval", "engines-build"):
        argv = [a.replace("{model}", str(files / "nan")).replace(TMP, str(files)) for a in DOCUMENT_COMMANDS[command]]
        rc, out, err = _main(argv, capsys)
        assert rc == 2, (command, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "NaN or infinite values in 2 tensors (qformer.head.bias, vae.decoder.out.bias)" in lines[0]
        assert "corrupt or its training diverged" in lines[0]
    assert not (files / "eng").exists()


def test_truncated_onnx_engine_is_refused(files):
    """A truncated ONNX graph gives EngineError (exit code 2 in the CLI), not an onnxruntime traceback."""
    pytest.importorskip("onnxruntime")
    from vibe_rt.errors import VibeError
    from vibe_rt.runtime.backends import OnnxRuntimeBackend

    with pytest.raises(VibeError, match="truncated.onnx"):
        OnnxRuntimeBackend(files / "truncated.onnx")


def test_help_version_info(capsys):
    rc, out, _ = _main(["--help"], capsys)
    assert rc == 0 and "stream" in out and "compare" in out and "calibrate" in out
    rc, out, _ = _main(["--version"], capsys)
    assert rc == 0 and out.strip() == f"vibe-rt {__version__}"
    rc, out, _ = _main([], capsys)
    assert rc == 0 and "usage: vibe-rt" in out
    rc, out, _ = _main(["info"], capsys)
    assert rc == 0 and out.startswith(f"vibe-rt {__version__}") and "embedded model:" in out
    rc, out, _ = _main(["info", "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["vibe_rt"] == __version__ and info["embedded_model"]["status"] == "ok"
