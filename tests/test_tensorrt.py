"""TensorRT engines of the tiny ViBE: build, parity with PyTorch, cache reuse and refusal, CUDA graphs.

Needs TensorRT (``pip install 'vibe-rt[tensorrt]'``) and a CUDA GPU; skipped elsewhere. Runs unchanged on a GPU
machine: ``python -m pytest tests/test_tensorrt.py -m gpu``.

Tolerances (relative error ``max|a-b| / max|b|`` against the fp32 PyTorch module on random inputs):
fp16 2e-2 (10-bit mantissa through ~10 layers; LayerNorm kept in fp32), fp32 1e-3 (TF32 off; kernels sum in
another order), int8 1.5e-1 (checked loosely: calibration quality, not correctness).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'vibe-rt[tensorrt]')")
if not torch.cuda.is_available():
    pytest.skip("TensorRT tests need a CUDA GPU", allow_module_level=True)

from vibe_rt.errors import EngineError  # noqa: E402
from vibe_rt.runtime import cache  # noqa: E402
from vibe_rt.runtime.backends import select_backend  # noqa: E402
from vibe_rt.runtime.export import random_inputs, relative_error, stage_modules, torch_reference  # noqa: E402
from vibe_rt.runtime.manifest import EngineManifest, gpu_info, timing_cache_path  # noqa: E402
from vibe_rt.runtime.predictor import create_predictor  # noqa: E402
from vibe_rt.runtime.tensorrt import TensorRTBackend, tensorrt_version  # noqa: E402

FP16_TOL = 2e-2
FP32_TOL = 1e-3


def assert_parity(actual: np.ndarray, reference: np.ndarray, tol: float) -> None:
    """One parity helper for every engine check (torch2trt-style cross validation)."""
    err = relative_error(actual, reference)
    assert err < tol, f"relative error {err:.3g} >= {tol:g}"


@pytest.fixture(scope="module")
def tiny():
    from vibe_rt.models.vibe import ViBE

    torch.manual_seed(0)
    model = ViBE.tiny("things-eeg2").eval()
    c = model.montage.n_channels
    model.set_normalisation(np.zeros(c), np.full(c, 5e-6))
    return model


@pytest.fixture(scope="module")
def fp16_set(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    folder, manifest = cache.TensorRTStore(root).ensure(tiny, precision="fp16", batch=(1, 1, 8), fused=True)
    return root, folder, manifest


def test_auto_selects_tensorrt():
    assert select_backend("auto") == "tensorrt"


def test_fp16_build_and_parity(tiny, fp16_set):
    root, folder, manifest = fp16_set
    assert manifest.backend == "tensorrt" and manifest.precision == "fp16"
    assert manifest.versions["tensorrt"] == tensorrt_version()
    assert manifest.gpu == gpu_info()
    assert set(manifest.stages) == {"encoder", "qformer", "decoder", "chain"}
    assert timing_cache_path(root, tensorrt_version(), manifest.gpu["compute_capability"]).is_file()
    modules = stage_modules(tiny, fused=True)
    examples = tiny.example_inputs(1)
    for name, art in manifest.stages.items():
        assert art.parity_error < FP16_TOL
        be = TensorRTBackend(folder / art.file, precision="fp16")
        for batch in (1, 8):
            x = random_inputs(examples["encoder" if name == "chain" else name], batch, seed=batch)
            assert_parity(be.run({be.input_name: x})[be.output_name], torch_reference(modules[name], x), FP16_TOL)
        with pytest.raises(EngineError, match="outside the engine's profile"):
            be.run({be.input_name: random_inputs(examples["encoder" if name == "chain" else name], 9)})


def test_predictor_tensorrt_vs_torch(tiny, fp16_set):
    root, _, _ = fp16_set
    frames = np.random.default_rng(0).integers(0, 256, (4, 80, 100, 3), dtype=np.uint8)
    ref_pred = create_predictor(tiny, "torch", device="cpu", warmup=False)
    pixels = ref_pred.preprocess(frames)
    ref, _ = ref_pred.predict(pixels)
    for fused in (False, True):
        pred = create_predictor(tiny, "tensorrt", engines_dir=root, precision="fp16", fused=fused, build=False)
        epochs, timings = pred.predict(pixels)
        assert epochs.shape == ref.shape and epochs.dtype == np.float32
        assert_parity(epochs, ref, FP16_TOL)
        assert timings["total"] > 0


def test_cuda_graph_replay_matches(tiny, fp16_set):
    _, folder, manifest = fp16_set
    art = manifest.stages["chain"]
    plain = TensorRTBackend(folder / art.file)
    graphed = TensorRTBackend(folder / art.file, cuda_graph=True)
    graphed.warmup(batch=1)
    assert graphed._graph is not None
    for seed in range(3):  # new inputs each time: the graph reads the static input buffer
        x = random_inputs(tiny.example_inputs(1)["encoder"], 1, seed=seed)
        a = plain.run({plain.input_name: x})[plain.output_name]
        b = graphed.run({graphed.input_name: x})[graphed.output_name]
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * np.abs(a).max())


def test_cached_build_is_reused_and_mismatch_rebuilt(tiny, fp16_set):
    root, folder, manifest = fp16_set
    _, again = cache.TensorRTStore(root).ensure(tiny, precision="fp16", batch=(1, 1, 8), fused=True)
    assert again.build_time == manifest.build_time  # reused, not rebuilt
    m = EngineManifest.load(folder)
    m.gpu = {"name": "Some Other GPU", "compute_capability": "7.5"}
    m.save(folder)
    with pytest.raises(EngineError, match="other GPU"):
        create_predictor(tiny, "tensorrt", engines_dir=root, precision="fp16", build=False)
    m.gpu, m.versions["tensorrt"] = gpu_info(), "9.9.9"
    m.save(folder)
    with pytest.raises(EngineError, match="other TensorRT version"):
        cache.TensorRTStore(root).load(manifest.model_hash, precision="fp16")
    with pytest.raises(EngineError, match="other TensorRT version"):  # on-the-fly builds refuse it too
        cache.TensorRTStore(root).ensure(tiny, precision="fp16", fused=True)
    _, rebuilt = cache.build_engines(tiny, backend="tensorrt", precision="fp16", batch=(1, 1, 8), engines_dir=root)
    assert rebuilt.versions["tensorrt"] == tensorrt_version()
    cache.TensorRTStore(root).load(manifest.model_hash, precision="fp16")


def test_corrupt_plan_is_refused(tiny, fp16_set, tmp_path):
    import shutil

    root, folder, manifest = fp16_set
    dst = tmp_path / "engines"
    shutil.copytree(root / manifest.model_hash, dst / manifest.model_hash)
    plan = dst / manifest.model_hash / "tensorrt-fp16" / "encoder.plan"
    plan.write_bytes(plan.read_bytes()[:1000])
    with pytest.raises(EngineError, match="corrupt"):
        create_predictor(tiny, "tensorrt", engines_dir=dst, precision="fp16", build=False)
    # straight to the runtime without the manifest: deserialize returns None -> EngineError, no crash
    with pytest.raises(EngineError, match="cannot deserialize"):
        TensorRTBackend(plan)


def test_failed_plan_build_leaves_nothing_half_written(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_tensorrt_tolerance", lambda precision: 0.0)  # no plan can pass
    with pytest.raises(EngineError, match="relative error vs torch fp32"):
        cache.TensorRTStore(tmp_path).ensure(tiny, precision="fp16", batch=(1, 1, 2), fused=False)
    (model_folder,) = [p for p in tmp_path.iterdir() if p.name != "timing-cache"]  # the ONNX export, complete
    assert not (model_folder / "tensorrt-fp16").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building")]
    monkeypatch.undo()
    _, manifest = cache.TensorRTStore(tmp_path).ensure(tiny, precision="fp16", batch=(1, 1, 2), fused=False)
    assert set(manifest.stages) == {"encoder", "qformer", "decoder"}


def test_fp32_engine_parity(tiny, tmp_path):
    _, manifest = cache.TensorRTStore(tmp_path).ensure(tiny, precision="fp32", batch=(1, 1, 4), fused=False)
    for art in manifest.stages.values():
        assert art.parity_error < FP32_TOL


@pytest.mark.slow
def test_int8_engine_builds_with_calibration(tiny, tmp_path):
    _, manifest = cache.TensorRTStore(tmp_path).ensure(tiny, precision="int8", batch=(1, 1, 8), fused=False)
    assert manifest.extra["calibration"]
    for name, art in manifest.stages.items():
        assert np.isfinite(art.parity_error) and art.parity_error < 1.5e-1, name
        assert (tmp_path / manifest.model_hash / "tensorrt-int8" / f"{name}.calib").is_file()
