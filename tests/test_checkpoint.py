"""Tests of checkpoint saving/loading: round trips, hashes, and refusal of tampered or mismatched files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vibe_rt.checkpoint as ckpt
from vibe_rt.checkpoint import (
    checkpoint_paths,
    load_checkpoint,
    load_default_model,
    load_vae_checkpoint,
    model_hash,
    save_checkpoint,
    save_vae_checkpoint,
)
from vibe_rt.errors import CheckpointError
from vibe_rt.models import TSCVAE, TSCVAEConfig, ViBE
from vibe_rt.montage import get_montage

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> ViBE:
    torch.manual_seed(0)
    m = ViBE.tiny("things-eeg2").eval()
    m.set_normalisation(np.linspace(-1e-6, 1e-6, 17), np.linspace(2e-6, 6e-6, 17))
    return m


@pytest.fixture()
def saved(model, tmp_path) -> Path:
    return save_checkpoint(model, tmp_path / "model", metrics={"pearson_r": 0.5})


def _rewrite_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write new weights and record their sha256, as a checkpoint from another model would look."""
    weights, doc_path = checkpoint_paths(path)
    save_file(tensors, str(weights))
    doc = json.loads(doc_path.read_text())
    doc["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    doc_path.write_text(json.dumps(doc))


def _edit_document(path: Path, edit) -> None:
    doc_path = checkpoint_paths(path)[1]
    doc = json.loads(doc_path.read_text())
    edit(doc)
    doc_path.write_text(json.dumps(doc))


def test_round_trip_is_bit_identical(model, saved):
    weights, doc_path = checkpoint_paths(saved)
    assert saved == weights and weights.is_file() and doc_path.is_file()
    doc = json.loads(doc_path.read_text())
    assert doc["kind"] == "vibe" and doc["format_version"] == ckpt.FORMAT_VERSION
    assert doc["montage"]["name"] == "things-eeg2" and doc["metrics"] == {"pearson_r": 0.5}
    assert {"vibe_rt", "torch", "open_clip"} <= set(doc["versions"])
    loaded = load_checkpoint(doc_path)  # the .json path works as well as the stem or .safetensors
    assert loaded.cfg == model.cfg and not loaded.training
    pixels = model.example_inputs(batch=2)["encoder"]
    with torch.no_grad():
        assert torch.equal(loaded(pixels), model(pixels))
    assert torch.equal(loaded.norm_std, model.norm_std)
    assert model_hash(model) == model_hash(saved) == model_hash(loaded)


def test_model_hash_changes_with_weights(model):
    other = ViBE(model.cfg)
    other.load_state_dict(model.state_dict())
    assert model_hash(other) == model_hash(model)
    with torch.no_grad():
        other.qformer.head.bias[0] += 1e-3
    assert model_hash(other) != model_hash(model)


def test_tampered_weights_are_refused(saved):
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(saved)
    assert "tampered" in str(err.value) and saved.name in str(err.value)


def test_corrupt_safetensors_is_refused(saved):
    weights, _ = checkpoint_paths(saved)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _edit_document(saved, lambda d: d["weights"].update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved)


def test_missing_files_are_named(saved):
    weights, doc_path = checkpoint_paths(saved)
    weights.unlink()
    with pytest.raises(CheckpointError, match=f"weights .*{weights.name} not found"):
        load_checkpoint(saved)
    doc_path.unlink()
    with pytest.raises(CheckpointError, match=f"{doc_path.name} not found"):
        load_checkpoint(saved)


def test_unknown_format_version_is_refused(saved):
    _edit_document(saved, lambda d: d.update(format_version=99))
    with pytest.raises(CheckpointError, match="unknown checkpoint format version 99"):
        load_checkpoint(saved)


def test_montage_channel_mismatch_is_refused(saved):
    def drop_channel(doc):
        for key in ("ch_names", "ch_types", "positions"):
            doc["montage"][key] = doc["montage"][key][:-1]

    _edit_document(saved, drop_channel)
    with pytest.raises(CheckpointError, match="has 16 channels but the TSC-VAE config expects 17"):
        load_checkpoint(saved)


def test_edited_normalisation_is_refused(saved):
    _edit_document(saved, lambda d: d["normalisation"].update(std=[1.0] * 17))
    with pytest.raises(CheckpointError, match="normalisation"):
        load_checkpoint(saved)


def test_missing_unexpected_and_misshaped_tensors_are_named(saved):
    tensors = load_file(str(saved))
    del tensors["qformer.head.bias"]
    tensors["qformer.extra.weight"] = torch.zeros(2)
    tensors["vae.decoder.out.weight"] = torch.zeros(1, 3, 1, 1)
    _rewrite_weights(saved, tensors)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved)
    message = str(err.value)
    assert "missing tensors (1): qformer.head.bias" in message
    assert "unexpected tensors (1): qformer.extra.weight" in message
    assert "vae.decoder.out.weight (1, 3, 1, 1) vs model (1, 16, 1, 1)" in message


