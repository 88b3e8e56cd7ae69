"""Epoched M/EEG grouped by image: the one in-memory and on-disk form every loader and the simulator produce.

On disk, a dataset is a folder with ``epochs.npy`` (``np.save`` of a float32 array, read back with
``allow_pickle=False`` and memory-mapped) and ``dataset.json`` (montage, split, unit, image paths relative to
the folder where possible, free-form metadata). Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..montage import Montage

FORMAT = "vibe-rt-epochs"
FORMAT_VERSION = 1
_SPLITS = ("train", "test")


@dataclass
class EpochsDataset:
    """Epochs of one split, grouped by image.

    Parameters
    ----------
    epochs : ndarray, shape (n_images, n_reps, n_channels, n_times)
        float32, SI units (V, T, T/m) or ``"a.u."`` for whitened/z-scored data (THINGS); may be a read-only
        memory map. Missing repetitions (ragged recordings) are NaN.
    montage : Montage
        Channels and epoch window; ``montage.n_channels`` and ``montage.n_times`` match the array.
    image_paths : list of Path or str
        One entry per image: a file path, or an image id where no file exists.
    split : str
        ``"train"`` or ``"test"``.
    unit : str
        ``"V"``, ``"T"``, ``"T/m"`` or ``"a.u."``.
    meta : dict
        JSON-serialisable extra information (source files, simulation parameters, ...).
    """

    epochs: np.ndarray
    montage: Montage
    image_paths: list
    split: str = "train"
    unit: str = "V"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in _SPLITS:
            raise DataError(f"split must be one of {_SPLITS}, got {self.split!r}")
        shape = np.shape(self.epochs)
        expect = (len(self.image_paths), None, self.montage.n_channels, self.montage.n_times)
        if len(shape) != 4 or any(e is not None and s != e for s, e in zip(shape, expect)):
            raise DataError(
                f"epochs of shape {shape} do not match (n_images={expect[0]}, n_reps, n_channels={expect[2]}, "
                f"n_times={expect[3]}) from the image list and montage {self.montage.name!r}"
            )
        self.image_paths = [Path(p) if isinstance(p, os.PathLike) else p for p in self.image_paths]

    # ------------------------------------------------------------------ shape
    @property
    def n_images(self) -> int:
        """Number of images (conditions)."""
        return int(self.epochs.shape[0])

    @property
    def n_reps(self) -> int:
        """Repetitions per image (including NaN-padded ones)."""
        return int(self.epochs.shape[1])

    @property
    def times(self) -> np.ndarray:
        """Epoch sample times in seconds."""
        return self.montage.times

    def __len__(self) -> int:
        return self.n_images

    def __repr__(self) -> str:
        return (f"EpochsDataset(split={self.split!r}, images={self.n_images}, reps={self.n_reps}, "
                f"channels={self.montage.n_channels}, times={self.montage.n_times}, unit={self.unit!r}, "
                f"montage={self.montage.name!r})")

    # ------------------------------------------------------------------ maths
    def average(self) -> np.ndarray:
        """Mean over repetitions (NaN repetitions ignored), shape (n_images, n_channels, n_times), float32."""
        out = np.empty((self.n_images, self.montage.n_channels, self.montage.n_times), np.float32)
        for i in range(0, self.n_images, 256):  # blockwise: works on memory maps of any size
            block = np.asarray(self.epochs[i: i + 256], dtype=np.float32)
            out[i: i + 256] = np.nanmean(block, axis=1) if np.isnan(block).any() else block.mean(axis=1)
        return out

    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation over images, repetitions and time (training split only).

        Returns
        -------
        mean, std : ndarray, shape (n_channels,), float32
            In the dataset's unit. ``std`` is floored at a tiny positive value.

        Raises
        ------
        DataError
            On a test split: statistics must come from training data only.
        """
        if self.split != "train":
            raise DataError("normalisation statistics come from the training split only; "
                            "call normalisation() on the training dataset")
        c = self.montage.n_channels
        total = np.zeros(c)
        total_sq = np.zeros(c)
        count = np.zeros(c)
        for i in range(0, self.n_images, 256):
            block = np.asarray(self.epochs[i: i + 256], dtype=np.float64)
            ok = np.isfinite(block)
            total += np.where(ok, block, 0).sum(axis=(0, 1, 3))
            total_sq += np.where(ok, block**2, 0).sum(axis=(0, 1, 3))
            count += ok.sum(axis=(0, 1, 3))
        if np.any(count == 0):
            raise DataError("cannot compute normalisation: some channels have no finite samples")
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 0.0)
        std = np.maximum(np.sqrt(var), 1e-30)
        return mean.astype(np.float32), std.astype(np.float32)

    def subset(self, indices: Sequence[int] | np.ndarray) -> EpochsDataset:
        """A dataset with the given images (in memory)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return EpochsDataset(np.asarray(self.epochs[idx]), self.montage, [self.image_paths[i] for i in idx],
                             self.split, self.unit, dict(self.meta))

    # ------------------------------------------------------------------ i/o
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``epochs.npy`` and ``dataset.json`` into ``directory`` (created if needed).

        Image paths under ``directory``'s parent are stored relative to ``directory``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arr = np.lib.format.open_memmap(directory / "epochs.npy", mode="w+", dtype=np.float32,
                                        shape=self.epochs.shape)
        for i in range(0, self.n_images, 256):
            arr[i: i + 256] = self.epochs[i: i + 256]
        arr.flush()
        del arr
        write_header(directory, self.montage, self.image_paths, self.split, self.unit, self.meta,
                     self.epochs.shape)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = True) -> EpochsDataset:
        """Read a dataset written by :meth:`save` (no pickle; memory-mapped read-only by default).

        Raises
        ------
        DataError
            Missing or malformed files, naming the file and what was expected.
        """
        directory = Path(directory)
        header_path = directory / "dataset.json"
        data_path = directory / "epochs.npy"
        if not header_path.is_file() or not data_path.is_file():
            raise DataError(f"{directory} is not a vibe-rt dataset: expected dataset.json and epochs.npy in it "
                            "(write one with EpochsDataset.save or `vibe-rt data simulate`)")
        try:
            header = json.loads(header_path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"{header_path}: not valid JSON ({err})") from err
        if header.get("format") != FORMAT:
            raise DataError(f"{header_path}: format {header.get('format')!r}, expected {FORMAT!r}")
        try:
            montage = Montage.from_dict(header["montage"])
            epochs = np.load(data_path, mmap_mode="r" if mmap else None, allow_pickle=False)
            paths = [_resolve(directory, p) for p in header["image_paths"]]
            out = cls(epochs, montage, paths, header["split"], header["unit"], header.get("meta", {}))
        except KeyError as err:
            raise DataError(f"{header_path}: missing key {err}") from err
        except ValueError as err:
            raise DataError(f"{data_path}: cannot read as a plain float32 .npy array ({err})") from err
        except DataError as err:
            raise DataError(f"{directory}: {err}") from err
        if list(epochs.shape) != list(header.get("shape", epochs.shape)):
            raise DataError(f"{data_path}: shape {epochs.shape} differs from {header['shape']} in {header_path}")
        return out


def write_header(directory: Path, montage: Montage, image_paths: Sequence, split: str, unit: str,
                 meta: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Write ``dataset.json`` (used by :meth:`EpochsDataset.save` and by writers that fill a memory map)."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "split": split,
        "unit": unit,
        "shape": [int(s) for s in shape],
        "montage": montage.to_dict(),
        "image_paths": [_relative(directory, p) for p in image_paths],
        "meta": meta,
    }
    (directory / "dataset.json").write_text(json.dumps(header, indent=1))


def _relative(directory: Path, p: Any) -> str:
    if not isinstance(p, Path):
        return str(p)
    try:
        return "file:" + os.path.relpath(p.resolve(), directory.resolve())
    except ValueError:  # other drive on Windows
        return "file:" + str(p)


def _resolve(directory: Path, p: str) -> Path | str:
    if p.startswith("file:"):
        q = Path(p[5:])
        return q if q.is_absolute() else (directory / q).resolve()
    return p
