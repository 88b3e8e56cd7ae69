"""ONNX Runtime INT8 engines on a CPU: build, cache, epoch parity against fp32, refusal, CLI, with the real tiny
ViBE, real onnxruntime.quantization and real ONNX Runtime sessions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _models import tiny_vibe

from vibe_rt.errors import ConfigError, EngineError
from vibe_rt.runtime import cache
from vibe_rt.runtime.int8_set import default_calibration_dir
from vibe_rt.runtime.manifest import EngineManifest
from vibe_rt.runtime.predictor import create_predictor
from vibe_rt.runtime.quantize import MIN_EPOCH_R, image_specific_r, pearson_r, quantized_nodes


@pytest.fixture(scope="module")
def tiny():
    return tiny_vibe()


@pytest.fixture(scope="module")
def int8_set(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    folder, manifest = cache.OnnxStore(root).ensure(tiny, precision="int8", fused=True)
    return root, folder, manifest


def _calibration_pixels(model) -> np.ndarray:
    return cache.load_calibration_images(default_calibration_dir(), model.encoder.preprocess_frames)


def test_int8_build_is_cached_with_its_parity(tiny, int8_set):
    root, folder, manifest = int8_set
    assert folder == root / manifest.model_hash / "onnxruntime-int8"
    assert manifest.backend == "onnxruntime" and manifest.precision == "int8"
    assert set(manifest.stages) == {"encoder", "qformer", "decoder", "chain"}
    assert manifest.extra["method"] == "dynamic" and manifest.extra["calibration_images"] == 32
    assert set(manifest.extra["epoch_r"]) == {"staged", "chain", "staged_image_specific", "chain_image_specific"}
    assert all(MIN_EPOCH_R <= r < 1.0 for r in manifest.extra["epoch_r"].values())  # quantized, not a copy
    for name in ("encoder", "qformer", "chain"):  # the transformers' matrix products are integer now
        assert quantized_nodes(folder / manifest.stages[name].file) == manifest.extra["quantized_nodes"][name] > 0
    assert 0 < manifest.stages["encoder"].parity_error < 0.15
    manifest.verify_files(folder)
    assert EngineManifest.load(folder).to_dict() == manifest.to_dict()
    again = cache.OnnxStore(root).ensure(tiny, precision="int8", fused=True)[1]
    assert again.build_time == manifest.build_time  # reused, not rebuilt
    # the fp32 export it was quantized from sits one folder up, untouched
    fp32 = cache.OnnxStore(root).load(manifest.model_hash)[1]
    assert fp32.precision == "fp32" and manifest.extra["onnx_sha256"]["encoder"] == fp32.stages["encoder"].sha256


def test_int8_predictor_matches_fp32_epochs(tiny, int8_set):
    root = int8_set[0]
    px = _calibration_pixels(tiny)[:8]
    int8 = create_predictor(tiny, "onnxruntime", precision="int8", engines_dir=root)
    fp32 = create_predictor(tiny, "onnxruntime", precision="fp32", engines_dir=root)
    assert int8.precision == "int8" and repr(int8).count("int8") == 1
    e8, timings = int8.predict(px)
    e32 = fp32.predict(px)[0]
    assert e8.dtype == np.float32 and e8.shape == e32.shape and np.isfinite(e8).all()
    assert set(timings) == {"encoder", "qformer", "decoder", "total"}
    assert MIN_EPOCH_R <= pearson_r(e8, e32) < 1.0 and MIN_EPOCH_R <= image_specific_r(e8, e32) < 1.0
    assert not np.array_equal(e8, e32)


def _with_activation_outlier(model, scale: float = 1e3):
    """The same function in fp32, but one channel of the Q-Former's token projection input is ``scale`` times
    larger (LayerNorm weight and bias x scale, the next Linear's column / scale): an activation outlier that
    per-tensor INT8 activations cannot represent beside the other channels, as in large trained transformers."""
    with torch.no_grad():
        norm, linear = model.qformer.token_proj[0], model.qformer.token_proj[1]
        norm.weight[0] *= scale
        norm.bias[0] *= scale
        linear.weight[:, 0] /= scale
    return model


def test_image_specific_r_sees_what_the_overall_r_does_not():
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((1, 17, 50)) * 100  # a large response common to every image
    specific = rng.standard_normal((8, 17, 50))
    assert pearson_r(mean + specific, mean + specific[::-1]) > 0.999  # images swapped: still "r = 0.999"
    assert image_specific_r(mean + specific, mean + specific[::-1]) < 0.2
    assert image_specific_r(mean + specific, mean + specific + 0.01 * rng.standard_normal(specific.shape)) > 0.999
    assert np.isnan(pearson_r(np.full(4, 1.0), np.arange(4.0))) and np.isnan(image_specific_r(specific[:1],
                                                                                              specific[:1]))


def test_int8_that_loses_the_epochs_is_refused_and_nothing_is_written(tmp_path):
    reference, model = tiny_vibe(), _with_activation_outlier(tiny_vibe())
    px = _calibration_pixels(model)
    ref_epochs = reference.stages()["decoder"](reference.stages()["qformer"](reference.stages()["encoder"](
        torch.from_numpy(px)))).detach().numpy()
    with torch.no_grad():  # fp32 is unchanged ...
        epochs = model.stages()["decoder"](model.stages()["qformer"](model.stages()["encoder"](
            torch.from_numpy(px)))).numpy()
    assert image_specific_r(epochs, ref_epochs) > 0.9999
    with pytest.raises(EngineError) as err:  # ... but int8 loses what differs between the images
        cache.OnnxStore(tmp_path).ensure(model, precision="int8", fused=False)
    msg = str(err.value)
    assert "correlate with the fp32 chain's at r = staged image specific" in msg, msg
    assert "--precision fp32" in msg and "\n" not in msg
    hashes = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(hashes) == 1 and not (hashes[0] / "onnxruntime-int8").exists()
    assert not list(tmp_path.glob(".building-*"))
    with pytest.raises(EngineError, match="no engine manifest"):  # and nothing loads from it
        cache.OnnxStore(tmp_path).load(hashes[0].name, precision="int8")


def test_corrupt_int8_graph_is_refused(tiny, int8_set, tmp_path):
    import shutil

    root, folder, manifest = int8_set
    copy = tmp_path / manifest.model_hash / "onnxruntime-int8"
    shutil.copytree(folder, copy)
    with open(copy / "encoder.onnx", "r+b") as fid:
        fid.truncate(1000)
    with pytest.raises(EngineError, match="corrupt"):
        cache.OnnxStore(tmp_path).load(manifest.model_hash, precision="int8")


def test_onnxruntime_precisions_are_checked(tiny, int8_set):
    with pytest.raises(ConfigError, match="fp32 or int8, not fp16"):
        create_predictor(tiny, "onnxruntime", precision="fp16", engines_dir=int8_set[0])


def test_cli_builds_and_verifies_int8(tiny, tmp_path, capsys):
    from vibe_rt.checkpoint import save_checkpoint
    from vibe_rt.cli import main

    ckpt = save_checkpoint(tiny, tmp_path / "tiny")
    out = tmp_path / "engines"
    assert main(["engines", "build", "--model", str(ckpt), "--backend", "onnxruntime", "--precision", "int8",
                 "--no-fused", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime int8 engines" in printed and "encoder" in printed
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    int8 = [r for r in rows if r["precision"] == "int8"]
    assert len(int8) == 1 and int8[0]["status"] == "ok", rows
    assert int8[0]["parity"]["epoch_r_staged"] >= MIN_EPOCH_R
    assert int8[0]["parity"]["epoch_r_staged_image_specific"] >= MIN_EPOCH_R
