"""Live comparison over real LSL on loopback: MNE-LSL's PlayerLSL replays a ground-truth FIF recording
(annotations -> a string marker stream); the comparator subscribes with pylsl inlets."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

from vibe_rt.compare import DictSynth, LiveComparator, compare_offline, write_report
from vibe_rt.compare.groundtruth import make_ground_truth
from vibe_rt.montage import get_montage

pytest.importorskip("pylsl")
mne_lsl_player = pytest.importorskip("mne_lsl.player")

SFREQ = 1000.0


@pytest.fixture(scope="module")
def montage():
    return get_montage("things-eeg2").with_window(100.0, -0.1, 50)


def _player(raw, name, sid):
    return mne_lsl_player.PlayerLSL(raw, chunk_size=20, n_repeat=1, name=name, source_id=sid, annotations=True,
                                    annotations_encoding="string").start()


def _stop(player):
    try:
        player.stop()
    except RuntimeError:  # already stopped at the end of the file
        pass


def _wait(pred, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_live_matches_offline(montage, tmp_path):
    gt = make_ground_truth(montage, n_images=3, n_reps=2, latency_s=0.024, noise=2e-6, sfreq=SFREQ, isi=0.45,
                           lead_s=1.0, seed=2)
    name, sid = f"vibe-cmp-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    player = _player(gt.raw, name, sid)
    try:
        with LiveComparator(name, montage, DictSynth(gt.synth), markers=f"{name}-annotations",
                            stall_s=0.5) as live:
            assert _wait(lambda: live.comparator.n_events >= 6, gt.raw.times[-1] + 5)
    finally:
        _stop(player)
    # offline on the same data. PlayerLSL stamps a chunk by its last sample and an annotation by the start of
    # its chunk plus its offset, i.e. one sample earlier than the data sample it marks: shift the file's
    # markers the same way so that both modes see the same onsets.
    raw = gt.raw.copy()
    raw.set_annotations(raw.annotations.copy())
    raw.annotations.onset -= 1.0 / SFREQ
    off = compare_offline(raw, montage, DictSynth(gt.synth))
    a, b = live.comparator, off.comparator
    assert [e["key"] for e in a.events] == [e["key"] for e in b.events] == gt.keys
    assert a.lost == [] and b.lost == []
    ra, rb = np.array([e["r"] for e in a.events]), np.array([e["r"] for e in b.events])
    assert np.max(np.abs(ra - rb)) < 0.01
    sa, sb = a.summary(), b.summary()
    assert abs(sa["erp_r"] - sb["erp_r"]) < 0.01
    assert abs(sa["latency_s"] - sb["latency_s"]) < 0.0015
    assert abs(sa["latency_s"] - 0.024) < 1.0 / montage.sfreq + 1.0 / SFREQ
    assert sa["noise_ceiling"] == pytest.approx(sb["noise_ceiling"], abs=0.01)
    info = live.info()
    assert info["live"]["time_correction_s"] is not None and info["live"]["sfreq"] == SFREQ
    path = write_report(tmp_path / "rep", a, outages=live.outages(), gaps=live.data_gaps(), info=info,
                        figures=False)
    assert path.is_file()


def test_live_stream_loss_and_reconnect(montage, tmp_path):
    gt = make_ground_truth(montage, n_images=3, n_reps=3, latency_s=0.024, noise=2e-6, sfreq=SFREQ, isi=0.45,
                           lead_s=0.8, seed=3)
    name, sid = f"vibe-cmp-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    player = _player(gt.raw, name, sid)
    live = LiveComparator(name, montage, DictSynth(gt.synth), markers=f"{name}-annotations", stall_s=0.3,
                          max_backoff_s=0.3).start()
    try:
        assert _wait(lambda: live.comparator.n_events >= 2, 6.0)
        _stop(player)  # the source goes away (both outlets)
        t_stop = time.monotonic()
        assert _wait(lambda: live.status()["streams"]["live"] == "down", 3.0)
        n_before = live.comparator.n_events
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t_stop)))
        player = _player(gt.raw, name, sid)  # a new outlet, same source_id
        assert _wait(lambda: live.comparator.n_events >= n_before + 2, 6.0)
        assert live.running and live.status()["streams"]["live"] == "up"
    finally:
        _stop(player)
        live.stop()
    outages = [o for o in live.outages() if o["stream"] == "live" and o["end"] is not None]
    assert outages and outages[0]["duration_s"] > 0.9
    assert live.info()["live"]["n_reconnects"] >= 1
    gaps = live.data_gaps()
    assert gaps and gaps[0]["duration_s"] > 0.9
    g0, g1 = gaps[0]["start"], gaps[0]["end"]
    times = [e["time"] for e in live.comparator.events]
    assert any(t < g0 for t in times) and any(t > g1 for t in times)
    # nothing compared across the gap: every event's window lies on one side of it
    assert all(t + montage.tmax < g0 or t + montage.tmin > g1 for t in times)
    for x in live.comparator.lost:
        assert x["reason"] in ("gap", "before buffer", "incomplete at stop")
    s = live.comparator.summary()
    assert abs(s["latency_s"] - 0.024) < 2.0 / montage.sfreq
    path = write_report(tmp_path / "rep", live.comparator, outages=live.outages(), gaps=gaps, figures=False)
    assert "outages" in path.read_text()


def test_live_query_by_type_never_finds_the_synthesized_stream(source_id):
    """`--live EEG --synth vibe-rt`: both are EEG streams; the live one is never resolved to the synthesized one."""
    import pylsl

    from vibe_rt.compare.live import resolve_stream

    kind = f"EEG-{source_id}"  # a type of their own: no other stream on the machine answers the query

    def outlet(name: str) -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(pylsl.StreamInfo(name, kind, 2, 100.0, pylsl.cf_float32, f"{source_id}-{name}"))

    synth, amp = outlet("synth"), outlet("amp")
    try:
        found = resolve_stream(f"{source_id}-synth", signal=True, timeout=5.0)
        assert found is not None and found.name() == "synth"
        for _ in range(5):
            live = resolve_stream(kind, signal=True, timeout=5.0, exclude_uids=[found.uid()])
            assert live is not None and live.name() == "amp"
        assert resolve_stream(f"{source_id}-synth", signal=True, timeout=0.5, exclude_uids=[found.uid()]) is None
    finally:
        del synth, amp


def test_cli_live_compare_with_live_view(montage, tmp_path, capsys):
    """`vibe-rt compare --live NAME --synth NAME --report DIR`: both streams replayed by PlayerLSL; while it runs the
    report folder is a self-reloading live view, at the end a final report."""
    import threading

    from vibe_rt.cli import main

    full = get_montage("things-eeg2")
    kw = dict(n_images=3, n_reps=4, sfreq=SFREQ, isi=0.45, lead_s=3.0, seed=4)  # time to connect before onsets
    live_gt = make_ground_truth(full, latency_s=0.024, gain=(0.8, 1.2), noise=1e-6, **kw)
    synth_gt = make_ground_truth(full, latency_s=0.0, gain=(1.0, 1.0), noise=0.0, **kw)
    tag = uuid.uuid4().hex[:8]
    players = [_player(live_gt.raw, f"amp-{tag}", f"amp-{tag}"), _player(synth_gt.raw, f"syn-{tag}", f"syn-{tag}")]
    rep = tmp_path / "rep"
    seen_live: list[str] = []

    def watch() -> None:  # what a browser would load while the comparison runs
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and not seen_live:
            page = rep / "index.html"
            if page.is_file() and "http-equiv='refresh'" in page.read_text():
                seen_live.append(page.read_text())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rc = main(["compare", "--live", f"amp-{tag}", "--markers", f"amp-{tag}-annotations", "--synth", f"syn-{tag}",
                   "--montage", "things-eeg2", "--report", str(rep), "--live-view", "1", "--duration", "9", "--quiet"])
    finally:
        watcher.join()
        for p in players:
            _stop(p)
    assert rc == 0
    out = capsys.readouterr().out
    assert "live view:" in out and "events compared: 12 (3 images), lost: 0" in out, out
    assert seen_live and "live: updated every 1 s" in seen_live[0]
    final = (rep / "index.html").read_text()
    assert "refresh" not in final and (rep / "erp_overlay.png").is_file() and (rep / "metrics_over_time.png").is_file()
    assert not list(rep.glob(".*tmp*"))  # every file was replaced atomically
    # (the two players start a few ms apart, so the latency here is not the ground truth's; see the test above)
    report = json.loads((rep / "report.json").read_text())
    assert report["summary"]["n_events"] == 12 and report["summary"]["erp_r_aligned"] > 0.9
