"""``vibe-rt bench``: every benchmark runs for real with its quickest settings and writes sane JSON; ``vibe-rt
bench tables`` renders the README tables from JSON results; the scripts in benchmarks/ are thin entry points.
Speed itself is not asserted."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _display import display  # noqa: F401  (session fixture of the experiment-timing test)

from vibe_rt.cli import main
from vibe_rt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("min", "p50", "p95", "p99", "max")


def _ordered(p: dict) -> bool:
    return all(p[a] <= p[b] + 1e-9 for a, b in zip(ORDER, ORDER[1:]))


def _doc(folder: Path, name: str) -> dict:
    files = list(folder.glob(f"{name}-*.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text())
    assert doc["benchmark"] == name and doc["machine_info"]["machine"]
    return doc


def test_bench_latency_quick(tmp_path, capsys):
    rc = main(["bench", "latency", "--quick", "--duration", "2.5", "--backend", "torch", "--model", "tiny",
               "--tag", "short", "--out", str(tmp_path)])
    assert rc == 0
    files = list(tmp_path.glob("latency_short-*.json"))
    assert len(files) == 1 and files[0].with_suffix(".png").is_file()
    doc = json.loads(files[0].read_text())
    assert doc["benchmark"] == "latency_short" and doc["config"]["tag"] == "short"
    assert {"machine", "cpu", "cores", "versions", "load_average"} <= set(doc["machine_info"])
    assert doc["machine_info"]["versions"]["vibe-rt"]
    assert doc["config"]["lookahead_modes"] == ["fixed", "auto"]
    assert doc["floor"]["camera_frame_period_ms"] == pytest.approx(33.33, 0.01)
    assert doc["references_ms"]["amplifier_to_lsl"] == {"BrainAmp (BrainVision LSL connector)": 51.6,
                                                        "BioSemi ActiveTwo (LSL app)": 7.7}
    assert set(doc["results"]) == {"tiny:torch-fp32:fixed", "tiny:torch-fp32:auto"}
    for key, res in doc["results"].items():
        stages = res["stages_ms"]
        for name in ("capture", "dispatch", "queue_wait", "preprocess", "encoder", "qformer", "decoder",
                     "inference", "synth_add", "ready", "emitted", "push", "push_lag"):
            assert stages[name]["n"] > 0, (key, name)
            assert _ordered(stages[name]), (key, name)
        # frame stamp -> taken by the inference thread is dispatch + queue wait: nothing in between is unmeasured
        assert stages["capture"]["p50"] >= stages["queue_wait"]["p50"]
        assert res["counters"]["responses"] >= 5
        ready, emitted = res["glass_to_lsl_ms"]["ready"], res["glass_to_lsl_ms"]["emitted"]
        assert 0 < ready["p50"] < emitted["p50"]
        # a response reaches LSL one lookahead after its onset (plus at most a push interval and scheduling)
        lookahead = res["lookahead"]["final_ms"]
        assert emitted["n"] <= ready["n"]
        assert lookahead - 1.0 <= emitted["min"] and emitted["p50"] < lookahead + 100.0
        assert len(res["raw_ms"]["emitted"]) == emitted["n"]
        assert res["effective_srate_hz"] == pytest.approx(1000, rel=0.02)
        assert key in doc["summary"]
    fixed, auto = doc["results"]["tiny:torch-fp32:fixed"]["lookahead"], doc["results"]["tiny:torch-fp32:auto"][
        "lookahead"]
    assert fixed["mode"] == "fixed" and fixed["initial_ms"] == 250.0 and not fixed["grown"]
    # chosen from the warm-up: at least the margins and the push interval (its value depends on the machine's load)
    assert auto["mode"] == "auto" and auto["initial_ms"] > 10.0 and auto["rule"].startswith(("auto", "grown"))


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


def test_bench_stream_with_artifacts_runs_with_and_without_them(tmp_path):
    """`--artifacts`: the artifacts are rendered and counted, a run of the same shape without them sits beside it,
    above 64 channels on BioSemi-128 positions; the README table names both rows."""
    from vibe_rt.bench.tables import stream_table

    rc = main(["bench", "stream", "--quick", "--duration", "2", "--no-peer", "--channels", "96", "--srate", "500",
               "--artifacts", "line:50,bad-channel:flat,blinks:100/min", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads(next(tmp_path.glob("stream_artifacts-*.json")).read_text())
    assert doc["config"]["artifacts"] == "blinks:100/min,bad-channel:flat,line:50"
    with_art, plain = doc["vibe_rt"]["streamer"], doc["vibe_rt_plain"]["streamer"]
    assert with_art["artifacts"]["line"] == 1 and with_art["artifacts"]["bad-channel"] == 1 and plain["artifacts"] == {}
    for part in ("vibe_rt", "vibe_rt_plain"):
        assert doc[part]["receiver"]["gaps"] == 0 and doc[part]["receiver"]["n_received"] >= 700
    assert not list(tmp_path.glob("stream-*.json"))  # the plain stream result is left alone
    table = stream_table(tmp_path)
    assert "vibe-rt + artifacts line:50,bad-channel:flat,blinks:100/min" in table and "vibe-rt, no artifacts" in table
    assert "96 ch @ 500 Hz" in table


def test_bench_rejects_bad_options(capsys):
    assert main(["bench", "latency", "--backend", "nonsense"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["bench", "latency", "--tag", "../x"]) == 2
    assert "--tag must be lower-case letters and digits" in capsys.readouterr().err
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
    assert [x["label"] for x in parse_variants("ort-int8,ort-int8-fused", "cpu")] == ["onnxruntime-int8",
                                                                                       "onnxruntime-int8-fused"]
    assert "onnxruntime-int8" in [x["label"] for x in parse_variants(None, "cpu")]
    with pytest.raises(ConfigError, match="ONNX Runtime runs fp32 and int8"):
        parse_variants("onnxruntime-fp16", "cuda")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        parse_variants("torch-fp16", "cpu")
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
        "machine_info": mi, "config": {"lookahead_s": 0.25, "events": "rate", "event_rate_hz": 3.5,
                                       "duration_s": 600}, "loadavg_before": [1.25, 1, 1],
        "references_ms": {"amplifier_to_lsl": {"BrainAmp": 51.6}},
        "results": {"default:torch-fp32:auto": {
            "model": "default", "variant": "torch-fp32", "stages_ms": {"inference": pct},
            "lookahead": {"mode": "auto", "final_ms": 21.25, "grown": False},
            "glass_to_lsl_ms": {"ready": {**pct, "p50": 12.5}, "emitted": {**pct, "p50": 23.5}},
            "counters": {"late": 0}, "cpu_steal_ms": 12.0},
            "default:tensorrt-fp16": {"model": "default", "variant": "tensorrt-fp16", "error": "not installed"}}}))
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
        "stage1_reconstruction_r": 0.95, "dataset": {"n_test": 200},
        "summary": {"encoding_r": 0.303, "encoding_r_ci95": [0.28, 0.33], "truth_r": 0.35, "ratio_to_truth": 0.866,
                    "ridge_pca_r": 0.25, "shuffled_r": -0.004, "rmse_uv": 1.234, "n_seeds": 1}}))
    (folder / "ablations.json").write_text(json.dumps({
        "n_seeds": 3, "swd_curve": {"chosen_on_validation": 0.0},
        "variants": {"tsconvplus_k3": {"test_r": 0.41, "test_r_ci95": [0.39, 0.43], "val_r": 0.052},
                     "ridge_tokens": {"test_r": 0.3, "test_r_ci95": [0.28, 0.32]}}}))


def test_tables_render_and_check(tmp_path, capsys):
    from vibe_rt.bench.tables import END, START

    results = tmp_path / "results"
    results.mkdir()
    _fixture_results(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n## Benchmarks\n\n{START}\nSTALE TABLE\n{END}\n\ntail\n")
    other = tmp_path / "OTHER.md"
    other.write_text("no markers here\n")
    tables = ["bench", "tables", "--results", str(results)]
    assert main([*tables, str(readme), str(other)]) == 0
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.endswith(f"{END}\n\ntail\n") and text.startswith("# x\n\nintro")
    assert ("| cpu-test-2c | default | torch-fp32 | rate 3.5/s, 600 s | auto 21.2 | - / - / - / - / 2.00 / - / - | "
            "12.5 | 3.0 | 23.5 | 3.0 | 3.5 | 0/10 | - | 12 | 1.2 |") in text
    assert "| reference | BrainAmp | amplifier -> LSL | - | - | - | - | - | 51.6 |" in text
    assert "tensorrt-fp16" not in text  # failed variants are left out
    assert "| cpu-test-2c | vibe-rt | 600 s, 64 ch @ 1000 Hz | 1.0e-09 |" in text
    assert "| cpu-test-2c | onnxruntime-fp32 | 4.00 | 8 | 30.00 | 420 | 125 |" in text
    assert "0.303" in text and "tokens 0.301" in text and "0.390 - 0.830" in text
    assert "| 0.303 (0.280 - 0.330) | 0.350 | 0.87 | 0.250 | -0.004 | 1.23 | 1 |" in text
    assert "| tsconvplus_k3 | 0.410 (0.390 - 0.430) | 0.0520 |" in text and "| ridge_tokens | 0.300" in text
    assert "SWD weight chosen on validation: 0 | 3 seeds" in text
    assert other.read_text() == "no markers here\n"
    assert main([*tables, "--check", str(readme)]) == 0  # up to date now
    readme.write_text(readme.read_text().replace("23.5", "999"))
    capsys.readouterr()
    assert main([*tables, "--check", str(readme)]) == 1
    assert f"out of date: {readme}" in capsys.readouterr().out and "999" in readme.read_text()  # nothing written
    # the script CI runs (python benchmarks/make_table.py --check) is the same command, with this checkout's code
    script = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_table.py"), "--results", str(results),
                             "--check", str(readme)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "VIBE_RT_LOG_LEVEL": "WARNING"}, timeout=300)
    assert script.returncode == 1 and "out of date" in script.stdout, script.stderr


def test_committed_tables_are_up_to_date():
    """The README tables match the committed results (what .ci/run checks)."""
    from vibe_rt.bench import tables

    result, path = tables.run(check=True)
    assert result["stale"] == [] and path is None
    assert "**Inference latency per backend (`vibe-rt bench inference`)**" in result["content"]


def test_scripts_are_thin_entry_points():
    """Every benchmarks/*.py but _entry.py is a docstring, `from _entry import run` and `raise SystemExit(run(name))`
    with a name `vibe-rt bench` knows."""
    from vibe_rt.bench.suite import BENCHMARKS

    scripts = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "_entry.py")
    assert len(scripts) == 11
    names = set()
    for path in scripts:
        body = ast.parse(path.read_text()).body
        assert len(body) == 3 and isinstance(body[0].value, ast.Constant), path.name  # docstring
        assert ast.unparse(body[1]) == "from _entry import run", path.name
        main_block = ast.unparse(body[2])
        assert main_block.startswith("if __name__ == '__main__':\n    raise SystemExit(run('"), path.name
        names.add(main_block.split("run('")[1].split("'")[0])
    assert names == {*BENCHMARKS, "tables"}


def test_cli_options_are_the_config_fields():
    """Each option of `vibe-rt bench <name>` fills the BenchConfig field of its name, and every field is an
    option of some benchmark."""
    import dataclasses

    from vibe_rt._commands import bench as command
    from vibe_rt.bench.suite import BENCHMARKS, SUITE, BenchConfig

    fields = {f.name for f in dataclasses.fields(BenchConfig)}
    assert set(command._OPTIONS) == fields
    used = {o for _, options in command._BENCHMARKS.values() for o in options} | {"out", "write"}
    assert used == fields
    assert tuple(command._BENCHMARKS) == BENCHMARKS and command._SUITE == SUITE


def test_bench_inference_quick(tmp_path):
    rc = main(["bench", "inference", "--model", "tiny", "--backend", "torch,onnxruntime", "--seconds", "0.05",
               "--min-iters", "2", "--max-iters", "3", "--warmup", "1", "--out", str(tmp_path)])
    assert rc == 0
    doc = _doc(tmp_path, "inference_latency")
    variants = doc["results"]["tiny"]["variants"]
    assert set(variants) == {"torch-fp32", "onnxruntime-fp32"}
    for r in variants.values():
        assert r["batch1"]["iterations"] >= 2 and _ordered(r["batch1"]["total_ms"])
        assert set(r["batches"]) == {"1", "4", "16"} and r["best_batch"] in (1, 4, 16)
    assert doc["summary"]["tiny"]["speedup_vs_torch_fp32_p50"]["torch-fp32"] == pytest.approx(1.0)


def test_bench_model_size_quick(tmp_path):
    assert main(["bench", "model-size", "--quick", "--warmup", "1", "--repeats", "3", "--out", str(tmp_path)]) == 0
    doc = _doc(tmp_path, "model_size")
    assert doc["threads"] == 1 and doc["repeats"] == 3
    (r,) = doc["results"]
    assert (r["size"], r["montage"]) == ("tiny", "things-eeg2")
    nets = r["networks"]
    assert nets["inference_total"]["parameters"] == sum(nets[k]["parameters"] for k in
                                                        ("image_encoder", "qformer", "vae_decoder"))
    assert set(r["latency_ms"]) >= {"encoder", "qformer", "decoder", "chain"}
    assert all(v["n"] == 3 and _ordered(v) for v in r["latency_ms"].values())
    assert main(["bench", "model_size", "--model", "huge", "--no-write"]) == 2  # not a preset (underscore alias)


def test_bench_comparator_quick(tmp_path):
    assert main(["bench", "comparator", "--quick", "--out", str(tmp_path)]) == 0
    doc = _doc(tmp_path, "comparator")
    (row,) = doc["recovery"]
    assert row["latency_true_ms"] == 24.0 and abs(row["latency_error_ms"]) < 2.0
    assert row["n_events"] == 96 and row["n_lost"] == 0 and "_erps" not in row
    cal = doc["calibration"]
    assert cal["held_out"]["after"]["erp_r"] > cal["held_out"]["before"]["erp_r"]
    assert doc["adapter"] is None and doc["config"]["quick"] is True
    (cost,) = doc["update_cost"]
    assert (cost["n_images"], cost["n_events"]) == (10, 30) and cost["ms"]["n"] == 20  # first pass: warm-up


def test_bench_simulate_then_quality_on_its_dataset(tmp_path):
    data, out = tmp_path / "data", tmp_path / "results"
    assert main(["bench", "simulate", "--n-train", "20", "--n-test", "6", "--data", str(data),
                 "--out", str(out)]) == 0
    sim = _doc(out, "simulate")
    assert sim["train_shape"][0] == 20 and sim["test_shape"][0] == 6
    assert sim["noise_ceiling"]["upper_mean"] > sim["noise_ceiling"]["lower_mean"]
    assert 0 < sim["average_vs_truth_r"]["mean"] < sim["average_vs_truth_r"]["post_stimulus"] <= 1
    assert all((out / name).is_file() for name in sim["figures"])
    assert (data / "test" / "dataset.json").is_file()  # kept: --data names the folder
    assert main(["bench", "quality", "--data", str(data), "--splits", "3", "--out", str(out)]) == 0
    q = _doc(out, "quality")["results"]["vibe-default"]
    assert q["dataset"]["n_images"] == 6 and set(q["r"]) == {"vibe", "ridge_tokens"}
    assert -1 <= q["r"]["vibe"] <= 1 and q["noise_ceiling"]["lower"] < q["noise_ceiling"]["upper"]


def test_bench_throughput_quick(tmp_path):
    assert main(["bench", "throughput", "--quick", "--backend", "torch", "--model", "tiny", "--max-batch", "2",
                 "--out", str(tmp_path)]) == 0
    r = _doc(tmp_path, "throughput")["results"]["torch-fp32"]
    batches = [s["batch"] for s in r["sweep"]]
    assert batches in ([1], [1, 2])  # the sweep doubles up to --max-batch, and stops where the target breaks
    assert all(len(s["raw_total_ms"]) >= 5 and _ordered(s["total_ms"]) for s in r["sweep"])  # quick: 5 rounds
    assert r["batch1_p99_ms"] == r["sweep"][0]["total_ms"]["p99"]


@pytest.mark.display
def test_bench_experiment_timing(tmp_path, display):  # noqa: F811
    assert main(["bench", "experiment-timing", "--duration", "3", "--out", str(tmp_path)]) == 0
    doc = _doc(tmp_path, "experiment_timing")
    assert doc["pacing"] == "clock" and doc["n_presented"] == doc["n_trials"] == 40
    assert doc["n_markers_received"] == 40 and doc["marker_vs_flip_ms"]["max"] < 1e-3
    assert doc["synthesized_stream"] is None


def test_bench_options_are_checked_before_running(capsys):
    assert main(["bench", "stream", "--srate", "0"]) == 2
    assert "--srate must be > 0" in capsys.readouterr().err
    assert main(["bench", "experiment-timing", "--size", "big"]) == 2
    assert "--size must look like 800x600" in capsys.readouterr().err
    assert main(["bench", "inference", "--montage", "things-eeg2", "--montage", "things-meg"]) == 2
    assert "takes one --montage" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option of another benchmark is refused by argparse
        main(["bench", "stream", "--backend", "torch"])


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


def test_quality_scores_on_a_fresh_seed(tmp_path):
    """bench quality never re-simulates the model's own training data: the seed is the recorded one + 1000."""
    from vibe_rt.bench.quality import simulated_data
    from vibe_rt.data.dataset import EpochsDataset

    doc = {"extra": {"dataset": {"montage": "things-eeg2", "n_train": 8, "train_reps": 2, "n_test": 6,
                                 "test_reps": 4, "seed": 3, "noise_scale": 0.1}}}
    folder = simulated_data(doc, cache=tmp_path)
    for split in ("train", "test"):
        assert EpochsDataset.load(folder / split).meta["seed"] == 1003
