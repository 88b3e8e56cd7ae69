"""Inference runtime: ONNX export, engine cache, backends (torch / ONNX Runtime / TensorRT), predictor.

Public API (imported lazily, so ``import vibe_rt.runtime`` stays cheap and never needs TensorRT):
:func:`create_predictor`, :func:`load_predictor`, :class:`Predictor`, :func:`select_backend`,
:class:`TorchBackend`, :class:`OnnxRuntimeBackend`, :class:`TensorRTBackend`, :func:`export_onnx`,
:func:`engine_store` (one :class:`EngineStore` per backend: :class:`OnnxStore`, :class:`TensorRTStore`,
:class:`TorchStore`), :func:`build_engines`, :func:`verify_engines`, :class:`EngineManifest`,
:func:`default_engines_dir`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_predictor": "predictor", "load_predictor": "predictor", "Predictor": "predictor",
    "select_backend": "backends", "Backend": "backends", "TorchBackend": "backends",
    "OnnxRuntimeBackend": "backends",
    "TensorRTBackend": "tensorrt",
    "export_onnx": "export",
    "build_engines": "cache", "verify_engines": "cache", "engine_store": "cache", "EngineStore": "cache",
    "OnnxStore": "cache", "TensorRTStore": "cache", "TorchStore": "cache",
    "EngineManifest": "manifest", "default_engines_dir": "manifest",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
