"""THINGS-EEG2 and THINGS-MEG loaders on small fixtures written in the exact published layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vibe_rt.data.things import (
    load_things_eeg2,
    load_things_meg,
    read_things_eeg2,
    things_eeg2_image_paths,
)
from vibe_rt.errors import DataError
from vibe_rt.montage import THINGS_EEG2_CHANNELS, get_montage

TIMES = np.round(np.arange(-0.2, 0.8, 0.01), 2)  # as published: -0.2 .. 0.79 s at 100 Hz


def write_eeg2(path: Path, data: np.ndarray, ch_names=THINGS_EEG2_CHANNELS, times=TIMES, drop=None) -> Path:
    """``np.save`` of a dict, exactly like gifale95/eeg_encoding's preprocessing."""
    obj = {"preprocessed_eeg_data": data, "ch_names": list(ch_names), "times": np.asarray(times)}
    if drop:
        obj.pop(drop)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, obj, allow_pickle=True)
    return path


@pytest.fixture
def eeg2(tmp_path):
    rng = np.random.default_rng(0)
    sub = tmp_path / "sub-01"
    train = rng.standard_normal((6, 4, 17, 100))
    test = rng.standard_normal((3, 5, 17, 100))
    write_eeg2(sub / "preprocessed_eeg_training.npy", train)
    write_eeg2(sub / "preprocessed_eeg_test.npy", test)
    img = tmp_path / "images"
    train_concepts = ["00001_aardvark"] * 3 + ["00002_abacus"] * 3
    train_files = [f"{c.split('_', 1)[1]}_0{i}s.jpg" for i, c in enumerate(train_concepts)]
    test_concepts = ["00003_accordion", "00004_acorn", "00005_air_conditioner"]
    test_files = [f"{c.split('_', 1)[1]}_01b.jpg" for c in test_concepts]
    img.mkdir()
    np.save(img / "image_metadata.npy",
            {"train_img_files": train_files, "train_img_concepts": train_concepts,
             "test_img_files": test_files, "test_img_concepts": test_concepts}, allow_pickle=True)
    for folder, cs, fs in (("training_images", train_concepts, train_files), ("test_images", test_concepts,
                                                                              test_files)):
        for c, f in zip(cs, fs):
            (img / folder / c).mkdir(parents=True, exist_ok=True)
            (img / folder / c / f).write_bytes(b"\xff\xd8")
    return sub, img, train, test


def test_things_eeg2_loads_published_layout(eeg2):
    sub, img, train_x, test_x = eeg2
    train, test = load_things_eeg2(sub, img)
    assert train.epochs.shape == (6, 4, 17, 100) and test.epochs.shape == (3, 5, 17, 100)
    assert train.epochs.dtype == np.float32 and train.unit == "a.u."
    np.testing.assert_allclose(train.epochs, train_x.astype(np.float32))
    np.testing.assert_allclose(test.epochs, test_x.astype(np.float32))
    assert train.montage.ch_names == THINGS_EEG2_CHANNELS and train.montage.name == "things-eeg2"
    assert train.image_paths[0] == img / "training_images" / "00001_aardvark" / "aardvark_00s.jpg"
    assert test.image_paths[2].parts[-2:] == ("00005_air_conditioner", "air_conditioner_01b.jpg")
    assert all(p.is_file() for p in train.image_paths + test.image_paths)
    assert train.split == "train" and test.split == "test"
    # without images: ids
    tr, te = load_things_eeg2(sub)
    assert tr.image_paths[0] == "train-00000" and te.image_paths[-1] == "test-00002"
    paths = things_eeg2_image_paths(img)
    assert len(paths["train"]) == 6 and len(paths["test"]) == 3


def test_things_eeg2_converts_to_safe_format(eeg2, tmp_path):
    sub, img, train_x, _ = eeg2
    train, _ = load_things_eeg2(sub, img)
    from vibe_rt.data import EpochsDataset

    back = EpochsDataset.load(train.save(tmp_path / "converted" / "train"))
    np.testing.assert_array_equal(np.asarray(back.epochs), train.epochs)
    assert back.image_paths[3] == train.image_paths[3]


def test_data_import_cli_writes_train_and_test_folders(eeg2, tmp_path):
    from vibe_rt.cli import main
    from vibe_rt.data import EpochsDataset

    sub, img, train_x, test_x = eeg2
    out = tmp_path / "dataset"
    assert main(["data", "import", "things-eeg2", str(sub), "--images", str(img), "--out", str(out)]) == 0
    train, test = EpochsDataset.load(out / "train"), EpochsDataset.load(out / "test")
    np.testing.assert_allclose(np.asarray(train.epochs), train_x, rtol=1e-6)
    assert (test.n_images, test.n_reps, train.montage.name) == (3, 5, "things-eeg2")
    assert main(["data", "import", "things-eeg2", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing_key", "missing key"),
        ("shape3d", "4 dimensions"),
        ("channels", "channels"),
        ("n_channels", "lists 16 channels"),
        ("times", "times"),
        ("not_dict", "expected a dict"),
        ("garbage", "cannot read"),
    ],
)
def test_things_eeg2_malformed_files_name_the_file(tmp_path, kind, match):
    path = tmp_path / "sub-02" / "preprocessed_eeg_training.npy"
    good = np.zeros((6, 4, 17, 100))
    if kind == "missing_key":
        write_eeg2(path, good, drop="times")
    elif kind == "shape3d":
        write_eeg2(path, np.zeros((6, 17, 100)))
    elif kind == "channels":
        write_eeg2(path, good, ch_names=["Fp1"] + list(THINGS_EEG2_CHANNELS[1:]))
    elif kind == "n_channels":
        write_eeg2(path, good, ch_names=THINGS_EEG2_CHANNELS[:16])
    elif kind == "times":
        write_eeg2(path, good, times=np.round(np.arange(-0.1, 0.9, 0.01), 2))
    elif kind == "not_dict":
        path.parent.mkdir(parents=True)
        np.save(path, good)
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=match) as err:
        read_things_eeg2(path)
    assert str(path) in str(err.value)


