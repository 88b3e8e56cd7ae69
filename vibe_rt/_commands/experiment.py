"""``vibe-rt experiment rsvp``: a PsychoPy RSVP experiment whose flips drive the synthesized stream and markers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._options import add_model_options, add_stream_output_options, parse_size

_EPILOG = """\
timing: durations are whole frames of the measured refresh rate (e.g. 0.1 s = 6 frames at 60 Hz). Each onset
is the flip time (PsychoPy clock) converted to the LSL clock; its marker is stamped with that time and the
synthesized response is placed there. A flip interval above 1.5 refresh periods counts as a dropped frame.
Without vsync (Xvfb, some VMs) frames are paced by the clock at --refresh Hz (default 60).

streams (LSL): <name> (synthesized M/EEG, unless --no-synth), <name>-markers (JSON per onset: image, code,
trial, sequence, position, target), <name>-codes (int32: image i -> i+1, targets after the images, key press
99999).

log: a TSV row per trial (trial, sequence, position, image, is_target, code, planned_onset, actual_onset_lsl,
flip_interval, on_duration, dropped, marker), flushed as the run goes. Escape aborts.

examples:
  vibe-rt experiment rsvp --images stimuli/ --repetitions 4 --targets targets/ --fullscreen
  vibe-rt experiment rsvp --images stimuli/ --no-synth --log run1.tsv      # markers only (real amplifier)
  xvfb-run -a vibe-rt experiment rsvp --images stimuli/ --windowed        # headless test run
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment", help="run a stimulus experiment (PsychoPy) that drives the stream",
        description="Stimulus experiments with PsychoPy: each image onset is taken from the display flip, pushed "
                    "as an LSL marker and (unless --no-synth) turned into a synthesized M/EEG response.")
    sub = parser.add_subparsers(title="experiments", metavar="EXPERIMENT", parser_class=type(parser))
    p = sub.add_parser("rsvp", help="rapid serial visual presentation (THINGS-style)",
                       description="Rapid serial visual presentation of an image folder (THINGS-EEG2 style: "
                                   "sequences of images with a fixation point, optional targets with a "
                                   "response key). Needs PsychoPy: pip install 'vibe-rt[psychopy]'.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder of stimulus images")
    d = p.add_argument_group("design")
    d.add_argument("--on", type=float, default=0.1, metavar="S", help="image duration, seconds (default: 0.1)")
    d.add_argument("--off", type=float, default=0.1, metavar="S", help="blank duration, seconds (default: 0.1)")
    d.add_argument("--repetitions", type=int, default=1, metavar="N", help="times each image is shown (default: 1)")
    d.add_argument("--sequence-length", type=int, default=20, metavar="K", help="images per sequence (default: 20)")
    d.add_argument("--pause", type=float, default=1.0, metavar="S",
                   help="fixation pause before each sequence, seconds (default: 1.0)")
    d.add_argument("--self-paced", action="store_true", help="wait for the response key before each sequence")
    d.add_argument("--targets", metavar="DIR|FRACTION",
                   help="a folder of target images (inserted into --target-prob of the sequences), or a fraction "
                        "0..1: hold one image of --images out as the target and insert it into that fraction of "
                        "the sequences")
    d.add_argument("--target-prob", type=float, default=0.5, metavar="P",
                   help="with a target folder: probability that a sequence has a target (default: 0.5)")
    d.add_argument("--response-key", default="space", metavar="KEY", help="key reporting a target (default: space)")
    d.add_argument("--seed", type=int, default=None, help="seed of the image orders and target positions")
    w = p.add_argument_group("display")
    mode = w.add_mutually_exclusive_group()
    mode.add_argument("--fullscreen", dest="fullscreen", action="store_true", default=True,
                      help="full screen (default)")
    mode.add_argument("--windowed", dest="fullscreen", action="store_false", help="a window of --size")
    w.add_argument("--size", default="1024x768", metavar="WxH", help="window size (default: 1024x768)")
    w.add_argument("--screen", type=int, default=0, help="screen number (default: 0)")
    w.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="largest image side on screen, pixels (default: 0.8 x the window's shorter side; images "
                        "are shrunk, never enlarged)")
    w.add_argument("--refresh", type=float, default=None, metavar="HZ",
                   help="refresh rate (default: measured); the emulated rate when pacing by the clock")
    w.add_argument("--pacing", choices=("auto", "vsync", "clock"), default="auto",
                   help="frame timing: vsync (flips block on the display), clock (emulated refresh, for displays "
                        "without vsync), auto (clock when the measured rate is above 240 Hz; default)")
    s = p.add_argument_group("stream")
    s.add_argument("--no-synth", action="store_true",
                   help="markers only (no synthesized signal), for sessions with a real amplifier")
    add_model_options(s)
    add_stream_output_options(s, source_id_help="LSL source_id prefix (default: vibe-rt-<name>-<montage>, with "
                              "--no-synth vibe-rt-<name>-experiment)")
    s.add_argument("--log", type=Path, default=None, metavar="FILE",
                   help="experiment log TSV (default: rsvp-<date-time>.tsv in the current folder)")
    s.add_argument("--summary", type=Path, default=None, metavar="FILE", help="also write the run summary as JSON")
    p.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def resolve_targets(spec: str | None, images: list[Path], target_prob: float,
                    seed: int | None) -> tuple[list[Path], list[Path], float]:
    """Turn ``--targets`` into (images, targets, target probability).

    A folder gives its images as targets (``target_prob`` unchanged); a fraction holds one image of ``images``
    out (chosen with ``seed``) as the single target, inserted into that fraction of the sequences.
    """
    import numpy as np

    from ..errors import ConfigError
    from ..experiment.rsvp import list_images

    if spec is None:
        return images, [], 0.0
    path = Path(spec)
    if path.is_dir():
        return images, list_images(path), target_prob
    try:
        frac = float(spec)
    except ValueError as err:
        raise ConfigError(f"--targets must be a folder of images or a fraction 0..1, got {spec!r} (no such "
                          "folder)") from err
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"--targets fraction must be within 0..1, got {frac}")
    if len(images) < 2:
        raise ConfigError("--targets FRACTION holds one image out as the target: give at least 2 images")
    k = int(np.random.default_rng(seed).integers(len(images)))
    return images[:k] + images[k + 1:], [images[k]], frac


