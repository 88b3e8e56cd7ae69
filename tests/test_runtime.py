"""Runtime: ONNX export + ONNX Runtime parity, engine cache (manifest, mismatch, corruption), backend choice,
predictor and the ``vibe-rt engines`` command, with the real tiny ViBE and real onnxruntime sessions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import tiny_vibe

from vibe_rt.errors import ConfigError, EngineError, MissingDependencyError
from vibe_rt.runtime import backends, cache
from vibe_rt.runtime.backends import OnnxRuntimeBackend, TorchBackend, select_backend
from vibe_rt.runtime.export import random_inputs, relative_error, stage_modules, torch_reference, validate_onnx_file
from vibe_rt.runtime.manifest import EngineManifest, StageArtifact, sha256_file, tensorrt_dir, timing_cache_path
from vibe_rt.runtime.predictor import Predictor, create_predictor

TOL = 1e-4  # fp32 parity: max|a-b| / max|b|
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return tiny_vibe()


@pytest.fixture(scope="module")
def onnx_set(tiny, tmp_path_factory):
    """A verified ONNX export (stages + fused chain) shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("engines")
    folder, manifest = cache.OnnxStore(root).ensure(tiny, fused=True)
    return root, folder, manifest


def _copy_set(onnx_set, tmp_path) -> tuple[Path, Path]:
    root, folder, _ = onnx_set
    dst_root = tmp_path / "engines"
    shutil.copytree(folder, dst_root / folder.name)
    return dst_root, dst_root / folder.name


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("stage", ["encoder", "qformer", "decoder", "chain"])
def test_onnxruntime_parity_per_graph(tiny, onnx_set, stage):
    _, folder, manifest = onnx_set
    art = manifest.stages[stage]
    assert art.parity_error is not None and art.parity_error < TOL
    module = stage_modules(tiny, fused=True)[stage]
    be = OnnxRuntimeBackend(folder / art.file, device="cpu")
    example = tiny.example_inputs(1)["encoder" if stage == "chain" else stage]
    for batch in (1, 5):  # dynamic batch axis
        x = random_inputs(example, batch, seed=10 + batch)
        out = be.run({be.input_name: x})[be.output_name]
        ref = torch_reference(module, x)
        assert out.shape == ref.shape and out.dtype == np.float32
        assert relative_error(out, ref) < TOL
    # the graph really is opset 17 with LayerNorm as one operator
    proto = validate_onnx_file(folder / art.file)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
    if stage in ("encoder", "chain"):
        assert any(n.op_type == "LayerNormalization" for n in proto.graph.node)


def test_predictor_onnxruntime_matches_torch(tiny, onnx_set):
    root, _, _ = onnx_set
    frames = np.random.default_rng(0).integers(0, 256, (3, 90, 120, 3), dtype=np.uint8)
    ref_pred = create_predictor(tiny, "torch", device="cpu", warmup=False)
    pixels = ref_pred.preprocess(frames)
    assert pixels.shape == (3, 3, ref_pred.image_size, ref_pred.image_size)
    ref, t_ref = ref_pred.predict(pixels)
    with torch.no_grad():
        direct = tiny(torch.from_numpy(pixels)).numpy()
    assert relative_error(ref, direct) < 1e-6
    for fused in (False, True):
        pred = create_predictor(tiny, "onnxruntime", engines_dir=root, fused=fused)
        assert isinstance(pred, Predictor) and pred.backend_name == "onnxruntime" and pred.fused is fused
        epochs, timings = pred.predict(pixels)
        assert epochs.shape == (3, tiny.montage.n_channels, tiny.montage.n_times)
        assert epochs.dtype == np.float32
        assert relative_error(epochs, ref) < TOL
        expected = {"chain", "total"} if fused else {"encoder", "qformer", "decoder", "total"}
        assert set(timings) == expected and all(v > 0 for v in timings.values())
    assert set(t_ref) == {"encoder", "qformer", "decoder", "total"}
    # SI units: the de-normalisation is inside the decoder graph (std 5 uV -> responses of microvolts)
    assert 1e-8 < np.abs(epochs).max() < 1e-3