class _CreatesFile:
    """A pickled object whose unpickling would call ``open(path, "w")``: what a crafted .npy can do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _RunsShell:
    """One whose unpickling would run a shell command that creates a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload, refused", [(_CreatesFile, "io.open"), (_RunsShell, ".system")])
def test_things_eeg2_crafted_pickle_is_refused_not_executed(tmp_path, payload, refused):
    """np.load(allow_pickle=True) would create the file; the loader refuses the global before calling it."""
    marker = tmp_path / "executed"
    sub = tmp_path / "sub-01"
    write_eeg2(sub / "preprocessed_eeg_training.npy", np.zeros((2, 1, 17, 100)))
    obj = {"preprocessed_eeg_data": payload(marker), "ch_names": list(THINGS_EEG2_CHANNELS), "times": TIMES}
    np.save(sub / "preprocessed_eeg_test.npy", obj, allow_pickle=True)
    with pytest.raises(DataError, match=refused) as err:
        load_things_eeg2(sub)
    message = str(err.value)
    assert "preprocessed_eeg_test.npy" in message and "not a THINGS-EEG2 file and was not executed" in message
    assert not marker.exists()
    img = tmp_path / "images"
    img.mkdir()
    np.save(img / "image_metadata.npy", {"train_img_files": [payload(marker)]}, allow_pickle=True)
    with pytest.raises(DataError, match="image_metadata.npy refers to"):
        things_eeg2_image_paths(img)
    assert not marker.exists()
    # the control: numpy's own loader does run it
    np.load(sub / "preprocessed_eeg_test.npy", allow_pickle=True)
    assert marker.exists()


def test_things_eeg2_published_value_types_still_load(tmp_path):
    """Everything np.save puts in the published dicts (arrays of floats and strings, lists, numpy scalars and
    strings, tuples, nested containers) passes the restricted unpickler unchanged."""
    import collections

    from vibe_rt.data.things import _load_npy_dict

    obj = {"preprocessed_eeg_data": np.arange(24, dtype=np.float64).reshape(1, 2, 3, 4),
           "ch_names": np.array(THINGS_EEG2_CHANNELS[:3]), "times": [np.float32(0.1), 0.2],
           "meta": collections.OrderedDict(a=(1, 2.5, "x", b"y", None, True, 1j), b={1, 2}, c=frozenset("z"),
                                           d=np.str_("Oz"), e=np.int64(7), f=np.array([np.zeros(2), "s"], object))}
    path = tmp_path / "published.npy"
    np.save(path, obj, allow_pickle=True)
    back = _load_npy_dict(path, ("preprocessed_eeg_data", "ch_names", "times"))
    np.testing.assert_array_equal(back["preprocessed_eeg_data"], obj["preprocessed_eeg_data"])
    assert list(back["ch_names"]) == list(THINGS_EEG2_CHANNELS[:3]) and back["times"] == obj["times"]
    assert back["meta"]["a"] == obj["meta"]["a"] and back["meta"]["b"] == {1, 2} and back["meta"]["e"] == 7
    assert isinstance(back["meta"], collections.OrderedDict) and back["meta"]["f"][1] == "s"
    np.save(tmp_path / "masked.npy", {"preprocessed_eeg_data": np.ma.array([1.0])}, allow_pickle=True)
    with pytest.raises(DataError, match="numpy.ma.core"):  # a numpy global outside the published types
        _load_npy_dict(tmp_path / "masked.npy", ("preprocessed_eeg_data",))


