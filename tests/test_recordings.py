"""Recording loader: real FIF (stim channel), BrainVision (mne.export via pybv) and a hand-written XDF file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from vibe_rt.data.recordings import load_recording, normalise_code, read_recording, read_stimulus_log
from vibe_rt.errors import DataError
from vibe_rt.montage import THINGS_EEG2_CHANNELS, get_montage

EEG = get_montage("things-eeg2")
FS = 500.0


def erp_for(image: int, fs: float = FS) -> np.ndarray:
    """A distinct evoked waveform per image, (17, n) volts, 0..0.8 s after onset."""
    t = np.arange(int(0.8 * fs)) / fs
    peak = 0.1 + 0.03 * image
    w = np.exp(-0.5 * ((t - peak) / 0.02) ** 2) * 10e-6 * (1 + image)
    return np.outer(np.linspace(0.5, 1.5, 17), w)


def make_session(n_images: int = 3, reps=(3, 3, 3), seed: int = 0, fs: float = FS):
    """Continuous data with ERPs at known onsets; returns (data (17, n), onsets (s), image index per event)."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([[i] * r for i, r in enumerate(reps)])
    rng.shuffle(order)
    onsets = 1.0 + 1.2 * np.arange(len(order)) + rng.uniform(0, 0.1, len(order))
    n = int((onsets[-1] + 2.0) * fs)
    data = rng.standard_normal((17, n)) * 0.2e-6
    for img, on in zip(order, onsets):
        s = int(round(on * fs))
        w = erp_for(img, fs)
        data[:, s: s + w.shape[1]] += w
    return data, onsets, order


