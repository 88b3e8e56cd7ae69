"""Loaders for the published THINGS-EEG2 and THINGS-MEG preprocessed files.

THINGS-EEG2 (Gifford et al. 2022): per subject ``preprocessed_eeg_training.npy`` (16540 images x 4 reps x 17
channels x 100 times) and ``preprocessed_eeg_test.npy`` (200 x 80 x 17 x 100), each an ``np.save`` of a
Python dict with keys ``preprocessed_eeg_data``, ``ch_names`` and ``times``, plus the image set's
``image_metadata.npy`` (dict with ``train_img_files``, ``train_img_concepts``, ``test_img_files``,
``test_img_concepts``) and images under ``training_images/<concept>/<file>`` and ``test_images/<concept>/<file>``.

The THINGS-EEG2 ``.npy`` files are **pickles** (``np.save`` of an object array). ``np.load(allow_pickle=True)``
would run whatever code a crafted file names; these loaders never call it. They read the ``.npy`` header
themselves and unpickle with an unpickler that admits exactly what the published files contain (numpy arrays
and scalars, dtypes, and builtin containers: dict, list, tuple, str, numbers, bytes, sets); any other global
is refused with a :class:`~vibe_rt.errors.DataError` before anything runs. Convert once to vibe-rt's
pickle-free format with :meth:`EpochsDataset.save` and use that afterwards.

THINGS-MEG (Hebart et al. 2023): ``preprocessed_P{n}-epo.fif`` (MNE epochs, 271 CTF magnetometers, 200 Hz,
-0.1..1.3 s, baseline z-scored) whose metadata has ``trial_type`` (``exp``, ``test``, ``catch``) and
``image_path`` columns; test images are the ones shown 12 times (``trial_type == "test"``).
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._logs import logger
from ..errors import DataError
from ..montage import THINGS_EEG2_CHANNELS, Montage, get_montage, make_montage
from .dataset import EpochsDataset, write_header

EEG2_TRAIN_FILE = "preprocessed_eeg_training.npy"
EEG2_TEST_FILE = "preprocessed_eeg_test.npy"
EEG2_METADATA_FILE = "image_metadata.npy"
_EEG2_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
THINGS_MEG_N_CHANNELS = 271  # 272 recorded CTF magnetometers minus the malfunctioning MRO11


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals that ``np.save`` of a dict of arrays, lists and strings refers to, by (module, name): array
    and scalar reconstruction and dtypes (under numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` names)."""
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, whatever its module is called
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


#: Builtin containers and scalars a THINGS-EEG2 dict may hold (most are pickle opcodes; these come by name).
_BUILTINS = {name: getattr(builtins, name) for name in
             ("dict", "list", "tuple", "str", "int", "float", "bool", "complex", "bytes", "set", "frozenset")}


class _ThingsUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and builtin containers only; any other global is refused before
    it is called, so a crafted file cannot run code (``pickle``'s documented way to restrict globals)."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self.path = path
        self.allowed = {**_numpy_globals(), **{("builtins", k): v for k, v in _BUILTINS.items()},
                        ("collections", "OrderedDict"): collections.OrderedDict}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self.path} refers to {module}.{name}, which a THINGS-EEG2 file (np.save of a dict of "
                            "arrays, lists and strings) never does: it is not a THINGS-EEG2 file and was not "
                            "executed; use the published file") from None