# ------------------------------------------------------------------------------------------------ manifest
def test_manifest_roundtrip(tmp_path):
    art = StageArtifact(file="encoder.plan", sha256="ab" * 32, input_name="pixels", output_name="tokens",
                        input_shape=[None, 3, 64, 64], output_shape=[None, 16, 128], parity_error=1.5e-3)
    m = EngineManifest(model_hash="0123456789abcdef", backend="tensorrt", precision="fp16",
                       stages={"encoder": art}, batch=(1, 2, 8), gpu={"name": "NVIDIA H100", "compute_capability":
                                                                      "9.0"}, extra={"note": "x"})
    m.versions["tensorrt"] = "10.8.0"
    m.save(tmp_path)
    back = EngineManifest.load(tmp_path)
    assert back == m
    assert back.to_dict() == json.loads((tmp_path / "manifest.json").read_text())
    for key in ("model_hash", "precision", "backend", "versions", "gpu", "build_time", "batch", "stages"):
        assert key in back.to_dict()
    assert timing_cache_path(tmp_path, "10.8.0", "9.0").name == "trt10.8.0_sm90.cache"


def test_manifest_malformed(tmp_path):
    with pytest.raises(EngineError, match="no engine manifest"):
        EngineManifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        EngineManifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "model_hash": "x"}))
    with pytest.raises(EngineError, match="malformed"):
        EngineManifest.load(tmp_path)


def test_other_model_hash_is_refused(tiny, onnx_set, tmp_path):
    root, folder = _copy_set(onnx_set, tmp_path)
    m = EngineManifest.load(folder)
    m.model_hash = "ffffffffffffffff"
    m.save(folder)
    with pytest.raises(EngineError, match="other model hash"):
        cache.OnnxStore(root).load(folder.name)
    with pytest.raises(EngineError, match="other model hash"):
        create_predictor(tiny, "onnxruntime", engines_dir=root, warmup=False)


