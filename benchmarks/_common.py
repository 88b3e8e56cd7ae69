"""Helpers shared by the benchmark scripts: machine identity, percentiles, JSON results.

Every script writes ``benchmarks/results/<name>-<machine>.json`` through :func:`write_result`, which stores
:func:`machine_info` (CPU, cores, GPU, library versions) with the numbers, so results from different machines
sit side by side and each says where it came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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
    """CUDA GPUs visible to torch: name, compute capability, memory (empty without CUDA); from
    :func:`vibe_rt.system.compute_devices`."""
    from vibe_rt.system import compute_devices

    return list(compute_devices()["cuda"])


def machine_name() -> str:
    """Short file-name-safe machine name: ``$VIBE_RT_MACHINE`` if set, else the GPU (``nvidia-h100-80gb-hbm3``)
    or the CPU with its usable core count (``cpu-amd-epyc-2c``)."""
    return _machine_name(gpu_info())


def _machine_name(gpus: list[dict[str, Any]]) -> str:
    env = os.environ.get("VIBE_RT_MACHINE")
    if env:
        return _slug(env)
    if gpus:
        return _slug(gpus[0]["name"])
    return f"cpu-{_slug(cpu_model())}-{cpu_counts()['usable']}c"


def library_versions() -> dict[str, str | None]:
    """Installed versions of vibe-rt and the libraries it uses (None where absent), from
    :func:`vibe_rt.system.library_versions`."""
    from vibe_rt import __version__
    from vibe_rt.system import library_versions as _versions

    return {"vibe-rt": __version__, **_versions()}


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: machine name, CPU model and cores, GPUs, OS, Python, library versions, available
    backends, threads (OS, Python, versions, GPUs and backends from :func:`vibe_rt.system.system_info`)."""
    from vibe_rt.system import system_info

    info = system_info()
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    gpus = list(info["devices"]["cuda"])
    return {
        "machine": _machine_name(gpus),
        "cpu": cpu_model(),
        "cores": cpu_counts(),
        "gpus": gpus,
        "platform": info["platform"],
        "python": info["python"],
        "versions": {"vibe-rt": info["vibe_rt"], **info["libraries"]},
        "backends": info["backends"],
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