def _load_npy_dict(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The dict that ``np.save`` wrote to ``path`` (THINGS-EEG2 files), read without running code.

    The ``.npy`` header is read with numpy's format functions; the object array after it is unpickled by
    :class:`_ThingsUnpickler`, which admits only numpy arrays, numpy scalars and builtin containers.
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist; expected the published THINGS file there")
    fmt = np.lib.format
    try:
        with open(path, "rb") as fid:
            version = fmt.read_magic(fid)
            shape, _, dtype = (fmt.read_array_header_1_0(fid) if version == (1, 0)
                               else fmt.read_array_header_2_0(fid))
            if dtype.hasobject and shape == ():
                obj = _ThingsUnpickler(fid, path).load()
                obj = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
            else:
                obj = f"an array of {dtype} with shape {shape}"
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is a data error
        raise DataError(f"{path}: cannot read as a numpy-saved dict ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict saved with np.save (keys {', '.join(keys)}), "
                        f"got {obj if isinstance(obj, str) else type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; expected keys {', '.join(keys)}")
    return obj


def read_things_eeg2(path: str | os.PathLike, split: str | None = None, *,
                     montage: Montage | str | None = "things-eeg2", image_paths: list | None = None
                     ) -> EpochsDataset:
    """One THINGS-EEG2 preprocessed file as an :class:`EpochsDataset` (unit ``"a.u."``: MVNN-whitened).

    Parameters
    ----------
    path : path-like
        ``preprocessed_eeg_training.npy`` or ``preprocessed_eeg_test.npy`` (read with the restricted
        unpickler, see the module docstring).
    split : str | None
        ``"train"`` or ``"test"``; default from the file name.
    montage : Montage | str | None
        Expected channels and window (default the ``things-eeg2`` preset: the 17 published channels,
        -0.2..0.79 s at 100 Hz). None builds a montage from the file's channels and times (for data
        re-preprocessed with other channels), with positions from MNE's ``colin27_1005`` montage.
    image_paths : list | None
        One entry per image; default ``"<split>-<index>"`` ids.

    Raises
    ------
    DataError
        Missing keys, wrong array shape, channels or times, or a global that the published files never contain
        (refused, not run); the message names the file and the expectation.
    """
    path = Path(path)
    if split is None:
        split = "test" if "test" in path.name else "train"
    obj = _load_npy_dict(path, _EEG2_KEYS)
    data = np.asarray(obj["preprocessed_eeg_data"])
    ch_names = [str(c) for c in np.asarray(obj["ch_names"]).ravel()]
    times = np.asarray(obj["times"], dtype=float).ravel()
    if data.ndim != 4:
        raise DataError(f"{path}: preprocessed_eeg_data has shape {data.shape}; expected 4 dimensions "
                        "(images, repetitions, channels, times), e.g. (16540, 4, 17, 100)")
    if data.shape[2] != len(ch_names) or data.shape[3] != len(times):
        raise DataError(f"{path}: preprocessed_eeg_data has shape {data.shape} but the file lists "
                        f"{len(ch_names)} channels and {len(times)} times")
    if len(times) < 2:
        raise DataError(f"{path}: times has {len(times)} entries; expected the epoch sample times")
    sfreq = 1.0 / float(np.median(np.diff(times)))
    if montage is None:
        montage = make_montage("colin27_1005", ch_names, sfreq=round(sfreq, 6), tmin=float(times[0]),
                               n_times=len(times), name="things-eeg2-custom")
    elif isinstance(montage, str):
        montage = get_montage(montage)
    if ch_names != list(montage.ch_names):
        raise DataError(f"{path}: channels {ch_names} differ from the expected {list(montage.ch_names)} "
                        f"(montage {montage.name!r}); pass montage=None to use the file's channels")
    if len(times) != montage.n_times or not np.allclose(times, montage.times, atol=0.5 / montage.sfreq):
        raise DataError(f"{path}: times {times[0]:.3f}..{times[-1]:.3f} s ({len(times)} samples, "
                        f"{sfreq:.1f} Hz) differ from the expected {montage.tmin:.3f}..{montage.tmax:.3f} s "
                        f"({montage.n_times} samples, {montage.sfreq:g} Hz)")
    if image_paths is None:
        image_paths = [f"{split}-{i:05d}" for i in range(data.shape[0])]
    elif len(image_paths) != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images in the data but {len(image_paths)} in the image list")
    return EpochsDataset(np.ascontiguousarray(data, dtype=np.float32), montage, list(image_paths), split,
                         "a.u.", {"source": str(path), "dataset": "THINGS-EEG2"})


def things_eeg2_image_paths(image_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Image files of the THINGS-EEG2 image set, per split, in condition order.

    Parameters
    ----------
    image_dir : path-like
        Folder with ``image_metadata.npy`` (a pickle, read with the restricted unpickler), ``training_images/``
        and ``test_images/``.

    Returns
    -------
    dict
        ``{"train": [...], "test": [...]}``, ``<split folder>/<concept>/<file>`` per condition.
    """
    image_dir = Path(image_dir)
    meta = _load_npy_dict(image_dir / EEG2_METADATA_FILE,
                              ("train_img_files", "train_img_concepts", "test_img_files", "test_img_concepts"))
    out = {}
    for split, folder in (("train", "training_images"), ("test", "test_images")):
        files, concepts = list(meta[f"{split}_img_files"]), list(meta[f"{split}_img_concepts"])
        if len(files) != len(concepts):
            raise DataError(f"{image_dir / EEG2_METADATA_FILE}: {len(files)} {split} files but "
                            f"{len(concepts)} concepts")
        out[split] = [image_dir / folder / str(c) / str(f) for c, f in zip(concepts, files)]
    missing = [p for p in out["train"][:1] + out["test"][:1] if not p.is_file()]
    if missing:
        logger.warning("THINGS-EEG2 image %s not found; image paths are kept but files are missing", missing[0])
    return out


def load_things_eeg2(subject_dir: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
                     montage: Montage | str | None = "things-eeg2") -> tuple[EpochsDataset, EpochsDataset]:
    """Training and test data of one THINGS-EEG2 subject.

    Parameters
    ----------
    subject_dir : path-like
        Folder with ``preprocessed_eeg_training.npy`` and ``preprocessed_eeg_test.npy`` (e.g. ``sub-01``),
        read with the restricted unpickler (see the module docstring).
    image_dir : path-like | None
        The image set folder (``image_metadata.npy``, ``training_images/``, ``test_images/``) to attach image
        paths; default ids ``train-00000`` ...
    montage : Montage | str | None
        See :func:`read_things_eeg2`.

    Returns
    -------
    train, test : EpochsDataset
    """
    subject_dir = Path(subject_dir)
    paths = things_eeg2_image_paths(image_dir) if image_dir is not None else {"train": None, "test": None}
    train = read_things_eeg2(subject_dir / EEG2_TRAIN_FILE, "train", montage=montage,
                             image_paths=paths["train"])
    test = read_things_eeg2(subject_dir / EEG2_TEST_FILE, "test", montage=train.montage,
                            image_paths=paths["test"])
    return train, test


# ---------------------------------------------------------------------------------------------- MEG
def _strip_ctf(name: str) -> str:
    return re.sub(r"-\d+$", "", name)


def montage_from_info(info: Any, *, tmin: float, n_times: int, name: str, picks: list[int] | None = None
                      ) -> Montage:
    """A :class:`Montage` from an :class:`mne.Info` (channel names without CTF ``-NNNN`` suffixes).

    Positions are the sensor positions transformed to head coordinates with ``info["dev_head_t"]``.
    """
    import mne

    picks = list(range(len(info["ch_names"]))) if picks is None else picks
    types = [mne.channel_type(info, i) for i in picks]
    pos = np.array([info["chs"][i]["loc"][:3] for i in picks], dtype=float)
    if any(t in ("mag", "grad") for t in types) and info.get("dev_head_t") is not None:
        pos = mne.transforms.apply_trans(info["dev_head_t"], pos)
    names = tuple(_strip_ctf(info["ch_names"][i]) for i in picks)
    return Montage(name, names, tuple(types), pos, float(info["sfreq"]), float(tmin), int(n_times))


def load_things_meg(path: str | os.PathLike, *, montage: Montage | str | None = None,
                    exclude_test_concepts: bool = True, image_root: str | os.PathLike | None = None,
                    out_dir: str | os.PathLike | None = None,
                    expect_channels: int | None = THINGS_MEG_N_CHANNELS) -> tuple[EpochsDataset, EpochsDataset]:
    """Training and test data from one THINGS-MEG ``preprocessed_P{n}-epo.fif`` file.

    Parameters
    ----------
    path : path-like
        The MNE epochs file.
    montage : Montage | str | None
        Default (None): channels, positions, rate and window read from the file. A montage (e.g. the
        ``things-meg`` preset) selects and orders channels by name (CTF suffixes such as ``-1609`` ignored)
        and must match the file's rate and window.
    exclude_test_concepts : bool
        Drop training images whose concept (image folder) occurs in the test set (the common split).
    image_root : path-like | None
        Folder the metadata ``image_path`` entries are relative to (the THINGS image set); default: kept as
        given in the file.
    out_dir : path-like | None
        Write the converted datasets there (``train/`` and ``test/``, :meth:`EpochsDataset.save` layout) as
        they are read, and return memory maps: the full THINGS-MEG training set (22k images x 271 x 281) does
        not fit in memory. Default: in memory (fine for subsets and tests).
    expect_channels : int | None
        With ``montage=None``: the number of MEG channels the file must have (the published files: 271); a
        partial file is an error naming it. None accepts any count (a subset or another system).

    Returns
    -------
    train, test : EpochsDataset
        Training: one repetition per image (``exp`` trials, averaged if an image occurs more often); test:
        the images of ``test`` trials with all their repetitions (NaN-padded if ragged). Unit ``"a.u."``.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; expected a THINGS-MEG preprocessed_P{{n}}-epo.fif file")
    try:
        epochs = mne.read_epochs(path, preload=False, verbose="error")
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: cannot read as MNE epochs ({type(err).__name__}: {err})") from err
    md = epochs.metadata
    if md is None or not {"trial_type", "image_path"} <= set(md.columns):
        cols = [] if md is None else list(md.columns)
        raise DataError(f"{path}: epochs metadata must have 'trial_type' and 'image_path' columns "
                        f"(THINGS-MEG sample attributes); found {cols}")
    picks = mne.pick_types(epochs.info, meg=True, ref_meg=False, exclude=[])
    if len(picks) == 0:
        raise DataError(f"{path}: no MEG channels in the file")
    file_montage = montage_from_info(epochs.info, tmin=float(epochs.tmin), n_times=len(epochs.times),
                                     name=f"things-meg-{path.stem.replace('-epo', '')}", picks=list(picks))
    if montage is None:
        montage = file_montage
        order = list(picks)
        if expect_channels is not None and len(picks) != expect_channels:
            raise DataError(f"{path}: {len(picks)} MEG channels, expected {expect_channels} (the published "
                            "THINGS-MEG files: 272 CTF sensors minus MRO11); a partial file? For a subset or "
                            "another system pass expect_channels=None")
    else:
        montage = get_montage(montage) if isinstance(montage, str) else montage
        index = {n: p for n, p in zip(file_montage.ch_names, picks)}
        missing = [c for c in montage.ch_names if c not in index]
        if missing:
            raise DataError(f"{path}: channels {missing[:10]}{' ...' if len(missing) > 10 else ''} of montage "
                            f"{montage.name!r} are not in the file")
        if abs(montage.sfreq - epochs.info["sfreq"]) > 1e-6 or montage.n_times != len(epochs.times) \
                or abs(montage.tmin - epochs.tmin) > 0.5 / montage.sfreq:
            raise DataError(f"{path}: {epochs.info['sfreq']:g} Hz, {epochs.tmin:.3f} s, {len(epochs.times)} "
                            f"samples; montage {montage.name!r} expects {montage.sfreq:g} Hz, {montage.tmin:.3f} s,"
                            f" {montage.n_times} samples")
        order = [index[c] for c in montage.ch_names]
    trial_type = md["trial_type"].astype(str).to_numpy()
    image = md["image_path"].astype(str).to_numpy()
    test_idx = np.flatnonzero(trial_type == "test")
    train_idx = np.flatnonzero(trial_type == "exp")
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DataError(f"{path}: expected 'exp' and 'test' trials in metadata['trial_type'], found "
                        f"{sorted(set(trial_type))}")

    def concept(p: str) -> str:
        return Path(p).parent.name

    test_images = sorted(set(image[test_idx]))
    if exclude_test_concepts:
        test_concepts = {concept(p) for p in test_images}
        train_idx = np.array([i for i in train_idx if concept(image[i]) not in test_concepts], dtype=int)
    train_images = sorted(set(image[train_idx]))

    def gather(indices: np.ndarray, names: list[str], split: str, average: bool) -> np.ndarray:
        slot = {n: k for k, n in enumerate(names)}
        counts = np.zeros(len(names), int)
        rep_of = {}
        for i in indices:
            k = slot[image[i]]
            rep_of[i] = 0 if average else counts[k]
            counts[k] += 1
        reps = 1 if average else int(counts.max())
        shape = (len(names), reps, len(order), len(epochs.times))
        if out_dir is not None:
            (Path(out_dir) / split).mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(Path(out_dir) / split / "epochs.npy", mode="w+", dtype=np.float32,
                                            shape=shape)
        else:
            out = np.empty(shape, np.float32)
        out[:] = 0.0 if average else np.nan
        for start in range(0, len(indices), 128):  # blockwise: the full file does not fit in memory
            block = np.asarray(indices[start: start + 128])
            x = epochs[block].get_data(picks=order).astype(np.float32)
            for j, i in enumerate(block):
                if average:
                    out[slot[image[i]], 0] += x[j]
                else:
                    out[slot[image[i]], rep_of[i]] = x[j]
        if average:
            out /= counts[:, None, None, None].astype(np.float32)
        return out

    root = Path(image_root) if image_root is not None else None
    to_path = (lambda p: root / p) if root is not None else (lambda p: p)  # noqa: E731
    meta = {"source": str(path), "dataset": "THINGS-MEG"}
    result = []
    for split, idx, names, avg in (("train", train_idx, train_images, True), ("test", test_idx, test_images, False)):
        arr = gather(idx, names, split, avg)
        ds = EpochsDataset(arr, montage, [to_path(p) for p in names], split, "a.u.", dict(meta))
        if out_dir is not None:
            if isinstance(arr, np.memmap):  # gather writes into out_dir
                arr.flush()
            del arr
            write_header(Path(out_dir) / split, montage, ds.image_paths, split, "a.u.", ds.meta, ds.epochs.shape)
            ds = EpochsDataset.load(Path(out_dir) / split)
        result.append(ds)
    return result[0], result[1]


__all__ = ["load_things_eeg2", "read_things_eeg2", "things_eeg2_image_paths", "load_things_meg",
           "montage_from_info", "THINGS_EEG2_CHANNELS"]