def write_log(path: Path, onsets, order, codes=None, sep=",") -> Path:
    lines = [sep.join(["event", "onset", "image"])]
    for k, (on, img) in enumerate(zip(onsets, order)):
        code = codes[k] if codes is not None else str(img + 1)
        lines.append(sep.join([code, f"{on:.4f}", f"stim/img{img}.png"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def check_epochs(ds, order, reps_expected):
    assert ds.epochs.shape == (len(set(order)), reps_expected, 17, 100)
    avg = ds.average()
    t = EEG.times
    for k, p in enumerate(ds.image_paths):
        img = int(Path(p).stem.replace("img", ""))
        ref = erp_for(img, 100.0)  # the injected waveform at the model rate, from onset
        r = np.corrcoef(avg[k][:, t >= 0][:, : ref.shape[1]].ravel(), ref[:, : (t >= 0).sum()].ravel())[0, 1]
        assert r > 0.95, (p, r)
        peak = t[np.argmax(avg[k][16])]
        assert abs(peak - (0.1 + 0.03 * img)) <= 0.011, (p, peak)  # right image, right time
    x = np.asarray(ds.epochs)
    x = x[~np.isnan(x[:, :, 0, 0])]  # present repetitions
    assert np.abs(x[..., t <= 1e-9].mean(-1)).max() < 1e-12  # baseline-corrected on -0.2..0 s


def test_fif_with_stim_channel_and_log(tmp_path):
    import mne

    data, onsets, order = make_session()
    info = mne.create_info(list(THINGS_EEG2_CHANNELS) + ["STI 014"], FS, ["eeg"] * 17 + ["stim"])
    stim = np.zeros((1, data.shape[1]))
    for img, on in zip(order, onsets):
        stim[0, int(round(on * FS)): int(round(on * FS)) + 5] = img + 1
    raw = mne.io.RawArray(np.vstack([data, stim]), info, verbose="error")
    path = tmp_path / "rec_raw.fif"
    raw.save(path, verbose="error")
    log = write_log(tmp_path / "log.csv", onsets, order)
    ds = load_recording(path, log, montage="things-eeg2")
    check_epochs(ds, order, 3)
    assert ds.image_paths[0].parent == tmp_path / "stim" and ds.unit == "V" and ds.montage.sfreq == 100.0
    # without a log: one "image" per trigger code
    ids = load_recording(path, montage=EEG)
    assert sorted(ids.image_paths) == ["event-1", "event-2", "event-3"] and ids.n_reps == 3
    rec = read_recording(path)
    assert rec.codes[:3] == [str(i + 1) for i in order[:3]]
    np.testing.assert_allclose(rec.onsets, np.round(onsets * FS) / FS, atol=1e-9)


def test_an_rsvp_experiment_log_is_a_stimulus_log(tmp_path):
    """The log that `vibe-rt experiment rsvp` writes (comment lines, a `code` column, onsets on the LSL clock)
    epochs a recording of the same run by its trigger codes."""
    import mne

    from vibe_rt.experiment.log import ExperimentLog

    data, onsets, order = make_session(seed=2)
    info = mne.create_info(list(THINGS_EEG2_CHANNELS) + ["STI 014"], FS, ["eeg"] * 17 + ["stim"])
    stim = np.zeros((1, data.shape[1]))
    for img, on in zip(order, onsets):
        stim[0, int(round(on * FS)): int(round(on * FS)) + 5] = img + 1
    path = tmp_path / "rec_raw.fif"
    mne.io.RawArray(np.vstack([data, stim]), info, verbose="error").save(path, verbose="error")
    log = ExperimentLog(tmp_path / "rsvp.tsv", header={"vibe_rt_experiment": "rsvp", "refresh_hz": 60.0})
    for k, (img, on) in enumerate(zip(order, onsets)):
        log.write(trial=k, image=f"stim/img{img}.png", code=int(img) + 1, actual_onset_lsl=5000.0 + on,
                  planned_onset=5000.0 + on, dropped=0, marker="stim")
    log.comment("n_dropped", 0)
    log.close()
    rows = read_stimulus_log(tmp_path / "rsvp.tsv")
    assert len(rows) == len(order) and rows[0]["event"] == str(order[0] + 1) and rows[0]["onset"] is None
    check_epochs(load_recording(path, tmp_path / "rsvp.tsv", montage="things-eeg2"), order, 3)


def test_brainvision_export_annotations_ragged(tmp_path):
    import mne

    pytest.importorskip("pybv")
    data, onsets, order = make_session(reps=(3, 2, 3), seed=1)
    info = mne.create_info(list(THINGS_EEG2_CHANNELS), FS, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, 0.002, [f"Stimulus/S  {i + 1}" for i in order]))
    vhdr = tmp_path / "rec.vhdr"
    mne.export.export_raw(vhdr, raw, fmt="brainvision", overwrite=True, verbose="error")
    assert vhdr.is_file() and (tmp_path / "rec.eeg").is_file()
    log = write_log(tmp_path / "log.tsv", onsets, order, sep="\t")
    ds = load_recording(vhdr, log)  # ragged='min': 2 repetitions kept per image
    check_epochs(ds, order, 2)
    full = load_recording(vhdr, log, ragged="nan")
    assert full.n_reps == 3 and np.isnan(np.asarray(full.epochs)).any()
    check_epochs(full, order, 3)


def test_log_matched_by_onset_when_sequences_differ(tmp_path):
    import mne

    data, onsets, order = make_session()
    info = mne.create_info(list(THINGS_EEG2_CHANNELS) + ["STI 014"], FS, ["eeg"] * 17 + ["stim"])
    stim = np.zeros((1, data.shape[1]))
    for img, on in zip(order, onsets):
        stim[0, int(round(on * FS)): int(round(on * FS)) + 5] = img + 1
    stim[0, 100:105] = 1  # a stray trigger before the experiment started
    path = tmp_path / "rec_raw.fif"
    mne.io.RawArray(np.vstack([data, stim]), info, verbose="error").save(path, verbose="error")
    log = write_log(tmp_path / "log.csv", onsets + 0.004, order)  # onsets logged 4 ms late
    check_epochs(load_recording(path, log), order, 3)
    # a log without onsets that does not line up is an error naming the log
    (tmp_path / "short.csv").write_text("event,image\n1,a.png\n")
    with pytest.raises(DataError, match="short.csv"):
        load_recording(path, tmp_path / "short.csv")


def test_errors_name_the_file(tmp_path):
    import mne

    with pytest.raises(DataError, match="does not exist"):
        load_recording(tmp_path / "nope.fif")
    raw = mne.io.RawArray(np.zeros((2, 1000)), mne.create_info(["O1", "O2"], FS, "eeg"), verbose="error")
    path = tmp_path / "two_raw.fif"
    raw.save(path, verbose="error")
    with pytest.raises(DataError, match="no events") as err:
        load_recording(path)
    assert "two_raw.fif" in str(err.value)
    raw.set_annotations(mne.Annotations([0.5], 0.0, ["1"]))
    raw.save(path, overwrite=True, verbose="error")
    with pytest.raises(DataError, match=r"channels \[.*Pz.*\] of montage 'things-eeg2'"):
        load_recording(path)
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match="'image' column"):
        read_stimulus_log(tmp_path / "bad.csv")
    assert normalise_code("Stimulus/S  12") == "12" and normalise_code(7) == "7" and normalise_code("5.0") == "5"
    assert normalise_code("img_003") == "img_003"


# -------------------------------------------------------------------------------------------- XDF
def _chunk(tag: int, content: bytes) -> bytes:
    length = len(content) + 2  # the tag counts
    return struct.pack("<BI", 4, length) + struct.pack("<H", tag) + content


def _varlen(n: int) -> bytes:
    return struct.pack("<BI", 4, n)


def _stream_xml(name, kind, n_ch, srate, fmt, labels=(), unit="microvolts") -> bytes:
    chans = "".join(f"<channel><label>{lab}</label><unit>{unit}</unit><type>{kind}</type></channel>"
                    for lab in labels)
    return (f'<?xml version="1.0"?><info><name>{name}</name><type>{kind}</type><channel_count>{n_ch}'
            f"</channel_count><nominal_srate>{srate}</nominal_srate><channel_format>{fmt}</channel_format>"
            f"<source_id>{name}-id</source_id><version>1.1</version><created_at>0</created_at>"
            f"<desc><channels>{chans}</channels></desc></info>").encode()


def write_xdf(path: Path, data_uv: np.ndarray, t0: float, fs: float, markers: list[tuple[float, str]]) -> None:
    """A minimal XDF 1.0 file (FileHeader, two StreamHeaders, Samples, ClockOffsets, StreamFooters).

    Format per the XDF specification (sccn/xdf wiki): magic ``XDF:``, then chunks
    ``[NumLengthBytes][Length][Tag uint16][content]``; numeric samples as little-endian values with an
    optional 8-byte timestamp each, string samples as ``[NumLengthBytes][Length][bytes]`` per channel.
    """
    out = bytearray(b"XDF:")
    out += _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    n_ch, n = data_uv.shape
    out += _chunk(2, struct.pack("<I", 1) + _stream_xml("vibe-eeg", "EEG", n_ch, fs, "float32",
                                                          THINGS_EEG2_CHANNELS))
    out += _chunk(2, struct.pack("<I", 2) + _stream_xml("vibe-markers", "Markers", 1, 0, "string"))
    step = 1000
    for start in range(0, n, step):
        body = bytearray(struct.pack("<I", 1) + _varlen(min(step, n - start)))
        for i in range(start, min(start + step, n)):
            body += struct.pack("<Bd", 8, t0 + i / fs) + data_uv[:, i].astype("<f4").tobytes()
        out += _chunk(3, bytes(body))
    body = bytearray(struct.pack("<I", 2) + _varlen(len(markers)))
    for ts, text in markers:
        enc = text.encode()
        body += struct.pack("<Bd", 8, ts) + _varlen(len(enc)) + enc
    out += _chunk(3, bytes(body))
    for sid in (1, 2):
        out += _chunk(4, struct.pack("<Idd", sid, t0, 0.0))
        out += _chunk(4, struct.pack("<Idd", sid, t0 + n / fs, 0.0))
    footer = (f'<?xml version="1.0"?><info><first_timestamp>{t0}</first_timestamp><last_timestamp>'
              f"{t0 + (n - 1) / fs}</last_timestamp><sample_count>{n}</sample_count></info>").encode()
    out += _chunk(6, struct.pack("<I", 1) + footer)
    out += _chunk(6, struct.pack("<I", 2) + b'<?xml version="1.0"?><info></info>')
    path.write_bytes(bytes(out))


def test_xdf_with_marker_stream(tmp_path):
    pytest.importorskip("pyxdf")
    fs = 250.0
    data, onsets, order = make_session(seed=2, fs=fs)
    t0 = 5000.0  # LSL clock
    names = [f"img{i}" for i in order]
    xdf = tmp_path / "session.xdf"
    write_xdf(xdf, data * 1e6, t0, fs, [(t0 + on, name) for on, name in zip(onsets, names)])
    rec = read_recording(xdf)
    assert rec.codes == names and rec.t0 == pytest.approx(t0)
    assert rec.raw.info["sfreq"] == pytest.approx(fs, rel=1e-3)
    np.testing.assert_allclose(rec.raw.get_data()[0, :100], data[0, :100], rtol=1e-5, atol=1e-12)  # µV -> V
    # log with marker text as event and LSL timestamps as onsets
    lines = ["event,onset,image"] + [f"{n},{t0 + on:.5f},stim/{n}.png" for n, on in zip(names, onsets)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    ds = load_recording(xdf, tmp_path / "log.csv")
    check_epochs(ds, order, 3)


def test_offline_comparison_of_an_xdf_recording(tmp_path):
    """`compare --live-file session.xdf`: signal and marker streams of an XDF file (LSL timestamps) compared with
    the known per-image responses: every event found, no latency, the ERPs match."""
    pytest.importorskip("pyxdf")
    from vibe_rt.compare import DictSynth, compare_offline

    fs = 250.0
    data, onsets, order = make_session(seed=3, fs=fs)
    t0 = 7000.0
    xdf = tmp_path / "session.xdf"
    write_xdf(xdf, data * 1e6, t0, fs, [(t0 + on, f"img{i}") for on, i in zip(onsets, order)])
    pre = int(round(-EEG.tmin * EEG.sfreq))
    synth = {f"img{i}": np.concatenate([np.zeros((17, pre)), erp_for(i, EEG.sfreq)], axis=1)[:, : EEG.n_times]
             for i in set(order)}
    s = compare_offline(xdf, EEG, DictSynth(synth)).comparator.summary()
    assert s["n_events"] == len(order) and s["n_lost"] == 0 and s["n_keys"] == 3
    assert abs(s["latency_s"]) < 0.5 / EEG.sfreq and s["erp_r"] > 0.95


def test_a_vibe_rt_recording_names_its_images(tmp_path):
    """`vibe-rt stream --record`: the .vmrk names each stimulus's image and the events sidecar (BIDS columns) holds
    every marker once its sample is written; compare reads the sidecar in preference, keeping only the stimuli whose
    response is in the signal; a BIDS-named sidecar (sub-01_task-x_events.tsv) is found too."""
    from vibe_rt.compare.offline import rec_markers_source, recording_markers, session_markers
    from vibe_rt.data.recordings import events_sidecar, read_events_sidecar, split_description
    from vibe_rt.stream.record import EVENTS_COLUMNS, BrainVisionWriter

    path = tmp_path / "rec.vhdr"
    writer = BrainVisionWriter(path, ["Oz", "Pz"], ["microvolts"] * 2, 100.0, t0=10.0)
    writer.marker(10.1051, "S  3", "Stimulus", {"image": "x,y.png", "status": "ok", "duration": 0.5, "code": 3}, 3)
    writer.marker(10.2, "dropped-late", "Comment", {"image": "z.png", "status": "late", "code": 4})
    writer.marker(10.3, "S  5", "Stimulus", {"image": "w.png", "status": "clipped"}, 5)
    writer.marker(10.35, "R 99", "Response", {"kind": "response", "key": "space", "code": 99999}, 99999)
    writer.write(np.zeros((15, 2), np.float32))  # holds the first marker's sample only
    sidecar = tmp_path / "rec_events.tsv"
    lines = sidecar.read_text().splitlines()
    # the sidecar keeps the exact name (a comma is a .vmrk field separator, so the .vmrk has a semicolon)
    assert lines == ["\t".join(EVENTS_COLUMNS), "0.105100\t0.5\tstimulus\tx,y.png\t3\tok"]
    writer.write(np.zeros((30, 2), np.float32))
    writer.close()
    rows = sidecar.read_text().splitlines()[1:]
    assert [r.split("\t")[2:] for r in rows] == [["stimulus", "x,y.png", "3", "ok"],
                                                 ["comment", "z.png", "4", "late"],
                                                 ["stimulus", "w.png", "5", "clipped"],
                                                 ["response", "n/a", "99999", "n/a"]]
    assert rows[1].split("\t")[1] == "n/a"  # no duration given
    rec = read_recording(path)
    descriptions = [v for _, v in rec.event_markers]
    assert descriptions[0] == "Stimulus/S  3: x;y.png" and split_description(descriptions[0]) == (3, "x;y.png")
    assert normalise_code(descriptions[0]) == "3"
    assert recording_markers(rec)[0][1:] == ("x;y.png", {"image": "x;y.png", "code": 3,
                                                         "description": "Stimulus/S  3: x;y.png"})
    assert events_sidecar(path) == sidecar and rec_markers_source(rec).startswith("events sidecar")
    kept = session_markers(rec)
    assert [(round(t, 4), key) for t, key, _ in kept] == [(0.1051, "x,y.png"), (0.3, "w.png")]
    assert [r["code"] for r in read_events_sidecar(sidecar)] == [3, 5]
    bids = tmp_path / "sub-01_task-x_events.tsv"
    bids.write_text("onset\tduration\ttrial_type\n1.5\t0\tn/a\n")
    assert events_sidecar(tmp_path / "sub-01_task-x_eeg.vhdr") == bids
    assert read_events_sidecar(bids)[0]["onset"] == 1.5
    (tmp_path / "bad_events.tsv").write_text("time\timage\n1\ta\n")
    with pytest.raises(DataError, match="needs an 'onset' column"):
        read_events_sidecar(tmp_path / "bad_events.tsv")
