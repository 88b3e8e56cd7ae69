"""Helpers shared by the benchmark scripts: machine identity, percentiles, JSON results.

Every script writes ``benchmarks/results/<name>-<machine>.json`` through :func:`write_result`, which stores
:func:`machine_info` (CPU, cores, GPU, library versions) with the numbers, so results from different machines
sit side by side and each says where it came from.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_LIBRARIES = ("vibe-rt", "torch", "open_clip_torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu",
              "tensorrt", "pylsl", "mne", "opencv-python-headless")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_counts() -> dict[str, int | None]:
    """Logical cores, physical cores and the cores this process may use."""
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"logical": os.cpu_count(), "physical": physical, "usable": usable}


def gpu_info() -> list[dict[str, Any]]:
    """CUDA GPUs visible to torch: name, compute capability, memory (empty without CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                    "memory_gib": round(p.total_memory / 2**30, 1)})
    return out


def machine_name() -> str:
    """Short file-name-safe machine name: ``$VIBE_RT_MACHINE`` if set, else the GPU (``nvidia-h100-80gb-hbm3``)
    or the CPU with its usable core count (``cpu-amd-epyc-2c``)."""
    env = os.environ.get("VIBE_RT_MACHINE")
    if env:
        return _slug(env)
    gpus = gpu_info()
    if gpus:
        return _slug(gpus[0]["name"])
    return f"cpu-{_slug(cpu_model())}-{cpu_counts()['usable']}c"


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that matter for performance (None where absent)."""
    versions: dict[str, str | None] = {}
    for dist in _LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: machine name, CPU model and cores, GPUs, OS, Python, library versions, threads."""
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {
        "machine": machine_name(),
        "cpu": cpu_model(),
        "cores": cpu_counts(),
        "gpus": gpu_info(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(),
        "torch_threads": torch_threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def percentiles(samples: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """Summary of latency samples: n, mean, std, min, p50, p95, p99, max (each multiplied by ``scale``,
    e.g. ``scale=1e3`` for seconds -> milliseconds)."""
    a = np.asarray(list(samples), dtype=np.float64) * scale
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max())}


def write_result(name: str, payload: dict[str, Any], *, machine: str | None = None) -> Path:
    """Write ``results/<name>-<machine>.json`` with the payload, :func:`machine_info` and a UTC timestamp."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    machine = machine or machine_name()
    path = RESULTS_DIR / f"{name}-{machine}.json"
    doc = {"benchmark": name, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "machine_info": machine_info(), **payload}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
