"""What every benchmark shares: where it ran (machine, CPU/GPU, versions, load), percentiles, JSON and PNG output.

Every benchmark writes ``<out>/<name>-<machine>.json`` through :func:`write_result`. The document holds the
benchmark name, a UTC date, :func:`machine_info` (machine name, CPU model and cores, GPUs, library versions from
:func:`vibe_rt.system.system_info`, thread settings, load average) and the benchmark's own payload (its config,
raw samples and percentiles), so that results from different machines sit side by side and each says where it
came from.

``out`` defaults to ``benchmarks/results/`` when vibe-rt runs from a source checkout (the folder whose README
tables :mod:`vibe_rt.bench.tables` rebuilds) and to ``./vibe-rt-bench/`` for an installed package.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._json import to_jsonable

__all__ = [
    "cpu_model", "cpu_counts", "gpu_info", "machine_name", "machine_info", "load_average",
    "percentiles", "cpu_steal_s", "default_out_dir", "result_path", "write_result", "save_histograms", "checkout_root",
]

#: Percentile keys of :func:`percentiles`, in order.
SUMMARY_KEYS = ("n", "mean", "std", "min", "p50", "p95", "p99", "max")


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
    """Logical cores, physical cores (None without psutil) and the cores this process may use."""
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        usable = os.cpu_count()
    return {"logical": os.cpu_count(), "physical": physical, "usable": usable}


def gpu_info() -> list[dict[str, Any]]:
    """CUDA GPUs visible to torch: name, compute capability, memory in GiB (empty without CUDA)."""
    from ..system import compute_devices

    try:
        return list(compute_devices()["cuda"])
    except ImportError:  # pragma: no cover - torch is a dependency
        return []


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


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none): other work on a shared machine skews the
    tails of every timing, so each result records it."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def cpu_steal_s() -> float | None:
    """Seconds of CPU time the hypervisor has taken from this virtual machine since boot, all CPUs together
    (``steal`` in ``/proc/stat``; None where there is none to read): a shared VM's vCPU descheduled for tens of
    ms stalls whatever thread ran on it, so timing benchmarks record how much of it fell into their run."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):  # pragma: no cover - not Linux
        return None


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: machine name, CPU model and cores, GPUs, OS, Python, library versions, available
    backends, threads and load average."""
    from ..system import system_info

    info = system_info()
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        torch_threads = None
    return {
        "machine": machine_name(),
        "cpu": cpu_model(),
        "cores": cpu_counts(),
        "gpus": info["devices"]["cuda"],
        "platform": info["platform"],
        "python": info["python"],
        "versions": {"vibe-rt": info["vibe_rt"], **info["libraries"]},
        "backends": info["backends"],
        "torch_threads": torch_threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": load_average(),
    }


def percentiles(samples: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """Summary of latency samples: n, mean, std, min, p50, p95, p99, max (each multiplied by ``scale``,
    e.g. ``scale=1e3`` for seconds -> milliseconds). ``{"n": 0}`` when there are none."""
    a = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=np.float64) * scale
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max())}


def checkout_root() -> Path | None:
    """The source checkout vibe-rt runs from (the folder with ``pyproject.toml`` and ``benchmarks/``), or None
    for an installed package."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root
    return None


def default_out_dir() -> Path:
    """``benchmarks/results/`` of the source checkout, else ``./vibe-rt-bench/``."""
    root = checkout_root()
    return root / "benchmarks" / "results" if root is not None else Path.cwd() / "vibe-rt-bench"


def result_path(name: str, *, out_dir: str | Path | None = None, machine: str | None = None,
                suffix: str = ".json") -> Path:
    """``<out_dir>/<name>-<machine><suffix>`` (the folder is created)."""
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}-{machine or machine_name()}{suffix}"


def write_result(name: str, payload: dict[str, Any], *, out_dir: str | Path | None = None,
                 machine: str | None = None) -> Path:
    """Write ``<out_dir>/<name>-<machine>.json`` with the payload, :func:`machine_info` and a UTC timestamp.

    Parameters
    ----------
    name : str
        Benchmark name (``latency``, ``stream``, ``throughput``, ``quality``, ...).
    payload : dict
        Config, raw samples, percentiles; numpy values and NaN are converted (NaN -> null).
    out_dir : path-like | None
        Folder (default :func:`default_out_dir`).
    machine : str | None
        Machine name in the file name (default :func:`machine_name`).

    Returns
    -------
    Path
        The written file.
    """
    info = machine_info()
    path = result_path(name, out_dir=out_dir, machine=machine or info["machine"])
    doc = {"benchmark": name, "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "machine_info": info, **payload}
    path.write_text(json.dumps(to_jsonable(doc), indent=1) + "\n", encoding="utf-8")
    return path


def save_histograms(path: str | Path, panels: Mapping[str, Mapping[str, np.ndarray]], *, title: str,
                    marks: Mapping[str, float] | None = None) -> Path:
    """Histograms of timings (ms), one panel per quantity, one colour per series, saved as a PNG.

    Parameters
    ----------
    path : path-like
        Output PNG.
    panels : mapping panel name -> mapping series label -> array
        Samples in milliseconds (e.g. panel ``"onset_to_emitted"``, series per backend); empty ones are skipped.
    title : str
        Figure title.
    marks : mapping label -> ms | None
        Vertical reference lines drawn where they fall inside a panel's range (e.g. the lookahead).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    items = [(name, {k: np.asarray(v, float) for k, v in series.items() if np.asarray(v).size})
             for name, series in panels.items()]
    items = [(name, series) for name, series in items if series]
    n = max(1, len(items))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, items):
        lo = min(v.min() for v in series.values())
        hi = max(v.max() for v in series.values())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 50)
        for i, (label, v) in enumerate(series.items()):
            ax.hist(v, bins=bins, color=f"C{i}", alpha=0.5,
                    label=f"{label}: p50 {np.percentile(v, 50):.2f}, p99 {np.percentile(v, 99):.2f}")
        for label, x in (marks or {}).items():
            if lo <= x <= hi * 1.05:
                ax.axvline(x, color="k", lw=1, ls="--", label=f"{label} {x:g}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("ms", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
