"""Inference runtime: ONNX export, engine cache, backends (torch / ONNX Runtime / TensorRT), predictor."""

from __future__ import annotations