def run(args: argparse.Namespace) -> int:
    import datetime as _dt

    from .._logs import logger
    from ..stream.lsl import MarkerOutlets
    from ..experiment.psychopy_rsvp import import_psychopy, run_rsvp
    from ..experiment.rsvp import RsvpConfig, list_images

    import_psychopy()  # fail early (missing PsychoPy or display) before any stream appears
    images = list_images(args.images)
    images, targets, target_prob = resolve_targets(args.targets, images, args.target_prob, args.seed)
    config = RsvpConfig(on_s=args.on, off_s=args.off, repetitions=args.repetitions,
                        sequence_length=args.sequence_length, target_prob=target_prob, seed=args.seed,
                        pause_s=args.pause, response_key=args.response_key, self_paced=args.self_paced)
    size = parse_size(args.size, "--size", "1024x768", minimum=16)
    log_path = args.log or Path(f"rsvp-{_dt.datetime.now():%Y%m%d-%H%M%S}.tsv")
    header = {"images": str(args.images), "targets": args.targets, "synth": not args.no_synth,
              "stream_name": args.name}
    if targets:
        logger.info("targets (press %s): %s", args.response_key, ", ".join(p.name for p in targets[:5]))

    def go(sink: object) -> dict:
        result = run_rsvp(images, config, targets=targets, sink=sink, fullscreen=args.fullscreen, size=size,
                          screen=args.screen, image_size=args.image_size, refresh_hz=args.refresh,
                          pacing=args.pacing, log_path=log_path, log_header=header)
        return result.to_dict()

    if args.no_synth:
        outlets = MarkerOutlets(args.name, args.source_id)
        try:
            summary = go(outlets)
        finally:
            outlets.close()
    else:
        from ..stream import StreamConfig, build_pipeline

        cfg = StreamConfig(source="none", model=args.model, backend=args.backend, srate=args.srate,
                           name=args.name, source_id=args.source_id, lookahead=args.lookahead, seed=args.seed)
        pipeline = build_pipeline(cfg)
        with pipeline:
            summary = go(pipeline)
            # let the last responses (epoch length after the last onset + lookahead) reach the stream
            import time

            deadline = time.monotonic() + 5.0
            while not pipeline.idle and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(args.lookahead + 0.05)
            summary["stream"] = pipeline.status()
    if args.summary is not None:
        args.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    onset = summary.get("onset_error_s") or {}
    print(f"presented {summary['n_presented']}/{summary['n_trials']} images, {summary['n_dropped']} dropped "
          f"frame(s), pacing {summary['pacing']} at {summary['refresh_hz']:.2f} Hz "
          f"({summary['on_frames']} on / {summary['off_frames']} off frames); onset error p99 "
          f"{1e3 * onset.get('p99', float('nan')):.2f} ms; log {log_path}")
    if summary["score"]["hits"] + summary["score"]["misses"]:
        sc = summary["score"]
        print(f"targets: {sc['hits']} hit(s), {sc['misses']} miss(es), {sc['false_alarms']} false alarm(s)")
    return 130 if summary["aborted"] else 0
