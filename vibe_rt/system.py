"""What this machine offers: library versions, compute devices, inference backends, the embedded model."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

from . import __version__

_LIBRARIES = ("torch", "open_clip_torch", "numpy", "scipy", "mne", "pylsl", "onnx", "onnxruntime",
              "onnxruntime-gpu", "safetensors", "opencv-python-headless", "tensorrt", "psychopy-lib", "psychopy",
              "mne-lsl")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library vibe-rt uses (None where absent)."""
    versions: dict[str, str | None] = {}
    for dist in _LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def compute_devices() -> dict[str, Any]:
    """CPU description and, where CUDA works, the GPUs with their compute capability."""
    import os

    import torch

    devices: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                               "cuda": []}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices["cuda"].append({"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                                    "memory_gib": round(props.total_memory / 2**30, 1)})
    return devices


def available_backends() -> dict[str, bool]:
    """Which inference backends can run here."""
    import importlib.util

    import torch

    has_cuda = torch.cuda.is_available()
    ort_providers: list[str] = []
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        ort_providers = onnxruntime.get_available_providers()
    return {
        "torch": True,
        "torch-cuda": has_cuda,
        "onnxruntime": bool(ort_providers),
        "onnxruntime-cuda": "CUDAExecutionProvider" in ort_providers and has_cuda,
        "tensorrt": importlib.util.find_spec("tensorrt") is not None and has_cuda,
    }


def system_info() -> dict[str, Any]:
    """Everything ``vibe-rt info`` shows, as a dict (also stored with benchmark results)."""
    return {
        "vibe_rt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "devices": compute_devices(),
        "backends": available_backends(),
    }