def test_things_eeg2_custom_channels_with_montage_none(tmp_path):
    names = ["O1", "Oz", "O2", "Pz"]
    path = write_eeg2(tmp_path / "preprocessed_eeg_test.npy", np.ones((3, 2, 4, 100)), ch_names=names)
    ds = read_things_eeg2(path, montage=None)
    assert ds.montage.ch_names == tuple(names) and ds.montage.sfreq == pytest.approx(100.0)
    assert ds.split == "test" and ds.montage.tmin == pytest.approx(-0.2)
    with pytest.raises(DataError, match="preprocessed_eeg_training.npy does not exist"):
        load_things_eeg2(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------ MEG
def test_things_meg_preset_is_the_recorded_sensor_set():
    """THINGS-MEG records 272 of the CTF-275 sensors (no MLF25, MRF43, MRO13) and its preprocessing drops MRO11."""
    names = set(get_montage("things-meg").ch_names)
    assert len(names) == 271
    assert not names & {"MLF25", "MRF43", "MRO13", "MRO11"}
    assert {"MZO01", "MZO02", "MZO03", "MZP01", "MLO11", "MRO12", "MRO14"} <= names


def write_things_meg(path: Path, *, metadata: bool = True, n_ch: int | None = None) -> dict:
    """A small ``preprocessed_P1-epo.fif``: CTF-style names (``-1609`` suffix), 200 Hz, -0.1..1.3 s."""
    import mne
    import pandas as pd

    mont = get_montage("things-meg")
    info = mont.create_info()
    names = [f"{n}-1609" for n in mont.ch_names]
    mne.rename_channels(info, dict(zip(mont.ch_names, names)))
    if n_ch is not None:
        info = mne.pick_info(info, list(range(n_ch)))
    rows = []
    for i in range(6):  # training images, one presentation each
        rows.append(("exp", f"images_meg/concept{i % 3}/concept{i % 3}_{i:02d}s.jpg"))
    for _ in range(3):  # test images, repeated
        for j in range(2):
            rows.append(("test", f"images_test_meg/testconcept{j}/testconcept{j}_01b.jpg"))
    rows.append(("catch", "images_catch_meg/catch.jpg"))
    rows.append(("exp", "images_meg/testconcept0/testconcept0_05s.jpg"))  # a test concept in training
    rng = np.random.default_rng(1)
    data = rng.standard_normal((len(rows), len(info["ch_names"]), 281)) * 1e-13
    for k, (_, p) in enumerate(rows):
        data[k] += sum(p.encode()) % 7 * 1e-13  # image-specific offset to check grouping
    events = np.c_[np.arange(len(rows)) * 300, np.zeros(len(rows), int), np.arange(1, len(rows) + 1)]
    md = pd.DataFrame({"trial_type": [r[0] for r in rows], "image_path": [r[1] for r in rows],
                       "session_nr": 1, "things_category_nr": np.arange(len(rows))}) if metadata else None
    ep = mne.EpochsArray(data, info, events, tmin=-0.1, metadata=md, verbose="error")
    ep.save(path, overwrite=True, verbose="error")
    return {"rows": rows, "data": data, "names": names}


def test_things_meg_loads_fif_with_metadata(tmp_path):
    path = tmp_path / "preprocessed_P1-epo.fif"
    fx = write_things_meg(path)
    train, test = load_things_meg(path)
    assert test.epochs.shape == (2, 3, 271, 281)  # 2 test images x 3 repetitions
    assert train.epochs.shape == (6, 1, 271, 281)  # the test-concept training image is excluded
    assert train.montage.n_channels == 271 and train.montage.ch_names[0] == fx["names"][0].split("-")[0]
    assert train.montage.sfreq == 200.0 and train.montage.n_times == 281
    assert train.montage.tmin == pytest.approx(-0.1) and train.unit == "a.u."
    rows = fx["rows"]
    j = [k for k, r in enumerate(rows) if r[1] == test.image_paths[0]]
    np.testing.assert_allclose(test.epochs[0], fx["data"][j].astype(np.float32), rtol=1e-6)
    assert all("catch" not in str(p) for p in train.image_paths + test.image_paths)
    train_all, _ = load_things_meg(path, exclude_test_concepts=False)
    assert train_all.n_images == 7
    # preset montage: channels matched without the CTF suffix; memory-mapped output folder
    tr, te = load_things_meg(path, montage="things-meg", out_dir=tmp_path / "conv", image_root=tmp_path)
    assert tr.montage.name == "things-meg" and isinstance(te.epochs, np.memmap)
    np.testing.assert_allclose(np.asarray(te.epochs), test.epochs, rtol=1e-6)
    assert str(te.image_paths[0]).startswith(str(tmp_path))


def test_things_meg_malformed(tmp_path):
    bad = tmp_path / "preprocessed_P2-epo.fif"
    write_things_meg(bad, metadata=False)
    with pytest.raises(DataError, match="trial_type") as err:
        load_things_meg(bad)
    assert str(bad) in str(err.value)
    partial = tmp_path / "preprocessed_P3-epo.fif"
    write_things_meg(partial, n_ch=100)
    with pytest.raises(DataError, match="not in the file") as err:
        load_things_meg(partial, montage="things-meg")
    assert str(partial) in str(err.value)
    with pytest.raises(DataError, match="100 MEG channels, expected 271") as err:
        load_things_meg(partial)
    assert str(partial) in str(err.value)
    subset, _ = load_things_meg(partial, expect_channels=None)  # a subset, asked for
    assert subset.montage.n_channels == 100
    with pytest.raises(DataError, match="does not exist"):
        load_things_meg(tmp_path / "preprocessed_P9-epo.fif")
    junk = tmp_path / "junk-epo.fif"
    junk.write_bytes(b"nope")
    with pytest.raises(DataError, match="junk-epo.fif"):
        load_things_meg(junk)
