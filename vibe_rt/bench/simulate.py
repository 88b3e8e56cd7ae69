"""Question: how long and how much memory does the default simulated dataset take, and how good is it?

Simulates the default dataset of a montage (things-eeg2: 3000 images x 4 training reps, 200 x 80 test reps)
with :func:`vibe_rt.data.simulate.simulate_dataset`, and reports wall time per stage, peak RSS, dataset size
on disk, the split-half noise ceiling (whole epoch and post-stimulus), how well trial averages recover the
noise-free ground truth, and the cost of :class:`BackgroundNoise` (1 s of 64 channels at 1 kHz). Figures:
``<out>/simulate-background-spectrum.png`` (background PSD per channel with the 1/f fit) and
``<out>/simulate-erp.png`` (average ERPs for stimuli in the four quadrants plus topographies) and
``<out>/simulate-physiology.png`` (ON/OFF and pattern onset, face N170, RSVP overlap). Writes
``<out>/simulate-<machine>.json``.
"""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import default_out_dir, percentiles, write_result

NAME = "simulate"
FIGURES = ("simulate-background-spectrum.png", "simulate-erp.png", "simulate-physiology.png")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _quadrant_grating(cx: float, cy: float, size: int = 128) -> np.ndarray:
    """20 cycles per image (2.9 cycles/deg on the 7-deg things-eeg2 image) in a disc at (cx, cy)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)
    img = 0.5 + 0.5 * np.cos(np.pi * 20 * x) * (np.hypot(x - cx, y - cy) < 0.35)
    return np.repeat((img * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def background_figure(montage, path: Path, seed: int = 0) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    from ..data import BackgroundNoise

    fs = 250.0
    x = BackgroundNoise(montage, fs, seed=seed).generate(int(fs * 120)).astype(np.float64)
    f, p = signal.welch(x, fs=fs, nperseg=1000, axis=0)
    fit = (f >= 2) & (f <= 40) & ~((f >= 7) & (f <= 14))
    ch = montage.ch_names.index("Oz") if "Oz" in montage.ch_names else 0
    slope, icpt = np.polyfit(np.log10(f[fit]), np.log10(p[fit, ch]), 1)
    alpha = (f >= 8) & (f <= 12)
    excess = float(np.max(np.log10(p[alpha, ch]) - (slope * np.log10(f[alpha]) + icpt)))
    scale, unit = (1e12, "µV²/Hz") if montage.modality == "EEG" else (1e30, "fT²/Hz")
    fig, ax = plt.subplots(figsize=(6, 4))
    sel = (f > 0.3) & (f <= 100)
    ax.loglog(f[sel], p[sel] * scale, color="0.7", lw=0.6)
    ax.loglog(f[sel], p[sel, ch] * scale, color="C0", lw=1.5, label=f"{montage.ch_names[ch]}")
    ax.loglog(f[sel], 10 ** (slope * np.log10(f[sel]) + icpt) * scale, "k--", lw=1,
              label=f"1/f fit, slope {slope:.2f}")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel(f"PSD ({unit})")
    ax.set_title(f"BackgroundNoise, {montage.name} (all channels grey)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"slope_2_40hz": float(slope), "alpha_excess_log10": excess,
            "rms_median": float(np.median(x.std(0))), "rms_max": float(x.std(0).max())}


def erp_figure(montage, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne

    from ..data import EvokedModel

    model = EvokedModel(montage)
    quads = {"upper left": (-0.4, 0.4), "upper right": (0.4, 0.4), "lower left": (-0.4, -0.4),
             "lower right": (0.4, -0.4)}
    erps = {k: model.evoked(_quadrant_grating(*v)) for k, v in quads.items()}
    scale, unit = (1e6, "µV") if montage.modality == "EEG" else (1e15, "fT")
    info = montage.create_info()
    t = montage.times
    topo_times = (0.075, 0.11, 0.17)
    fig, axes = plt.subplots(len(quads), 1 + len(topo_times), figsize=(12, 10),
                             gridspec_kw={"width_ratios": [3] + [1] * len(topo_times)})
    show = [c for c in ("POz", "Oz", "PO7", "PO8") if c in montage.ch_names] or list(montage.ch_names[:4])
    for row, (name, erp) in enumerate(erps.items()):
        ax = axes[row, 0]
        for c in show:
            ax.plot(t * 1e3, erp[montage.ch_names.index(c)] * scale, label=c)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"grating, {name} field")
        ax.set_ylabel(unit)
        if row == 0:
            ax.legend(ncol=4, fontsize=8)
        for j, tt in enumerate(topo_times):
            i = int(np.argmin(np.abs(t - tt)))
            mne.viz.plot_topomap(erp[:, i], info, axes=axes[row, j + 1], show=False, contours=0,
                                 sensors=True, vlim=(-np.abs(erp).max(), np.abs(erp).max()))
            axes[row, j + 1].set_title(f"{tt * 1e3:.0f} ms", fontsize=9)
    axes[-1, 0].set_xlabel("time (ms)")
    fig.suptitle(f"Simulated evoked responses ({montage.name}): C1 flips with upper/lower field, "
                 "P1/N1 contralateral")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    c1 = (t >= 0.06) & (t <= 0.09)
    poz = montage.ch_names.index("POz") if "POz" in montage.ch_names else 0
    return {f"c1_poz_{k.replace(' ', '_')}": float(v[poz, c1].mean() * scale) for k, v in erps.items()}


def physiology_figure(montage, path: Path) -> dict:
    """ON/OFF and pattern onset, face N170, and RSVP overlap (the properties of docs/simulator.md), at 1 kHz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data import EvokedModel
    from ..data.paradigm import expected_epochs, get_paradigm
    from ..data.stimuli import checkerboard, make_stimulus

    fine = montage.with_window(1000.0, montage.tmin, round(montage.n_times * 1000.0 / montage.sfreq))
    model = EvokedModel(fine)
    t = fine.times * 1e3
    ch = fine.ch_names.index
    occ = ("Oz", "POz", "P8", "P7")
    if not all(c in fine.ch_names for c in occ):
        return {}
    onset = {"black": np.zeros((128, 128, 3), np.uint8), "white": np.full((128, 128, 3), 255, np.uint8),
             "checkerboard 0.5 deg": checkerboard(0.5)}
    erps = {k: model.evoked(v) for k, v in onset.items()}
    faces, objects, plain = [], [], []
    for i in range(16):
        img, p = make_stimulus(np.random.default_rng([11, i]), 128, "face")
        faces.append(model.evoked(img, "face"))
        plain.append(model.evoked(img))
        objects.append(model.evoked(make_stimulus(np.random.default_rng([11, i]), 128, "object")[0], "object"))
    faces, objects, plain = (np.mean(a, 0) for a in (faces, objects, plain))
    coarse = EvokedModel(montage)
    drives = []
    for i in range(60):
        img, p = make_stimulus(np.random.default_rng([12, i]))
        drives.append(coarse.drives(img, p["category"]))
    amp, lat = np.array([d[0] for d in drives]), np.array([d[1] for d in drives])
    rsvp, alone = expected_epochs(coarse, get_paradigm("things-eeg2"), amp, lat, 80, 1.0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for (name, erp), colour in zip(erps.items(), ("k", "0.6", "C3")):
        axes[0].plot(t, erp[ch("Oz")] * 1e6, color=colour, label=f"{name}, Oz")
    axes[0].plot(t, erps["black"][ch("POz")] * 1e6, "k--", lw=0.8, label="black, POz")
    axes[0].set_title("onset from mid-grey: OFF leads ON", fontsize=10)
    axes[1].plot(t, faces[ch("P8")] * 1e6, "C0", label="faces, P8")
    axes[1].plot(t, faces[ch("P7")] * 1e6, "C0", lw=0.8, ls="--", label="faces, P7")
    axes[1].plot(t, objects[ch("P8")] * 1e6, "C1", label="objects, P8")
    axes[1].plot(t, plain[ch("P8")] * 1e6, "0.5", lw=0.8, label="faces without label, P8")
    axes[1].set_title("N170: faces > objects, right > left (16 each)", fontsize=10)
    tt = montage.times * 1e3
    axes[2].plot(tt, rsvp[:, ch("Oz")].mean(0) * 1e6, "C2", label="expected epoch, 5 Hz RSVP (evoked_true)")
    axes[2].plot(tt, alone[:, ch("Oz")].mean(0) * 1e6, "k", label="the image alone (evoked_isolated)")
    axes[2].set_title("5 Hz RSVP overlap at Oz (mean of 60 images)", fontsize=10)
    for ax in axes:
        ax.axhline(0, color="k", lw=0.4)
        ax.set_xlabel("time (ms)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("µV")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"black_white_r": float(np.corrcoef(erps["black"].ravel(), erps["white"].ravel())[0, 1]),
            "checkerboard_oz_min_uv": float(erps["checkerboard 0.5 deg"][ch("Oz")].min() * 1e6),
            "n170_p8_face_object_uv": [float(faces[ch("P8")].min() * 1e6), float(objects[ch("P8")].min() * 1e6)]}


def run(*, montage: str = "things-eeg2", data_dir: str | Path | None = None, seed: int = 0,
        n_train: int | None = None, n_test: int | None = None, noise_scale: float = 0.4,
        machine: str | None = None, out_dir: str | Path | None = None, write: bool = True
        ) -> tuple[dict, Path | None]:
    """Simulate the default dataset of ``montage`` and measure it; returns the payload and the JSON path.

    Parameters
    ----------
    montage : str
        Montage name (its default dataset size unless ``n_train``/``n_test`` are given).
    data_dir : path-like | None
        Where the dataset is written (default: a temporary folder, deleted afterwards).
    seed : int
        Simulation seed.
    n_train, n_test : int | None
        Training and test images (default: the montage's default dataset).
    noise_scale : float
        Background level (0.4: the embedded model's training data; 1 = realistic).
    machine : str | None
        Machine name in the result file (default: detected).
    out_dir : path-like | None
        Folder of the JSON result and the figures (default :func:`~vibe_rt.bench.common.default_out_dir`).
    write : bool
        Write the JSON result and the figures.
    """
    from ..data import BackgroundNoise, SimulationConfig, simulate_dataset
    from ..montage import get_montage, make_montage
    from ..stats import pearson

    out = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="vibe-sim-"))
    cfg = SimulationConfig(montage=montage, n_train=n_train, n_test=n_test, seed=seed, noise_scale=noise_scale)
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    train, test = simulate_dataset(cfg, out)
    wall = time.perf_counter() - t0
    rss = _peak_rss_mb()
    summary = json.loads((out / "simulation.json").read_text())
    truth = np.load(out / "test" / "evoked_true.npy")
    post = test.montage.times >= 0
    # the truth is 0 for every image before the onset: r is undefined there and counts as 0 in the mean
    r_truth = np.nan_to_num(pearson(truth, test.average(), axis=0), nan=0.0)
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    import mne

    names = mne.channels.make_standard_montage("biosemi64").ch_names
    m64 = make_montage("biosemi64", names, sfreq=1000.0, tmin=-0.2, n_times=100)
    noise = BackgroundNoise(m64, 1000.0, seed=0)
    noise.generate(1000)
    samples = []
    for _ in range(50):
        s = time.perf_counter()
        noise.generate(1000)
        samples.append(time.perf_counter() - s)

    # the figures belong to the result; without it they go next to the dataset
    figures = (Path(out_dir) if out_dir is not None else default_out_dir()) if write else out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    geometry = get_montage(montage)
    bg = background_figure(geometry, figures / FIGURES[0], seed)
    erp = erp_figure(geometry, figures / FIGURES[1])
    physiology = physiology_figure(geometry, figures / FIGURES[2])
    payload = {
        "question": "time, memory and quality of the default simulated dataset",
        "montage": montage,
        "config": summary["config"],
        "train_shape": list(train.epochs.shape),
        "test_shape": list(test.epochs.shape),
        "wall_s": wall,
        "stage_s": summary["timings"],
        "peak_rss_mb": rss,
        "peak_rss_mb_before": rss0,
        "disk_mb": disk / 1e6,
        "noise_ceiling": summary["noise_ceiling"],
        "average_vs_truth_r": {"mean": float(r_truth.mean()), "post_stimulus": float(r_truth[:, post].mean())},
        "single_trial_rms": float(np.sqrt(np.mean(np.asarray(test.epochs[:20], np.float64) ** 2))),
        "truth_peak_abs_percentiles_10_50_90": np.percentile(np.abs(truth).max(axis=(1, 2)),
                                                             [10, 50, 90]).tolist(),
        "background_64ch_1khz_1s_ms": percentiles(samples, 1e3),
        "background": bg,
        "erp_c1": erp,
        "physiology": physiology,
        "figures": list(FIGURES),
    }
    payload["summary"] = {k: payload[k] for k in ("wall_s", "peak_rss_mb", "noise_ceiling", "average_vs_truth_r",
                                                  "background")}
    path = write_result(NAME, payload, machine=machine, out_dir=out_dir) if write else None
    if data_dir is None:
        shutil.rmtree(out, ignore_errors=True)
    return payload, path
