"""The simulator's physiology, property by property, with the numbers docs/simulator.md states and cites.

Responses are computed on the things-eeg2 channels at 1 kHz (``Montage.with_window``) so that latencies are
measured to the millisecond; the image spans 7 deg (THINGS-EEG2). "Peak" = the largest |ERP| over the
occipital channels O1, Oz, O2, POz, PO3, PO4, PO7, PO8.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from vibe_rt.data import CategoryLabel, EvokedModel, SimulationConfig, simulate_dataset
from vibe_rt.data.categories import read_category_table
from vibe_rt.data.paradigm import PARADIGMS, get_paradigm, neighbour_kernel
from vibe_rt.data.stimuli import checkerboard, make_stimulus, write_image
from vibe_rt.errors import ConfigError, DataError
from vibe_rt.montage import get_montage

EEG = get_montage("things-eeg2")
FINE = EEG.with_window(1000.0, -0.2, 1000)
CH = list(EEG.ch_names)
OCC = [CH.index(c) for c in ("O1", "Oz", "O2", "POz", "PO3", "PO4", "PO7", "PO8")]
T = FINE.times
DEG = 7.0


@pytest.fixture(scope="module")
def model() -> EvokedModel:
    return EvokedModel(FINE)


def _grid(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n) + 0.5) / n * 2 - 1
    return np.meshgrid(c, -c)


def _grey(lum: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(lum, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def uniform(value: int) -> np.ndarray:
    return np.full((128, 128, 3), value, np.uint8)


def grating(cpd: float, contrast: float = 1.0) -> np.ndarray:
    x, _ = _grid()
    return _grey(0.5 + 0.5 * contrast * np.cos(2 * np.pi * cpd * x * DEG / 2))


def peak(erp: np.ndarray) -> float:
    """Largest |ERP| over the occipital channels, in uV."""
    return float(np.abs(erp[OCC]).max() * 1e6)


def extreme(erp: np.ndarray, ch: str, t0: float, t1: float, sign: int) -> tuple[float, float]:
    """Most positive (sign 1) or negative (-1) value of ``ch`` in t0..t1 s: (uV, ms)."""
    sel = (T >= t0) & (T <= t1)
    w = erp[CH.index(ch), sel] * sign
    i = int(np.argmax(w))
    return float(sign * w[i] * 1e6), float(T[sel][i] * 1e3)


# ------------------------------------------------------------------------------------------ 1. luminance
def test_increments_and_decrements_differ_and_uniform_fields_are_weak(model):
    """ON/OFF asymmetry: a black field (decrement) responds earlier, larger and with another topography than a
    white one (increment); both are flash-like and clearly smaller than a checkerboard of the same mean."""
    black, white = model.evoked(uniform(0)), model.evoked(uniform(255))
    check = model.evoked(checkerboard(0.5))
    assert np.corrcoef(black.ravel(), white.ravel())[0, 1] < 0.9
    gfp_b, gfp_w = np.sqrt((black[OCC] ** 2).mean(0)), np.sqrt((white[OCC] ** 2).mean(0))
    early = (T >= 0.04) & (T <= 0.2)
    lat_b, lat_w = T[early][np.argmax(gfp_b[early])], T[early][np.argmax(gfp_w[early])]
    assert 0.06 <= lat_b <= 0.085 and lat_w - lat_b >= 0.03  # OFF leads (measured: 69 vs 114 ms)
    assert peak(black) > 1.4 * peak(white)  # OFF dominance (measured: 5.2 vs 3.2 uV)
    topo_b, topo_w = black[:, np.argmax(gfp_b)], white[:, np.argmax(gfp_w)]
    assert np.corrcoef(topo_b, topo_w)[0, 1] < 0.5  # midline-striate (black) vs lateral (white)
    assert peak(black) < 0.7 * peak(check) and peak(white) < 0.45 * peak(check)
    post = (T >= 0) & (T <= 0.3)
    rms = [np.sqrt(np.mean(e[OCC][:, post] ** 2)) for e in (black, white, check)]
    assert rms[0] < 0.5 * rms[2] and rms[1] < 0.4 * rms[2]
    assert peak(model.evoked(uniform(128))) < 0.01  # the adaptation level itself evokes nothing


# ------------------------------------------------------------------------------- 2. contrast, size, SF
def test_contrast_response_half_saturates_at_10_to_30_percent(model):
    contrasts = np.array([0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0])
    amp = np.array([peak(model.evoked(checkerboard(0.5, contrast=c))) for c in contrasts])
    assert np.all(np.diff(amp) > 0)
    c50 = float(np.exp(np.interp(amp[-1] / 2, amp, np.log(contrasts))))
    assert 0.10 <= c50 <= 0.30  # measured: 0.17 (Campbell & Maffei 1970; VEP Naka-Rushton fits)
    assert amp[-1] / amp[-2] < 1.1  # saturated at high contrast


def test_area_summation_keeps_growing_over_the_image(model):
    radii = [0.03, 0.1, 0.25, 0.5, 1.0]  # disc radius, fraction of the image half-width (3.5 deg)
    amp = np.array([peak(model.evoked(checkerboard(0.5, radius=r))) for r in radii])
    assert np.all(np.diff(amp) > 0)
    assert amp[0] < 0.1 * amp[-1]  # a 0.1-deg disc is a weak stimulus (measured: 4 %)
    assert amp[3] > 2.5 * amp[1]  # still growing between 10 % and 50 % of the field (measured: x3.7)
    assert amp[4] > 1.2 * amp[3]  # and beyond (measured: x1.45)


def test_spatial_frequency_tuning_is_band_pass_peaking_at_3_to_6_cpd(model):
    sfs = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    amp = np.array([peak(model.evoked(grating(f, 0.2))) for f in sfs])
    best = sfs[int(np.argmax(amp))]
    assert 3.0 <= best <= 6.0  # measured: 4 cycles/deg
    assert amp[0] < 0.3 * amp.max() and amp[-1] < 0.8 * amp.max()  # falls on both sides
    full = np.array([peak(model.evoked(grating(f, 1.0))) for f in (0.5, 4.0)])
    assert full[0] < 0.6 * full[1]  # still band-pass at full contrast


# -------------------------------------------------------------------------------------- 3. amplitudes
def test_pattern_onset_components_match_iscev_latencies_and_amplitudes(model):
    """Full-field 0.5-deg checkerboard onset at Oz: C1 (+, ~75 ms), C2 (-, ~125 ms), C3 (+, ~150 ms)."""
    erp = model.evoked(checkerboard(0.5))
    c1, t1 = extreme(erp, "Oz", 0.055, 0.1, 1)
    c2, t2 = extreme(erp, "Oz", 0.1, 0.145, -1)
    c3, t3 = extreme(erp, "Oz", 0.14, 0.2, 1)
    assert 65 <= t1 <= 90 and 110 <= t2 <= 140 and 140 <= t3 <= 175  # measured: 77, 126, 155 ms
    assert 3 < c1 < 12 and -12 < c2 < -3 and 1.5 < c3 < 10  # measured: +6.7, -7.8, +2.8 uV
    p1, tp1 = extreme(erp, "PO8", 0.08, 0.14, 1)
    n1, tn1 = extreme(erp, "PO8", 0.14, 0.22, -1)
    assert 95 <= tp1 <= 125 and 2 < p1 < 10 and 150 <= tn1 <= 200 and -10 < n1 < -2


def test_single_natural_images_are_smaller_than_checkerboards(model):
    check = peak(model.evoked(checkerboard(0.5)))
    peaks = []
    for kind in ("face", "body", "object", "scene"):
        for i in range(6):
            img, p = make_stimulus(np.random.default_rng([7, i]), 128, kind)
            peaks.append(peak(model.evoked(img, p["category"]["name"])))
    med = float(np.median(peaks))
    assert 1.5 < med < 6.0 and med < 0.7 * check  # measured: median 4.6 uV vs 8.5 uV


# ------------------------------------------------------------------------------------ 4. categories
def _category_set(model: EvokedModel, kind: str, labelled: bool = True, n: int = 16) -> np.ndarray:
    out = []
    for i in range(n):
        img, p = make_stimulus(np.random.default_rng([11, i]), 128, kind)
        out.append(model.evoked(img, p["category"]["name"] if labelled else None))
    return np.array(out)


def test_face_n170_is_larger_for_faces_right_lateralised_and_needs_the_label(model):
    faces, objects = _category_set(model, "face"), _category_set(model, "object")
    f8, tf8 = extreme(faces.mean(0), "P8", 0.14, 0.2, -1)
    o8, _ = extreme(objects.mean(0), "P8", 0.14, 0.2, -1)
    assert 160 <= tf8 <= 185 and f8 < 1.5 * o8  # measured: -6.2 uV at 175 ms vs -3.8 uV (Bentin et al. 1996)
    unlabelled = _category_set(model, "face", labelled=False)
    diff = faces - unlabelled  # the face-selective part: declared, not computed from pixels
    d8, td8 = extreme(diff.mean(0), "P8", 0.12, 0.22, -1)
    d7, _ = extreme(diff.mean(0), "P7", 0.12, 0.22, -1)
    assert 160 <= td8 <= 180 and d8 < -2.0 and d8 < 1.5 * d7  # right-lateralised (measured: -3.8 vs -1.6 uV)
    at = (T >= td8 / 1e3 - 1e-4) & (T <= td8 / 1e3 + 1e-4)
    per_image = diff[:, CH.index("P8"), at].ravel()
    assert np.all(per_image < 0) and per_image.std() > 0.2 * abs(per_image.mean())  # exemplars differ
    # pixels alone: a face drawn without its label is an object as far as the N170 goes
    u8, _ = extreme(unlabelled.mean(0), "P8", 0.14, 0.2, -1)
    assert u8 > 0.6 * f8


def test_bodies_scenes_and_animacy_have_their_own_components(model):
    for kind, ch, t0, t1, sign in (("body", "P7", 0.17, 0.21, -1), ("scene", "POz", 0.2, 0.26, 1)):
        diff = (_category_set(model, kind, n=8) - _category_set(model, kind, False, n=8)).mean(0)
        v, t = extreme(diff, ch, t0 - 0.05, t1 + 0.05, sign)
        assert t0 * 1e3 <= t <= t1 * 1e3 and abs(v) > 1.0, (kind, v, t)
    img = make_stimulus(np.random.default_rng(3), 128, "body")[0]
    animate = model.drives(img, "body")[0][model.source_names.index("Animacy-R")]
    assert animate > 0 and model.drives(img, "object")[0][model.source_names.index("Animacy-R")] == 0
    inverted = model.drives(img, CategoryLabel("body", inverted=True))
    upright = model.drives(img, "body")
    i = model.source_names.index("N190-R")
    assert inverted[0][i] == pytest.approx(1.2 * upright[0][i])  # inversion: larger and 10 ms later
    assert inverted[1][i] - upright[1][i] == pytest.approx(0.01)


def test_low_level_statistics_overlap_across_categories():
    """RMS contrast and mean luminance are drawn from the same ranges for every category (SHINE-style)."""
    stats = {}
    for kind in ("face", "body", "object", "scene"):
        lum = []
        for i in range(40):
            img = make_stimulus(np.random.default_rng([13, i]), 64, kind)[0].astype(float) / 255
            y = img @ [0.2126, 0.7152, 0.0722]
            lum.append(((y - 0.5) / 0.5).std())
        stats[kind] = np.array(lum)
    for a in stats.values():
        assert np.mean((a > 0.08) & (a < 0.37)) > 0.9  # the drawn range 0.10-0.35 (a little lost to clipping)
        for b in stats.values():
            assert abs(np.median(a) - np.median(b)) < 0.08 and a.min() < np.median(b) < a.max()


def test_category_table_for_user_images(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(6):
        write_image(folder / "sub" / f"im{i}.png", make_stimulus(np.random.default_rng(i), 32, "face")[0])
    table = tmp_path / "cats.tsv"
    table.write_text("image\tcategory\tstrength\nsub/im0.png\tface\t0.5\nim1.png\tobject\t\nsub/im2.png\tnone\t\n"
                     "sub/im3.png\tbody\t\n")
    files = sorted(folder.rglob("*.png"))[:4]
    labels = read_category_table(table, folder, files)
    assert [lab.name if lab else None for lab in labels] == ["face", "object", None, "body"]
    assert labels[0].strength == 0.5
    table.write_text("image\tcategory\nsub/im0.png\tcat\n")
    with pytest.raises(DataError, match="unknown image category 'cat'"):
        read_category_table(table, folder, files)
    table.write_text("image\tcategory\nsub/im0.png\tface\n")
    with pytest.raises(DataError, match="no row for 3 image"):
        read_category_table(table, folder, files)
    # through simulate_dataset: images.json records the labels, the truth carries the face component
    table.write_text("image\tcategory\n" + "".join(f"sub/im{i}.png\tface\n" for i in range(6)))
    cfg = SimulationConfig(n_train=3, train_reps=1, n_test=3, test_reps=2, image_dir=str(folder),
                           categories=str(table), seed=1)
    simulate_dataset(cfg, tmp_path / "sim")
    params = json.loads((tmp_path / "sim" / "images.json").read_text())
    assert [p["category"]["name"] for p in params] == ["face"] * 6
    with pytest.raises(ConfigError, match="image_dir"):
        SimulationConfig(categories=str(table)).resolved()


def test_unlabelled_pixels_drive_no_category_component(model):
    img = make_stimulus(np.random.default_rng(5), 128, "face")[0]  # a camera frame has no label
    amp = dict(zip(model.source_names, model.drives(img)[0]))
    assert all(amp[n] == 0 for n in amp if n.split("-")[0] in ("N170", "N190", "Scene", "Animacy"))
    assert model.drives(img, "face")[0][model.source_names.index("N170-R")] > 0.05


# ---------------------------------------------------------------------------------------- 5. paradigm
def test_paradigm_presets_follow_the_datasets():
    eeg2, meg = PARADIGMS["things-eeg2"], PARADIGMS["things-meg"]
    assert (eeg2.on_s, eeg2.off_s, eeg2.sequence_length, eeg2.image_deg) == (0.1, 0.1, 20, 7.0)
    support, prob = eeg2.intervals(100.0)
    assert support.tolist() == [20] and prob.tolist() == [1.0]  # 5 Hz
    support, prob = meg.intervals(200.0)
    assert support[0] == 260 and support[-1] == 340 and prob.sum() == pytest.approx(1.0)  # 1.3-1.7 s
    assert SimulationConfig().get_paradigm() is eeg2 and SimulationConfig(montage="things-meg").get_paradigm() is meg
    assert get_paradigm(None, "biosemi64:O1,Oz") is eeg2
    with pytest.raises(ConfigError, match="unknown paradigm"):
        get_paradigm("fast")
    with pytest.raises(ConfigError, match="off_jitter_s"):
        get_paradigm({"on_s": 0.1, "off_s": 0.1, "off_jitter_s": 0.2})
    # neighbours in a 20-image sequence: 19/20 of the trials have one 200 ms earlier
    h = neighbour_kernel(eeg2, 400, 100.0, 60)
    assert h[60 + 20] == pytest.approx(19 / 20) and h[60 + 40] == pytest.approx(18 / 20) and h[60] == 0
    assert h[60 - 20] == pytest.approx(19 / 20) and h[60 + 21] == 0


def test_rsvp_epochs_contain_the_neighbours_and_isolated_epochs_do_not(tmp_path):
    """Noise-free, variability-free: isolated repetitions are identical and flat before onset; RSVP repetitions
    differ by their random neighbours, whose responses fill the baseline and oscillate at 5 Hz."""
    base = EEG.times <= 1e-9
    kw = {"n_train": 4, "train_reps": 1, "n_test": 20, "test_reps": 30, "noise_scale": 0.0, "variability": 0.0,
          "seed": 2}
    _, iso = simulate_dataset(SimulationConfig(paradigm="isolated", **kw), tmp_path / "iso")
    _, rsvp = simulate_dataset(SimulationConfig(paradigm="things-eeg2", **kw), tmp_path / "rsvp")
    x_iso, x_rsvp = np.asarray(iso.epochs), np.asarray(rsvp.epochs)
    assert np.abs(x_iso - x_iso[:, :1]).max() < 1e-12  # every repetition the same
    assert np.abs(x_iso[..., base]).max() < 1e-7  # nothing before onset
    spread = np.abs(x_rsvp - x_rsvp.mean(1, keepdims=True)).max()
    assert spread > 1e-6  # repetitions differ by their neighbours
    assert np.abs(x_rsvp[..., base] - x_rsvp[..., base].mean(-1, keepdims=True)).max() > 1e-6
    grand = x_rsvp.mean((0, 1))[:, EEG.times >= 0]
    spec = np.abs(np.fft.rfft(grand - grand.mean(-1, keepdims=True), axis=-1)).mean(0)
    freqs = np.fft.rfftfreq(grand.shape[-1], 1 / EEG.sfreq)
    assert freqs[np.argmax(spec[1:]) + 1] == pytest.approx(5.0, abs=1.3)  # the 5 Hz steady state
    truth = np.load(tmp_path / "rsvp" / "test" / "evoked_true.npy")
    alone = np.load(tmp_path / "rsvp" / "test" / "evoked_isolated.npy")
    np.testing.assert_allclose(alone, np.load(tmp_path / "iso" / "test" / "evoked_true.npy"), atol=1e-12)
    assert np.abs(truth - alone).max() > 1e-6  # the expected overlap is part of the truth under RSVP
    # every repetition sits at its own sequence position with its own neighbours: epochs of one image differ
    assert len({x.tobytes() for x in x_rsvp[0]}) == 30


def test_evoked_true_is_the_expected_epoch(tmp_path):
    """Averages converge to evoked_true as 1/sqrt(repetitions), with no bias over images."""
    errors = []
    for reps in (25, 400):
        cfg = SimulationConfig(n_train=4, train_reps=1, n_test=20, test_reps=reps, noise_scale=0.0,
                               variability=0.0, seed=4)
        _, test = simulate_dataset(cfg, tmp_path / str(reps))
        truth = np.load(tmp_path / str(reps) / "test" / "evoked_true.npy")
        dev = test.average() - truth
        errors.append(np.sqrt(np.mean(dev**2)))
        assert np.abs(dev.mean(0)).max() < 0.1 * np.abs(truth).max()
    assert errors[1] < 0.4 * errors[0]  # 1/sqrt(16) = 0.25 expected
    # the trial-to-trial variability has the expectation EvokedModel.expected (mean gain 1, Gaussian jitter)
    model = EvokedModel(EEG)
    img = make_stimulus(np.random.default_rng(0), 128, "face")[0]
    amp, lat = model.drives(img, "face")
    n = 4000
    mc = model.trials(np.tile(amp, (n, 1)), np.tile(lat, (n, 1)), np.random.default_rng(1)).mean(0)
    exact = model.expected(amp[None], lat[None])[0]
    assert np.abs(mc - exact).max() < 0.03 * np.abs(exact).max()
    assert np.abs(exact - model.evoked(img, "face")).max() > 0.02 * np.abs(exact).max()  # jitter smooths


def test_cli_paradigm_and_categories(tmp_path, capsys):
    from vibe_rt.cli import main

    out = tmp_path / "sim"
    assert main(["data", "simulate", "--out", str(out), "--n-train", "3", "--n-test", "3", "--test-reps", "2",
                 "--paradigm", "isolated", "--noise-scale", "0"]) == 0
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["paradigm"]["name"] == "isolated" and summary["image_deg"] == 7.0
    np.testing.assert_allclose(np.load(out / "test" / "evoked_true.npy"),
                               np.load(out / "test" / "evoked_isolated.npy"), atol=1e-12)
    capsys.readouterr()
    assert main(["data", "simulate", "--out", str(out), "--paradigm", "fast"]) == 2
    err = capsys.readouterr().err
    assert "unknown paradigm 'fast'" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "simulate", "--out", str(out), "--categories", str(tmp_path / "c.tsv")]) == 2
    assert "give image_dir too" in capsys.readouterr().err
