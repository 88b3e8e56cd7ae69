"""``vibe-rt bench``: latency, stream timing, throughput and quality benchmarks (see ``benchmarks/README.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_WHICH = ("latency", "stream", "throughput", "quality", "all")
_DEFAULT_DURATION = {"latency": (30.0, 5.0), "stream": (60.0, 10.0)}  # (normal, --quick) seconds


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure latency, stream timing, throughput and quality; write JSON (+ PNG) results",
        description="Benchmarks, each against a peer in the same run. latency: per-stage and glass-to-LSL "
                    "latency inside the real streaming pipeline (demo source), per backend (torch eager vs "
                    "engines). stream: sampling-rate error, timestamp regularity, push lag and drift received by "
                    "an LSL inlet in another process, vs MNE-LSL's PlayerLSL. throughput: events/s per backend "
                    "and batch size within the p99 latency target. quality: encoding r of the embedded default "
                    "and --model checkpoints vs the ridge baseline. Results: <out>/<name>-<machine>.json.")
    parser.add_argument("which", nargs="?", default="all", choices=_WHICH, help="benchmark to run (default: all)")
    parser.add_argument("--backend", default=None,
                        help="comma list of inference variants, e.g. torch,onnxruntime,onnxruntime-fused,"
                             "tensorrt-fp16 (default: torch eager and every engine backend available)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="inference device (default cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="short runs (latency 5 s, stream 10 s, small throughput sweep, small quality set)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of streaming for latency (default 30, quick 5) and stream (default 60, "
                             "quick 10)")
    parser.add_argument("--out", default=None,
                        help="result folder (default benchmarks/results/ in a source checkout, else ./vibe-rt-bench/)")
    parser.add_argument("--model", action="append", default=None,
                        help="checkpoint to benchmark (latency/throughput: the first; quality: each, repeatable) "
                             "or a preset 'tiny'/'base' (default: the embedded model, tiny preset if missing)")
    parser.add_argument("--data", default=None, help="quality: dataset folder with test/ and train/ (default: the "
                                                     "simulated dataset recorded in the checkpoint)")
    parser.add_argument("--lookahead", type=float, default=0.25, help="output delay in s (default 0.25)")
    parser.add_argument("--srate", type=float, default=1000.0, help="output rate in Hz (default 1000)")
    parser.add_argument("--channels", type=int, default=64, help="stream: channels (default 64)")
    parser.add_argument("--chunk-ms", type=float, default=5.0, help="push interval in ms (default 5)")
    parser.add_argument("--event-rate", type=float, default=None, help="latency: onsets/s (default 5, quick 10)")
    parser.add_argument("--fps", type=float, default=30.0, help="latency: demo-source frame rate (default 30)")
    parser.add_argument("--refresh-hz", type=float, default=60.0, help="latency: display refresh for the floor")
    parser.add_argument("--video", default=None, help="latency: use this video (looped) instead of the demo source")
    parser.add_argument("--target-ms", type=float, default=None,
                        help="throughput: p99 latency target per call (default lookahead/2)")
    parser.add_argument("--max-batch", type=int, default=None, help="throughput: largest batch (default 512: the "
                        "sweep ends where the target breaks; quick 8)")
    parser.add_argument("--splits", type=int, default=None, help="quality: random half splits (default 100)")
    parser.add_argument("--no-peer", action="store_true", help="stream: skip MNE-LSL's PlayerLSL")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--engines-dir", default=None, help="engine cache (default: engines/ or the user cache)")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    parser.set_defaults(func=run)


def _duration(args: argparse.Namespace, which: str) -> float:
    normal, quick = _DEFAULT_DURATION[which]
    if args.duration is not None:
        return float(args.duration)
    return quick if args.quick else normal


def _one(which: str, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    model = args.model[0] if args.model else None
    if which == "latency":
        from ..bench import latency

        return latency.run(backend=args.backend, model=model, device=args.device, duration=_duration(args, which),
                           event_rate=args.event_rate or (10.0 if args.quick else 5.0), srate=args.srate,
                           lookahead=args.lookahead, fps=args.fps, refresh_hz=args.refresh_hz, video=args.video,
                           chunk_ms=args.chunk_ms, threads=args.threads, engines_dir=args.engines_dir,
                           out_dir=args.out)
    if which == "stream":
        from ..bench import stream

        return stream.run(duration=_duration(args, which), channels=args.channels, srate=args.srate,
                          chunk_ms=args.chunk_ms, lookahead=args.lookahead, peer=not args.no_peer,
                          out_dir=args.out)
    if which == "throughput":
        from ..bench import throughput

        return throughput.run(backend=args.backend, model=model, device=args.device, lookahead=args.lookahead,
                              target_ms=args.target_ms, max_batch=args.max_batch or (8 if args.quick else 512),
                              seconds=0.5 if args.quick else 1.5, min_iters=5 if args.quick else 10,
                              threads=args.threads, engines_dir=args.engines_dir, out_dir=args.out)
    from ..bench import quality

    checkpoints = [m for m in args.model or [] if m not in ("tiny", "base")]  # presets have no trained weights
    return quality.run(models=checkpoints, data=args.data, quick=args.quick, n_splits=args.splits,
                       threads=args.threads, out_dir=args.out)


def _validate(args: argparse.Namespace) -> None:
    """Refuse invalid numbers before any benchmark runs (and writes its results)."""
    import math

    from ..errors import ConfigError

    checks = [("--srate", args.srate, 0, False), ("--lookahead", args.lookahead, 0, True),
              ("--chunk-ms", args.chunk_ms, 0, False), ("--duration", args.duration, 0, False),
              ("--channels", args.channels, 1, True), ("--event-rate", args.event_rate, 0, False),
              ("--fps", args.fps, 0, False), ("--refresh-hz", args.refresh_hz, 0, False),
              ("--target-ms", args.target_ms, 0, False), ("--max-batch", args.max_batch, 1, True),
              ("--splits", args.splits, 1, True), ("--threads", args.threads, 1, True)]
    for option, value, low, inclusive in checks:
        if value is None:
            continue
        ok = math.isfinite(value) and (value >= low if inclusive else value > low)
        if not ok:
            raise ConfigError(f"{option} must be {'>=' if inclusive else '>'} {low}, got {value:g}; see "
                              "`vibe-rt bench --help` for typical values")


def run(args: argparse.Namespace) -> int:
    from .._logs import logger
    from ..errors import VibeError

    _validate(args)

    todo = ("latency", "stream", "throughput", "quality") if args.which == "all" else (args.which,)
    summaries: dict[str, Any] = {}
    failed = []
    for which in todo:
        try:
            payload, path = _one(which, args)
        except VibeError as err:
            if args.which != "all":
                raise
            logger.error("bench %s skipped: %s", which, err)
            summaries[which] = {"skipped": str(err)}
            failed.append(which)
            continue
        summaries[which] = {"summary": payload.get("summary"), "json": str(path) if path else None}
        if not args.json:
            print(f"== {which}: {path}")
            print(json.dumps(payload.get("summary"), indent=1, default=str))
    if args.json:
        print(json.dumps(summaries, indent=1, default=str))
    if failed:
        print(f"vibe-rt bench: skipped {', '.join(failed)} (see the messages above)", file=sys.stderr)
    return 0
