"""``vibe-rt bench``: the latency and stream benchmarks run for real (short) and write sane JSON; make_table.py
renders the README tables from JSON results. Speed itself is not asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vibe_rt.cli import main

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("min", "p50", "p95", "p99", "max")


def _ordered(p: dict) -> bool:
    return all(p[a] <= p[b] + 1e-9 for a, b in zip(ORDER, ORDER[1:]))


def _make_table():
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "benchmarks" / "make_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_latency_quick(tmp_path, capsys):
    rc = main(["bench", "latency", "--quick", "--duration", "2.5", "--backend", "torch", "--model", "tiny",
               "--out", str(tmp_path)])
    assert rc == 0
    files = list(tmp_path.glob("latency-*.json"))
    assert len(files) == 1 and files[0].with_suffix(".png").is_file()
    doc = json.loads(files[0].read_text())
    assert doc["benchmark"] == "latency"
    assert {"machine", "cpu", "cores", "versions", "load_average"} <= set(doc["machine_info"])
    assert doc["machine_info"]["versions"]["vibe-rt"]
    assert doc["floor"]["lookahead_ms"] == 250.0
    assert doc["floor"]["camera_frame_period_ms"] == pytest.approx(33.33, 0.01)
    res = doc["results"]["torch-fp32"]
    stages = res["stages_ms"]
    for key in ("capture", "preprocess", "encoder", "qformer", "decoder", "inference", "synth_add", "ready",
                "emitted", "push", "push_lag"):
        assert stages[key]["n"] > 0, key
        assert _ordered(stages[key]), key
    assert res["counters"]["responses"] >= 5
    ready, emitted = res["glass_to_lsl_ms"]["ready"], res["glass_to_lsl_ms"]["emitted"]
    assert 0 < ready["p50"] < emitted["p50"]
    # a response reaches LSL one lookahead after its onset (plus at most a push interval and scheduling)
    assert emitted["n"] <= ready["n"]
    assert 249.0 <= emitted["min"] and emitted["p50"] < 250.0 + 100.0
    assert len(res["raw_ms"]["emitted"]) == emitted["n"]
    assert res["effective_srate_hz"] == pytest.approx(1000, rel=0.02)
    assert "torch-fp32" in doc["summary"]


def test_bench_stream_quick(tmp_path):
    rc = main(["bench", "stream", "--quick", "--duration", "3", "--no-peer", "--channels", "16",
               "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads(next(tmp_path.glob("stream-*.json")).read_text())
    assert doc["config"]["duration_s"] == 3 and doc["config"]["channels"] == 16
    rec, strm = doc["vibe_rt"]["receiver"], doc["vibe_rt"]["streamer"]
    assert "error" not in rec and "error" not in strm, (rec, strm)
    assert rec["rate_measured_hz"] == pytest.approx(1000, rel=1e-3)
    assert abs(rec["rate_error_pct"]) < 0.1
    assert rec["gaps"] == 0 and rec["n_received"] >= 2500
    assert _ordered(rec["receive_latency_ms"]) and _ordered(strm["push_lag_ms"])
    assert strm["effective_srate_hz"] == pytest.approx(1000, rel=0.02)
    assert len(rec["series"]["t_s"]) >= 1
    assert doc["load_average_before"] is not None and "summary" in doc
    assert (tmp_path / next(tmp_path.glob("stream-*.json")).with_suffix(".png").name).is_file()


def test_bench_rejects_bad_options(capsys):
    assert main(["bench", "latency", "--backend", "nonsense"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["bench", "throughput", "--backend", "tensorrt"]) == 2  # CPU device: needs --device cuda
    assert "CUDA" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["bench", "latency", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_parse_variants():
    from vibe_rt.bench.inference import parse_variants

    v = parse_variants("torch, ort-fused", "cpu")
    assert [x["label"] for x in v] == ["torch-fp32", "onnxruntime-fp32-fused"]
    v = parse_variants("tensorrt,trt-fp32-fused-cudagraph", "cuda")
    assert [x["label"] for x in v] == ["tensorrt-fp16", "tensorrt-fp32-fused-cudagraph"]
    assert parse_variants(None, "cpu")[0]["label"] == "torch-fp32"  # the peer first


def test_quality_missing_checkpoint(tmp_path):
    from vibe_rt.bench.quality import models_to_score
    from vibe_rt.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        models_to_score([tmp_path / "nope.safetensors"])


def _fixture_results(folder: Path) -> None:
    pct = {"n": 10, "mean": 2.0, "std": 0.1, "min": 1.0, "p50": 2.0, "p95": 2.9, "p99": 3.0, "max": 3.5}
    mi = {"machine": "cpu-test-2c"}
    (folder / "latency-cpu-test-2c.json").write_text(json.dumps({
        "machine_info": mi, "config": {"lookahead_s": 0.25},
        "results": {"torch-fp32": {"stages_ms": {"inference": pct},
                                   "glass_to_lsl_ms": {"ready": {**pct, "p50": 12.5},
                                                       "emitted": {**pct, "p50": 251.25}},
                                   "counters": {"late": 0}},
                    "tensorrt-fp16": {"error": "not installed"}}}))
    (folder / "stream-cpu-test-2c.json").write_text(json.dumps({
        "machine_info": mi, "config": {"duration_s": 600, "channels": 64, "srate": 1000},
        "load_average_before": [1.5, 1, 1],
        "vibe_rt": {"receiver": {"rate_error_pct": 1e-9, "receive_latency_ms": pct, "latency_drift_ms_per_min": 0.01,
                                 "gaps": 0},
                    "streamer": {"push_lag_ms": pct, "outlet_thread_cpu_pct": 4.2, "process_cpu_pct": 9.0}}}))
    (folder / "throughput-cpu-test-2c.json").write_text(json.dumps({
        "machine_info": mi, "config": {"target_p99_ms": 125},
        "results": {"onnxruntime-fp32": {"sweep": [], "batch1_p99_ms": 4.0, "best_batch": 8, "best_batch_p99_ms": 30.0,
                                         "max_events_per_s": 420.0}}}))
    (folder / "quality.json").write_text(json.dumps({
        "stage2_encoding_r": 0.303, "ridge_baseline_r": {"tokens": 0.301},
        "noise_ceiling": {"lower": 0.39, "upper": 0.83},
        "stage1_reconstruction_r": 0.95, "dataset": {"n_test": 200}}))


def test_make_table_renders(tmp_path):
    mt = _make_table()
    results = tmp_path / "results"
    results.mkdir()
    _fixture_results(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n## Benchmarks\n\n{mt.START}\nSTALE TABLE\n{mt.END}\n\ntail\n")
    other = tmp_path / "OTHER.md"
    other.write_text("no markers here\n")
    assert mt.main(["--results", str(results), str(readme), str(other)]) == 0
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.endswith(f"{mt.END}\n\ntail\n") and text.startswith("# x\n\nintro")
    assert "| cpu-test-2c | torch-fp32 | - / - / - / 2.00 / - / - | 2.00 | 3.00 | 12.5 | 3.0 | 251.2 |" in text
    assert "tensorrt-fp16" not in text  # failed variants are left out
    assert "| cpu-test-2c | vibe-rt | 600 s, 64 ch @ 1000 Hz | 1.0e-09 |" in text
    assert "| cpu-test-2c | onnxruntime-fp32 | 4.00 | 8 | 30.00 | 420 | 125 |" in text
    assert "0.303" in text and "tokens 0.301" in text and "0.390 - 0.830" in text
    assert other.read_text() == "no markers here\n"
    assert mt.main(["--results", str(results), "--check", str(readme)]) == 0  # up to date now
    readme.write_text(readme.read_text().replace("251.2", "999"))
    assert mt.main(["--results", str(results), "--check", str(readme)]) == 1


def test_analyse_received_synthetic():
    """The receiver statistics on a synthetic stream: known rate, delay, one gap and a linear drift."""
    import numpy as np

    from vibe_rt.bench.stream import analyse_received

    fs, delay = 500.0, 0.25
    ts = 100.0 + np.arange(5000) / fs
    ts = np.delete(ts, 2500)  # one missing sample: a gap
    drift = 0.001 / 60 * (ts - ts[0])  # falls behind by 1 ms per minute
    arrivals = ts + delay + 0.002 + drift
    res = analyse_received(ts, arrivals, fs, delay)
    assert res["gaps"] == 1 and res["n_received"] == 4999
    assert res["rate_error_pct"] == pytest.approx(-100 / 4999, rel=1e-3)  # 4998 intervals over 4999 periods
    assert res["receive_latency_ms"]["p50"] == pytest.approx(2.0 + 0.08, abs=0.05)
    assert res["latency_drift_ms_per_min"] == pytest.approx(1.0, rel=1e-3)
    assert res["wall_rate_error_pct"] == pytest.approx(-100 * 0.001 / 60, rel=1e-3)  # arrives 1 ms/min slow
    assert res["ts_regularity"]["max_abs_dev_s"] == pytest.approx(1 / fs, rel=1e-6)
    assert res["series"]["samples"][2] == 500 and len(res["series"]["t_s"]) == 9  # first second is warm-up