def _fake_trt_set(root: Path, model_hash: str, *, trt: str = "10.8.0", gpu=None) -> Path:
    """A TensorRT cache folder as TensorRTStore.ensure writes it (the plan bytes are opaque here)."""
    folder = tensorrt_dir(root, model_hash, "fp16")
    folder.mkdir(parents=True)
    stages = {}
    for name in ("encoder", "qformer", "decoder"):
        path = folder / f"{name}.plan"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        stages[name] = StageArtifact(file=path.name, sha256=sha256_file(path), input_name="x", output_name="y",
                                     input_shape=[None, 1], output_shape=[None, 1], parity_error=1e-3)
    m = EngineManifest(model_hash=model_hash, backend="tensorrt", precision="fp16", stages=stages,
                       gpu=gpu or {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    m.versions["tensorrt"] = trt
    m.save(folder)
    return folder


@pytest.fixture
def h100_trt10_8(monkeypatch):
    """Pretend this machine runs TensorRT 10.8.0 on an H100 (the checks run before TensorRT is touched)."""
    monkeypatch.setattr(cache, "_tensorrt_target",
                        lambda: ("10.8.0", {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}))


def test_tensorrt_cache_checks(tmp_path, h100_trt10_8):
    folder = _fake_trt_set(tmp_path, "aaaa")
    f, m = cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")  # matching: accepted
    assert f == folder and m.gpu["compute_capability"] == "9.0"
    with pytest.raises(EngineError, match="no engine manifest"):
        cache.TensorRTStore(tmp_path).load("bbbb", precision="fp16")


def test_tensorrt_other_version_is_refused(tmp_path, h100_trt10_8):
    _fake_trt_set(tmp_path, "aaaa", trt="10.3.0")
    with pytest.raises(EngineError, match=r"TensorRT 10\.3\.0, this is TensorRT 10\.8\.0 \(other TensorRT version\)"):
        cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")


def test_tensorrt_other_gpu_is_refused(tmp_path, h100_trt10_8):
    _fake_trt_set(tmp_path, "aaaa", gpu={"name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"})
    with pytest.raises(EngineError, match=r"built on GPU NVIDIA A100.*8\.0.*this is NVIDIA H100.*\(other GPU\)"):
        cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")


def test_tensorrt_other_model_is_refused(tmp_path, h100_trt10_8):
    folder = _fake_trt_set(tmp_path, "aaaa")
    m = EngineManifest.load(folder)
    m.model_hash = "cccc"
    m.save(folder)
    with pytest.raises(EngineError, match="other model hash"):
        cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")


def test_corrupt_plan_is_refused_before_tensorrt(tmp_path, h100_trt10_8):
    folder = _fake_trt_set(tmp_path, "aaaa")
    plan = folder / "qformer.plan"
    plan.write_bytes(plan.read_bytes()[:100])  # truncated
    with pytest.raises(EngineError, match=r"qformer artefact .* is corrupt"):
        cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")
    (folder / "decoder.plan").unlink()
    with pytest.raises(EngineError, match="missing"):
        cache.TensorRTStore(tmp_path).load("aaaa", precision="fp16")


# ------------------------------------------------------------------------------------------------ corruption
def test_truncated_onnx_is_refused(tiny, onnx_set, tmp_path):
    root, folder = _copy_set(onnx_set, tmp_path)
    enc = folder / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[: enc.stat().st_size // 2])
    with pytest.raises(EngineError, match=r"encoder artefact .* is corrupt"):
        cache.OnnxStore(root).load(folder.name)
    with pytest.raises(EngineError, match="corrupt"):
        create_predictor(tiny, "onnxruntime", engines_dir=root, warmup=False)
    # without a manifest: onnx.checker / the parser catch it, never a crash
    with pytest.raises(EngineError, match="corrupt or not an ONNX model"):
        validate_onnx_file(enc)
    with pytest.raises(EngineError, match="corrupt or not an ONNX model"):
        OnnxRuntimeBackend(enc)
    # `engines build` replaces the corrupt export
    _, m = cache.build_engines(tiny, backend="onnxruntime", engines_dir=root, fused=False)
    assert m.stages["encoder"].parity_error < TOL
    cache.OnnxStore(root).load(folder.name)


def test_garbage_onnx_is_refused(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07garbage" + bytes(range(256)) * 4)
    with pytest.raises(EngineError, match="corrupt or not an ONNX model"):
        validate_onnx_file(bad)
    with pytest.raises(EngineError, match="missing"):
        validate_onnx_file(tmp_path / "absent.onnx")


# ------------------------------------------------------------------------------------------------ backends
def test_auto_without_tensorrt_or_gpu_picks_onnxruntime(monkeypatch):
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert select_backend("auto") == "onnxruntime"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed
    assert select_backend("auto") == "onnxruntime"
    assert backends.default_device("onnxruntime") == "cpu"


def test_auto_without_onnxruntime_picks_torch(monkeypatch):
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert select_backend("auto") == "torch"


def test_forced_tensorrt_without_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"vibe-rt\[tensorrt\]"):
        select_backend("tensorrt")
    with pytest.raises(MissingDependencyError, match=r"vibe-rt\[tensorrt\]"):
        create_predictor(object(), "tensorrt")  # fails before the model is touched
    with pytest.raises(ConfigError, match="unknown backend"):
        select_backend("tvm")


def test_backend_options_are_checked(tiny, onnx_set):
    _, folder, _ = onnx_set
    with pytest.raises(ConfigError, match="runs fp32 and int8 graphs, not .fp16."):
        OnnxRuntimeBackend(folder / "encoder.onnx", precision="fp16")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        TorchBackend(tiny.encoder, input_name="pixels", output_name="tokens", device="cpu", precision="fp16")
    be = OnnxRuntimeBackend(folder / "encoder.onnx", intra_op_threads=1)
    assert be.session.get_session_options().inter_op_num_threads == 1
    assert be.intra_op_threads == 1
    with pytest.raises(EngineError, match="expects input 'pixels'"):
        be.run({"tokens": np.zeros((1, 3), np.float32)})


def test_parse_batch():
    assert cache.parse_batch("1:4:16") == (1, 4, 16)
    assert cache.parse_batch("2") == (2, 2, 2)
    for bad in ("0:1:2", "4:2:8", "a:b:c", "1:2"):
        with pytest.raises(ConfigError, match="MIN:OPT:MAX"):
            cache.parse_batch(bad)


def test_default_calibration_set_loads(tiny):
    images = cache.load_calibration_images(REPO / "calibration" / "int8", tiny.encoder.preprocess_frames)
    s = tiny.encoder.image_size
    assert images.shape == (32, 3, s, s) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.std() > 0.3  # normalised, varied
    batches = cache._calibration_batches(tiny, images, 8)
    assert [len(batches[k]) for k in ("encoder", "qformer", "decoder")] == [4, 4, 4]
    assert batches["qformer"][0].shape[1:] == tuple(tiny.example_inputs(1)["qformer"].shape[1:])


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_engines_build_list_verify(tiny, tmp_path, capsys):
    from vibe_rt.checkpoint import save_checkpoint
    from vibe_rt.cli import main

    ckpt = save_checkpoint(tiny, tmp_path / "tiny")
    out = tmp_path / "engines"
    assert main(["engines", "build", "--model", str(ckpt), "--backend", "onnxruntime", "--out", str(out),
                 "--no-fused"]) == 0
    text = capsys.readouterr().out
    assert "onnxruntime fp32 engines of model" in text and "decoder" in text
    assert main(["engines", "list", "--out", str(out)]) == 0
    assert "onnxruntime fp32" in capsys.readouterr().out
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(out)]) == 0
    assert "[ok]" in capsys.readouterr().out
    # fp16 on ONNX Runtime is a user error, reported in one line with exit code 2
    assert main(["engines", "build", "--model", str(ckpt), "--backend", "onnxruntime", "--precision", "fp16",
                 "--out", str(out)]) == 2
    assert "use --backend tensorrt" in capsys.readouterr().err
    # corrupt a file: verify reports it and fails
    dec = next(out.glob("*/decoder.onnx"))
    dec.write_bytes(b"junk")
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(out)]) == 1
    assert "corrupt" in capsys.readouterr().out


