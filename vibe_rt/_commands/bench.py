"""``vibe-rt bench <name>``: the benchmarks of :mod:`vibe_rt.bench` and the README tables
(see ``benchmarks/README.md``).

Parse -> :class:`~vibe_rt.bench.suite.BenchConfig` -> one call of :func:`vibe_rt.bench.suite.run` (or
:func:`~vibe_rt.bench.suite.run_suite` for ``all``, :func:`vibe_rt.bench.tables.run` for ``tables``). Each
benchmark gets the options it reads; an option not given takes the default of ``BenchConfig`` (the parsers
suppress theirs, so the defaults live in one place). Nothing under ``vibe_rt.bench`` is imported to build the
parser (importing it keeps LSL on this machine, which only a benchmark may do).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: option -> (flags, argparse keywords); the destination is the BenchConfig field of the same name.
_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "out": (("--out",), dict(metavar="DIR", help="result folder (default benchmarks/results/ in a source checkout, "
                                                 "else ./vibe-rt-bench/)")),
    "write": (("--no-write",), dict(action="store_false", help="print the summary only, write no result")),
    "quick": (("--quick",), dict(action="store_true", help="short settings: a smoke check, not a result")),
    "threads": (("--threads",), dict(type=int, help="CPU threads (default: physical cores; model-size: 1)")),
    "backend": (("--backend",), dict(help="comma list of inference variants, e.g. torch,onnxruntime,"
                                          "onnxruntime-fused,tensorrt-fp16 (default: torch eager and every engine "
                                          "backend available)")),
    "device": (("--device",), dict(choices=("cpu", "cuda"), help="inference device (default cpu)")),
    "model": (("--model",), dict(action="append", metavar="CKPT", help="checkpoint or preset tiny/base "
                                 "(repeatable; throughput: the first, default the embedded model; latency: each of "
                                 "default/tiny/base/CKPT, default the embedded model; quality: each checkpoint "
                                 "besides the embedded one; inference: each of default/tiny/base/CKPT, default "
                                 "default and base; model-size: each preset, default both)")),
    "engines_dir": (("--engines-dir",), dict(metavar="DIR", help="engine cache (default: engines/ or the user "
                                                                "cache; inference: a temporary one)")),
    "duration": (("--duration",), dict(type=float, metavar="S", help="seconds of the run (latency 30, stream 60, "
                                                                     "experiment-timing 120; quick 5, 10, 10)")),
    "lookahead": (("--lookahead",), dict(type=float, metavar="S", help="output delay in s (default 0.25; latency: "
                                                                       "the fixed one, beside the automatic one)")),
    "srate": (("--srate",), dict(type=float, help="output rate in Hz (default 1000)")),
    "chunk_ms": (("--chunk-ms",), dict(type=float, help="push interval in ms (default 5)")),
    "channels": (("--channels",), dict(type=int, help="channels (default 64; up to 128: BioSemi-128 above 64)")),
    "artifacts": (("--artifacts",), dict(metavar="LIST", help="artifacts vibe-rt injects, as for `vibe-rt stream` "
                                                           "(e.g. realistic); also runs without them and writes "
                                                           "stream_artifacts-<machine>.json")),
    "peer": (("--no-peer",), dict(action="store_false", help="skip MNE-LSL's PlayerLSL")),
    "event_rate": (("--event-rate",), dict(type=float, help="onsets/s (default 5, quick 10)")),
    "events": (("--events",), dict(choices=("rate", "every"), help="latency: onsets at --event-rate (rate, "
                                                                   "default) or every frame (every: batching)")),
    "lookahead_mode": (("--lookahead-mode",), dict(choices=("both", "fixed", "auto"), help="latency: each run "
                                                   "with the fixed --lookahead, the automatic one of `vibe-rt "
                                                   "stream`, or both side by side (default both)")),
    "fps": (("--fps",), dict(type=float, help="demo-source frame rate (default 30)")),
    "refresh_hz": (("--refresh-hz",), dict(type=float, help="display refresh for the floor (default 60)")),
    "video": (("--video",), dict(metavar="FILE", help="use this video (looped) instead of the demo source")),
    "tag": (("--tag",), dict(metavar="NAME", help="latency: add NAME to the result file "
                                                  "(latency[_every]_NAME-<machine>.json), e.g. 10min")),
    "target_ms": (("--target-ms",), dict(type=float, help="p99 latency target per call (default lookahead/2)")),
    "max_batch": (("--max-batch",), dict(type=int, help="largest batch (default 512: the sweep ends where the "
                                                        "target breaks; quick 8)")),
    "data": (("--data",), dict(metavar="DIR", help="quality: dataset folder with test/ and train/ (default: "
                                                   "like the checkpoint's recorded training data, from a fresh "
                                                   "seed); simulate: "
                                                   "folder to write the dataset to (default: a temporary one)")),
    "splits": (("--splits",), dict(type=int, help="random half splits (default 100, quick 20)")),
    "montage": (("--montage",), dict(action="append", help="montage (inference, simulate: one, default "
                                                           "things-eeg2; model-size: repeatable, default "
                                                           "things-eeg2 and things-meg)")),
    "seconds": (("--seconds",), dict(type=float, help="time per batch-1 measurement (default 1.5 s for small "
                                                      "models, 2 s for large ones; quick 0.3)")),
    "min_iters": (("--min-iters",), dict(type=int, help="rounds at least (default 20, quick 5)")),
    "max_iters": (("--max-iters",), dict(type=int, help="rounds at most (default 2000)")),
    "warmup": (("--warmup",), dict(type=int, help="untimed calls first (default 10, quick 2)")),
    "repeats": (("--repeats",), dict(type=int, help="timed calls per stage (default 50, quick 10)")),
    "seed": (("--seed",), dict(type=int, help="simulation seed (default 0)")),
    "n_train": (("--n-train",), dict(type=int, help="training images (default: the montage's dataset; quick 50)")),
    "n_test": (("--n-test",), dict(type=int, help="test images (default: the montage's dataset; quick 12)")),
    "noise_scale": (("--noise-scale",), dict(type=float, help="background level (default 0.4; 1 = realistic; "
                                                              "the embedded model is trained at 0.1)")),
    "machine": (("--machine",), dict(help="name in the result file (default: detected)")),
    "pacing": (("--pacing",), dict(choices=("auto", "vsync", "clock"), help="frame pacing (default auto: by the "
                                                                            "clock without vsync, e.g. Xvfb)")),
    "size": (("--size",), dict(metavar="WxH", help="window size (default 800x600)")),
    "synth": (("--synth",), dict(action="store_true", help="drive the synthesized stream too (embedded model, "
                                                           "ONNX Runtime, 1000 Hz): markers then come from it")),
}

_INFERENCE = ("backend", "device", "model", "threads", "engines_dir")
#: name -> (question, the options it reads besides --out and --no-write)
_BENCHMARKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "latency": ("per-stage and glass-to-LSL latency inside the real streaming pipeline (demo source), per "
                "backend: torch eager vs the engines",
                ("quick", *_INFERENCE, "duration", "lookahead", "lookahead_mode", "srate", "chunk_ms", "event_rate",
                 "events", "fps", "refresh_hz", "video", "tag")),
    "stream": ("sampling-rate error, timestamp regularity, push lag and drift received by an LSL inlet in another "
               "process, vs MNE-LSL's PlayerLSL",
               ("quick", "duration", "channels", "srate", "chunk_ms", "lookahead", "peer", "artifacts")),
    "throughput": ("events/s per backend and batch size within the p99 latency target",
                   ("quick", *_INFERENCE, "lookahead", "target_ms", "max_batch")),
    "quality": ("encoding r of the embedded default and --model checkpoints vs the ridge baseline and the noise "
                "ceiling", ("quick", "model", "data", "splits", "threads")),
    "inference": ("per-stage latency and batch sweep of each backend on the embedded model and ViT-B-32 (writes "
                  "inference_latency-<machine>.json)",
                  ("quick", *_INFERENCE, "montage", "seconds", "min_iters", "max_iters", "warmup")),
    "comparator": ("does the comparator recover a known latency and gain; calibration in and out of sample; cost "
                   "per event", ("quick",)),
    "model-size": ("parameters, fp32 size and batch-1 CPU latency of each network, tiny and ViT-B-32 presets "
                   "(writes model_size-<machine>.json)",
                   ("quick", "model", "montage", "threads", "warmup", "repeats")),
    "simulate": ("time, memory and quality of the default simulated dataset, background-noise cost, figures",
                 ("quick", "montage", "data", "seed", "n_train", "n_test", "noise_scale", "machine")),
    "experiment-timing": ("PsychoPy RSVP onset and marker timing (Xvfb when there is no DISPLAY; writes "
                          "experiment_timing[_synth]-<machine>.json)",
                          ("quick", "duration", "pacing", "size", "synth")),
    "artifacts": ("5 s of a 64-channel stream with every artifact as an LSL inlet receives it: markers per kind, "
                  "blink amplitudes, and the README's picture (writes artifacts-<machine>.json and .png)", ()),
}
_SUITE = ("latency", "stream", "throughput", "quality")  # vibe_rt.bench.suite.SUITE (not imported here)


def _add_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in ("out", "write", *names):
        flags, kwargs = _OPTIONS[name]
        parser.add_argument(*flags, dest=name, **kwargs)
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark (latency, stream, throughput, quality, ...); write JSON (+ PNG) results",
        description="Benchmarks, each against a peer in the same run; results: <out>/<name>-<machine>.json. "
                    "Without a name: all. `vibe-rt bench <name> --help` lists the options of each.")
    parser.set_defaults(func=run, which="all", json=False)
    names = parser.add_subparsers(dest="which", metavar="NAME", parser_class=type(parser))
    suite_options = tuple(dict.fromkeys(o for n in _SUITE for o in _BENCHMARKS[n][1]))
    entries = {**_BENCHMARKS, "all": (f"{', '.join(_SUITE)} one after the other (a benchmark that cannot run "
                                      "here is reported and skipped)", suite_options)}
    for name, (question, options) in entries.items():
        aliases = [name.replace("-", "_")] if "-" in name else []
        sub = names.add_parser(name, aliases=aliases, help=question,
                               description=question[0].upper() + question[1:] + ".",
                               argument_default=argparse.SUPPRESS)
        _add_options(sub, options)
        sub.set_defaults(which=name)
    tables = names.add_parser("tables", help="rebuild the benchmark tables of README.md and benchmarks/README.md",
                              description="Rebuild the tables between the bench-table markers from the JSON "
                                          "results; --check writes nothing and exits 1 when a file is out of date.")
    tables.add_argument("files", nargs="*", help="Markdown files (default: both READMEs of the source checkout)")
    tables.add_argument("--results", metavar="DIR", help="folder of JSON results (default benchmarks/results/)")
    tables.add_argument("--check", action="store_true", help="exit 1 when a file is out of date; write nothing")
    tables.add_argument("--print", dest="print_only", action="store_true", help="print the tables, write nothing")
    tables.set_defaults(which="tables")


def _tables(args: argparse.Namespace) -> int:
    from ..bench import tables

    result, _ = tables.run(results=args.results, files=args.files, check=args.check, print_only=args.print_only)
    if args.print_only:
        print(result["content"])
    for path in result["stale"]:
        print(f"{'out of date' if args.check else 'updated'}: {path}")
    return 1 if args.check and result["stale"] else 0


def run(args: argparse.Namespace) -> int:
    if args.which == "tables":
        return _tables(args)
    from ..bench import suite

    given = {k: v for k, v in vars(args).items() if k in suite.BenchConfig.__dataclass_fields__}
    config = suite.BenchConfig(**given)
    if args.which == "all":
        results = suite.run_suite(config)
    else:
        results = {args.which: suite.run(args.which, config)}
    summaries: dict[str, Any] = {}
    for which, result in results.items():
        if isinstance(result, Exception):
            summaries[which] = {"skipped": str(result)}
            continue
        payload, path = result
        summaries[which] = {"summary": payload.get("summary"), "json": str(path) if path else None}
        if not args.json:
            print(f"== {which}: {path}")
            print(json.dumps(payload.get("summary"), indent=1, default=str))
    if args.json:
        print(json.dumps(summaries, indent=1, default=str))
    skipped = [which for which, s in summaries.items() if "skipped" in s]
    if skipped:
        print(f"vibe-rt bench: skipped {', '.join(skipped)} (see the messages above)", file=sys.stderr)
    return 0