def test_vae_checkpoint_round_trip_and_kind_check(tmp_path, saved):
    montage = get_montage("things-meg")
    torch.manual_seed(0)
    vae = TSCVAE(TSCVAEConfig.for_montage(montage, "tiny")).eval()
    mean, std = np.zeros(271, np.float32), np.full(271, 1e-13, np.float32)
    path = save_vae_checkpoint(vae, tmp_path / "vae.safetensors", montage=montage, normalisation=(mean, std))
    loaded = load_vae_checkpoint(path)
    assert loaded.montage == montage and loaded.vae.cfg == vae.cfg
    np.testing.assert_array_equal(loaded.norm_std, std)
    x = torch.randn(1, 271, 281)
    with torch.no_grad():
        assert torch.equal(loaded.vae(x)[0], vae(x)[0])
    with pytest.raises(CheckpointError, match="load it with load_vae_checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="load it with load_checkpoint"):
        load_vae_checkpoint(saved)
    with pytest.raises(CheckpointError, match="channels"):
        save_vae_checkpoint(vae, tmp_path / "bad", montage=get_montage("things-eeg2"))


def test_default_model_missing_says_how_to_regenerate(monkeypatch, tmp_path):
    monkeypatch.setattr(ckpt, "default_checkpoint_path", lambda: tmp_path / "vibe-default.safetensors")
    with pytest.raises(CheckpointError, match="regenerate it with `vibe-rt train default`"):
        load_default_model()


def test_default_model_loads_when_present(monkeypatch, tmp_path, model):
    path = save_checkpoint(model, tmp_path / "vibe-default")
    monkeypatch.setattr(ckpt, "default_checkpoint_path", lambda: path)
    assert model_hash(load_default_model()) == model_hash(model)


def test_every_reader_validates_the_document_once(saved, tmp_path):
    """A mistyped field is the same one-line CheckpointError for every reader of the document."""
    montage = get_montage("things-eeg2")
    vae = TSCVAE(TSCVAEConfig.for_montage(montage, "tiny"))
    vae_path = save_vae_checkpoint(vae, tmp_path / "vae", montage=montage,
                                   normalisation=(np.zeros(17), np.ones(17)))
    _edit_document(saved, lambda d: d["config"]["vae"].update(widths="abc"))
    _edit_document(vae_path, lambda d: d["config"].update(latent_dim=[32]))
    for reader in (load_checkpoint, ckpt.read_checkpoint_config, model_hash, ckpt.load_model):
        with pytest.raises(CheckpointError, match=r"config\.vae\.widths is 'abc', expected a list of integers"):
            reader(saved)
    with pytest.raises(CheckpointError, match=r"config\.latent_dim is \[32\], expected an integer"):
        load_vae_checkpoint(vae_path)


def test_nan_weights_are_refused_at_save_and_at_load(model, saved, tmp_path):
    broken = ViBE(model.cfg)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.qformer.head.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"refusing to save .*1 tensors hold NaN.*qformer\.head\.bias.*diverged"):
        save_checkpoint(broken, tmp_path / "broken")
    assert not list(tmp_path.glob("broken*"))
    # one written anyway (by an older vibe-rt or by hand, sha256 consistent) is refused when loaded
    tensors = load_file(str(saved))
    tensors["qformer.head.bias"][0] = float("nan")
    _rewrite_weights(saved, tensors)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in 1 tensors \(qformer\.head\.bias\)"):
        load_checkpoint(saved)


def test_loaded_model_carries_document_and_hash(model, saved, monkeypatch):
    loaded = ckpt.load_model(saved)
    assert isinstance(loaded, ckpt.LoadedModel) and loaded.path == saved and loaded.name == "model"
    assert loaded.document["metrics"] == {"pearson_r": 0.5}
    # the hash comes from the document (the weights' sha256 recorded there), not from serialising the model
    monkeypatch.setattr(ckpt, "_weights_bytes", lambda m: pytest.fail("the model was serialised again"))
    assert loaded.model_hash == ckpt.model_hash(saved)
    monkeypatch.undo()
    assert loaded.model_hash == model_hash(model) == model_hash(loaded.model)
    in_memory = ckpt.as_loaded(model)
    assert in_memory.document is None and in_memory.name == "in-memory" and ckpt.as_loaded(in_memory) is in_memory
    calls = []
    real = ckpt._weights_bytes
    monkeypatch.setattr(ckpt, "_weights_bytes", lambda m: calls.append(1) or real(m))
    assert in_memory.model_hash == in_memory.model_hash == loaded.model_hash
    assert len(calls) == 1  # computed once, on first use