def test_default_int8_set_is_the_committed_one_and_exists_after_install(tmp_path, monkeypatch):
    """The package writes the same 32 images as calibration/int8/ (pixel for pixel), and an installed vibe-rt
    (engine cache outside a checkout) gets them written once beside its cache."""
    import cv2

    from vibe_rt.runtime.int8_set import N_IMAGES, default_calibration_dir, write_int8_set

    committed = sorted((Path(__file__).parents[1] / "calibration" / "int8").glob("*.png"))
    written = write_int8_set(tmp_path / "set")
    assert [p.name for p in written] == [p.name for p in committed] and len(written) == N_IMAGES
    for a, b in zip(written, committed):
        assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b))), a.name
    monkeypatch.setenv("VIBE_RT_ENGINES_DIR", str(tmp_path / "cache" / "engines"))
    folder = default_calibration_dir()
    assert folder == tmp_path / "cache" / "calibration" / "int8"
    assert sorted(p.name for p in folder.glob("*.png")) == [p.name for p in committed]


# ------------------------------------------------------------------------------------------------ atomic builds
def test_failed_export_leaves_nothing_half_written(tiny, onnx_set, tmp_path, monkeypatch):
    """A parity failure or an exporter error leaves the cache as it was (before: the graphs exported so far
    stayed behind without a manifest); the next ensure works."""
    root = tmp_path / "engines"
    with pytest.raises(EngineError, match="does not match PyTorch"):
        cache.OnnxStore(root, tolerance=0.0).ensure(tiny)  # no graph can pass a tolerance of 0
    assert list(root.iterdir()) == []
    real = cache.export_onnx

    def exporter_fails_on_decoder(module, example, path, **kw):
        if kw["output_name"] == "epochs":
            raise EngineError("ONNX export of SIDecoder failed: simulated exporter error")
        return real(module, example, path, **kw)

    monkeypatch.setattr(cache, "export_onnx", exporter_fails_on_decoder)
    with pytest.raises(EngineError, match="simulated exporter error"):
        cache.OnnxStore(root).ensure(tiny, fused=False)  # the encoder and Q-Former graphs were written first
    assert list(root.iterdir()) == []
    # adding the chain to a sound export fails: the export is left exactly as it was
    _, folder = _copy_set(onnx_set, tmp_path / "copy")
    m = EngineManifest.load(folder)
    del m.stages["chain"]
    m.save(folder)
    (folder / "chain.onnx").unlink()
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(EngineError, match="simulated exporter error"):
        cache.OnnxStore(folder.parent).ensure(tiny, fused=True)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]
    monkeypatch.undo()
    f, again = cache.OnnxStore(root).ensure(tiny, fused=False)
    assert set(again.stages) == {"encoder", "qformer", "decoder"}
    assert cache.OnnxStore(root).load(f.name)[1].stages == again.stages


