"""``vibe-rt data``: simulate datasets, import THINGS data and recordings, summarise dataset folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``simulate``, ``import`` and ``info`` subcommands."""
    parser = subparsers.add_parser("data", help="simulate or import datasets, summarise dataset folders",
                                   description="Simulate THINGS-like datasets, convert THINGS-EEG2/THINGS-MEG "
                                               "files and own recordings into dataset folders, inspect them.")
    sub = parser.add_subparsers(dest="data_command", metavar="{simulate,import,info}")
    sub.required = True
    sim = sub.add_parser("simulate", help="simulate images + training/test epochs (THINGS layout)",
                         description="Simulate stimulus images and M/EEG epochs from a physiological model "
                                     "(see docs/simulator.md).")
    sim.add_argument("--out", "-o", default="data/simulated", help="output folder (default: %(default)s)")
    sim.add_argument("--montage", default="things-eeg2", help="preset (things-eeg2, things-meg) or a custom EEG "
                     "cap MNE_MONTAGE[:CH1,CH2,...], e.g. biosemi64 or colin27_1005:O1,Oz,O2 (100 Hz, -0.2..0.79 s) "
                     "(default: %(default)s)")
    sim.add_argument("--n-train", type=int, default=None, help="training images (default per montage)")
    sim.add_argument("--train-reps", type=int, default=None, help="repetitions per training image")
    sim.add_argument("--n-test", type=int, default=None, help="test images (default per montage)")
    sim.add_argument("--test-reps", type=int, default=None, help="repetitions per test image")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sim.add_argument("--image-dir", default=None, help="use the images in this folder instead of procedural ones")
    sim.add_argument("--categories", default=None, metavar="FILE.tsv",
                     help="category table for --image-dir (tab-separated: image, category [face, body, object, "
                          "scene or none], optional strength, inverted); without it user images drive no "
                          "category-selective component")
    sim.add_argument("--paradigm", default=None, metavar="NAME",
                     help="presentation: things-eeg2 = continuous 5 Hz RSVP (100 ms on, 100 ms off, sequences of "
                          "20), things-meg = 500 ms on, 1000 +- 200 ms off, isolated = no neighbours (default: the "
                          "montage's dataset, things-meg for things-meg, else things-eeg2)")
    sim.add_argument("--noise-scale", type=float, default=None,
                     help="background level relative to realistic (default 1 = realistic; the embedded model "
                     "is trained at 0.1)")
    sim.add_argument("--variability", type=float, default=1.0, help="trial-to-trial jitter scale")
    imp = sub.add_parser("import", help="convert THINGS-EEG2/THINGS-MEG files or a recording to a dataset folder",
                         description="Convert published THINGS files or an own recording into the dataset folder "
                                     "layout (train/ and test/) that `vibe-rt train` and `vibe-rt eval` read. "
                                     "THINGS-EEG2 files are pickles: convert only your own copy of the dataset.")
    imp.add_argument("kind", choices=("things-eeg2", "things-meg", "recording"), help="what SOURCE is")
    imp.add_argument("source", help="THINGS-EEG2 subject folder (sub-XX), THINGS-MEG -epo.fif file, or a "
                                    "recording (FIF, BrainVision, EDF, BDF, XDF)")
    imp.add_argument("--out", "-o", required=True, help="output dataset folder")
    imp.add_argument("--images", default=None,
                     help="THINGS image folder (THINGS-EEG2: with image_metadata.npy; THINGS-MEG: the root the "
                          "metadata image paths are relative to; recording: root of the logged image names)")
    imp.add_argument("--log", default=None, help="recording: stimulus log CSV/TSV (image, event and/or onset)")
    imp.add_argument("--montage", default=None,
                     help="montage preset to select and order channels (default: things-eeg2 for THINGS-EEG2, "
                          "the file's own channels otherwise)")
    imp.add_argument("--split", choices=("train", "test"), default="train", help="recording: which split it is")
    info = sub.add_parser("info", help="print a summary of a dataset folder",
                          description="Summarise a dataset folder written by `vibe-rt data simulate` or "
                                      "EpochsDataset.save.")
    info.add_argument("dir", help="dataset folder (with train/ and test/, or one split)")
    info.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``vibe-rt data <command>``."""
    if args.data_command == "simulate":
        from ..data.simulate import SimulationConfig, simulate_dataset

        kw = {} if args.noise_scale is None else {"noise_scale": args.noise_scale}
        cfg = SimulationConfig(montage=args.montage, n_train=args.n_train, train_reps=args.train_reps,
                               n_test=args.n_test, test_reps=args.test_reps, seed=args.seed,
                               image_dir=args.image_dir, categories=args.categories, paradigm=args.paradigm,
                               variability=args.variability, **kw)
        train, test = simulate_dataset(cfg, args.out)
        nc = test.meta.get("noise_ceiling", {})
        sys.stdout.write(f"{train}\n{test}\nnoise ceiling: lower {nc.get('lower_mean', float('nan')):.3f}, "
                         f"upper {nc.get('upper_mean', float('nan')):.3f} (post-stimulus "
                         f"{nc.get('lower_mean_post', float('nan')):.3f} / "
                         f"{nc.get('upper_mean_post', float('nan')):.3f})\nwritten to {args.out}\n")
        return 0
    if args.data_command == "import":
        for ds in import_dataset(args.kind, args.source, args.out, images=args.images, log=args.log,
                                 montage=args.montage, split=args.split):
            sys.stdout.write(f"{ds}\n")
        sys.stdout.write(f"written to {args.out}\n")
        return 0
    if args.data_command == "info":
        summary = dataset_summary(args.dir)
        if args.json:
            sys.stdout.write(json.dumps(summary, indent=1) + "\n")
        else:
            for split, s in summary["splits"].items():
                sys.stdout.write(
                    f"{split}: {s['n_images']} images x {s['n_reps']} reps, {s['n_channels']} channels "
                    f"x {s['n_times']} samples ({s['tmin']:.3f}..{s['tmax']:.3f} s at {s['sfreq']:g} Hz), "
                    f"montage {s['montage']}, unit {s['unit']}, rms {s['rms']:.3g}, NaN {s['nan_fraction']:.1%}\n")
                if "noise_ceiling" in s:
                    nc = s["noise_ceiling"]
                    sys.stdout.write(f"  noise ceiling: lower {nc['lower_mean']:.3f}, upper {nc['upper_mean']:.3f}\n")
        return 0
    raise SystemExit(f"unknown data command {args.data_command!r}")  # pragma: no cover (argparse prevents it)


def import_dataset(kind: str, source: str | Path, out: str | Path, *, images: str | None = None,
                   log: str | None = None, montage: str | None = None, split: str = "train") -> list:
    """Convert THINGS-EEG2 / THINGS-MEG files or a recording into a dataset folder; returns the datasets."""
    from ..data.recordings import load_recording
    from ..data.things import load_things_eeg2, load_things_meg

    out = Path(out)
    if kind == "things-eeg2":
        datasets = list(load_things_eeg2(source, images, montage=montage or "things-eeg2"))
    elif kind == "things-meg":
        return list(load_things_meg(source, montage=montage, image_root=images, out_dir=out))
    else:
        datasets = [load_recording(source, log, montage=montage, split=split, image_root=images)]
    for ds in datasets:
        ds.save(out / ds.split)
    return datasets


def dataset_summary(directory: str | Path) -> dict:
    """Shapes, montage, unit, rms and noise ceiling of each split in ``directory``."""
    from ..data.dataset import EpochsDataset
    from ..errors import DataError

    directory = Path(directory)
    splits = {}
    candidates = [directory / "train", directory / "test"] if (directory / "train").is_dir() or \
        (directory / "test").is_dir() else [directory]
    for d in candidates:
        if not d.is_dir():
            continue
        ds = EpochsDataset.load(d)
        sample = np.asarray(ds.epochs[: min(50, ds.n_images)], dtype=np.float64)
        s = {"n_images": ds.n_images, "n_reps": ds.n_reps, "n_channels": ds.montage.n_channels,
             "n_times": ds.montage.n_times, "sfreq": ds.montage.sfreq, "tmin": ds.montage.tmin,
             "tmax": ds.montage.tmax, "montage": ds.montage.name, "unit": ds.unit,
             "rms": float(np.sqrt(np.nanmean(sample**2))), "nan_fraction": float(np.isnan(sample).mean())}
        if "noise_ceiling" in ds.meta:
            s["noise_ceiling"] = ds.meta["noise_ceiling"]
        splits[ds.split] = s
    if not splits:
        raise DataError(f"{directory} holds no dataset (expected train/ and test/ folders or dataset.json)")
    return {"directory": str(directory), "splits": splits}