def test_cli_verify_checks_the_folder_belongs_to_the_model(tiny, onnx_set, tmp_path, capsys):
    """verify said [ok] for a folder whose manifest names another model; now it is an error naming both, and
    the folders of other models are skipped, saying whose they are."""
    from vibe_rt.checkpoint import save_checkpoint
    from vibe_rt.cli import main

    ckpt = save_checkpoint(tiny, tmp_path / "tiny")
    root, folder = _copy_set(onnx_set, tmp_path)
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(root)]) == 0
    assert capsys.readouterr().out.startswith("[ok]")
    other = "ffffffffffffffff"
    shutil.copytree(folder, root / other)
    m = EngineManifest.load(root / other)
    m.model_hash = other
    m.save(root / other)  # a sound export of another model
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(root)]) == 0
    lines = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == {"[ok]", "[skipped]"}
    assert f"engines of model {other}, not of the model verified (tiny, {folder.name})" in lines["[skipped]"]
    m = EngineManifest.load(folder)
    m.model_hash = other
    m.save(folder)  # the model's own folder now holds another model's manifest: no load would accept it
    with pytest.raises(EngineError, match="other model hash"):
        cache.OnnxStore(root).load(folder.name)
    assert main(["engines", "verify", "--model", str(ckpt), "--out", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"[error] {folder} (onnxruntime fp32): {folder} is the folder of model {folder.name}" in out
    assert f"built for model {other}" in out


# ------------------------------------------------------------------------------------------------ registry
def test_every_backend_is_one_store_in_the_registry(tmp_path, monkeypatch):
    assert set(cache.ENGINE_STORES) == set(backends.BACKENDS)
    store = cache.engine_store("onnxruntime", tmp_path)
    assert isinstance(store, cache.OnnxStore) and store.root == tmp_path
    assert store.folder("abcd") == tmp_path / "abcd"
    assert cache.engine_store("tensorrt", tmp_path).folder("abcd", "int8") == tmp_path / "abcd" / "tensorrt-int8"
    monkeypatch.setenv("VIBE_RT_ENGINES_DIR", str(tmp_path / "env"))
    assert cache.engine_store("torch").root == tmp_path / "env"  # the default folder, resolved in one place
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        cache.engine_store("tvm")
    with pytest.raises(ConfigError, match="ONNX Runtime engines are fp32 or int8, not fp16"):
        cache.OnnxStore(tmp_path).ensure(object(), precision="fp16")


def test_loaded_model_is_hashed_once_for_engines_meta_and_adapter(tiny, onnx_set, tmp_path, monkeypatch):
    """A stream start hashed the model 2-4 times (a full serialisation of the weights each); with a LoadedModel
    the hash comes from its document, for the engine cache, the stream meta-data and the adapter check."""
    import vibe_rt.checkpoint as ckpt
    from vibe_rt.checkpoint import model_hash, save_checkpoint
    from vibe_rt.compare.adapter import LatentAdapter
    from vibe_rt.runtime.predictor import load_predictor

    root, _, _ = onnx_set
    path = save_checkpoint(tiny, tmp_path / "tiny")
    expected = model_hash(tiny)
    monkeypatch.setattr(ckpt, "_weights_bytes", lambda m: pytest.fail("the model was serialised to hash it"))
    pred = load_predictor(path, "onnxruntime", engines_dir=root, warmup=False)
    assert pred.meta == {"backend": "onnxruntime", "precision": "fp32", "model": "tiny", "model_hash": expected}
    latent = pred._shapes["decoder"]
    pred.set_latent_adapter(LatentAdapter(np.ones(latent), np.zeros(latent), expected))
    with pytest.raises(ConfigError, match="fitted for model 0123"):
        pred.set_latent_adapter(LatentAdapter(np.ones(latent), np.zeros(latent), "0123456789abcdef"))
    assert load_predictor(ckpt.load_model(path), "torch", warmup=False).meta["model_hash"] == expected
