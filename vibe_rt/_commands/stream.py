"""``vibe-rt stream``: simulate M/EEG from a camera, video, image folder or demo scene, streamed over LSL."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ._options import add_model_options, add_stream_output_options, parse_size

_EPILOG = """\
streams (LSL):
  <name>          type EEG (microvolts) or MEG (tesla), float32, --srate Hz, source_id vibe-rt-<name>-<montage>;
                  channel labels/units/types/locations (mm) and the output delay in the stream's meta-data
  <name>-markers  type Markers, JSON string per stimulus onset (event, frame, source, image, status)
  <name>-codes    type Markers, int32 code per onset whose response is in the signal (for OpenViBE, MNE-LSL)

timing: a sample stamped t is pushed at t + --lookahead, so responses computed within the lookahead land at
their true time; later ones are counted as late and handled by --late-policy.

examples:
  vibe-rt stream --source demo
  vibe-rt stream --camera 0 --srate 500 --record session.vhdr
  vibe-rt stream --images stimuli/ --on 0.2 --off 0.8 --events every
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream", help="stream simulated M/EEG over LSL from a camera, video, image folder or demo scene",
        description="Turn what a camera (or video, image folder, demo scene) shows into simulated M/EEG with "
                    "ViBE, in real time, and stream it with stimulus markers over Lab Streaming Layer.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_argument_group("source (one of)").add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="OpenCV camera index (e.g. 0)")
    src.add_argument("--video", type=Path, metavar="FILE", help="video file, played in real time")
    src.add_argument("--images", type=Path, metavar="DIR", help="folder of images shown as a slideshow")
    src.add_argument("--source", choices=("demo", "none"), help="'demo': built-in moving scene (no camera needed, "
                     "the default); 'none': background only")
    g = parser.add_argument_group("source options")
    g.add_argument("--as-fast-as-possible", action="store_true", help="--video: read frames as fast as they are "
                   "processed instead of at the file's frame rate")
    g.add_argument("--loop", action="store_true", help="--video/--images: start again at the end")
    g.add_argument("--on", type=float, default=0.5, metavar="S", help="--images: seconds each image is shown "
                   "(default: 0.5)")
    g.add_argument("--off", type=float, default=0.5, metavar="S", help="--images: blank seconds between images "
                   "(default: 0.5)")
    g.add_argument("--size", default="640x480", metavar="WxH", help="--camera: requested frame size "
                   "(default: 640x480)")
    g.add_argument("--fps", type=float, default=30.0, help="--camera: requested frame rate (default: 30)")
    m = parser.add_argument_group("model")
    add_model_options(m)
    m.add_argument("--calibration", type=Path, metavar="PROFILE", help="JSON calibration profile with per-channel "
                   "gain and latency_s applied to the predicted responses")
    o = parser.add_argument_group("output")
    o.add_argument("--montage", metavar="NAME|CH,CH,...", help="stream only these channels of the model: a preset "
                   "montage name or a comma-separated channel list (default: all model channels)")
    add_stream_output_options(o, source_id_help="LSL source_id (default: vibe-rt-<name>-<montage>)")
    o.add_argument("--late-policy", choices=("clip", "drop"), default="clip", help="a response later than the "
                   "lookahead: 'clip' adds its remaining part, 'drop' discards it (default: clip)")
    o.add_argument("--line-noise", type=int, choices=(0, 50, 60), default=0, help="add power-line noise at 50 or "
                   "60 Hz (default: 0 = none)")
    o.add_argument("--noise-scale", type=float, default=1.0, metavar="X", help="scale of the background activity "
                   "(0: evoked responses only; default: 1)")
    o.add_argument("--chunk-ms", type=float, default=5.0, metavar="MS", help="push interval in ms (default: 5)")
    o.add_argument("--record", type=Path, metavar="FILE.vhdr", help="also write the streamed signal and markers to "
                   "a BrainVision file (readable with mne.io.read_raw_brainvision, also after a crash)")
    o.add_argument("--seed", type=int, help="random seed of the background, line noise and demo scene")
    e = parser.add_argument_group("events")
    e.add_argument("--events", choices=("auto", "every", "rate", "scene"), default="auto", help="which frames are "
                   "stimulus onsets: every frame, a fixed rate, or scene changes (default: auto = every for "
                   "--images, scene otherwise)")
    e.add_argument("--event-rate", type=float, default=3.5, metavar="HZ", help="--events rate: onsets per second "
                   "(default: 3.5, a typical fixation rate)")
    e.add_argument("--threshold", type=float, default=12.0, metavar="X", help="--events scene: mean absolute "
                   "grey-level change (0-255) that counts as a new scene (default: 12)")
    e.add_argument("--refractory", type=float, default=0.25, metavar="S", help="--events scene: minimum seconds "
                   "between onsets (default: 0.25)")
    e.add_argument("--max-interval", type=float, default=1.0, metavar="S", help="--events scene: force an onset "
                   "after this many seconds without one; 0 disables (default: 1.0)")
    r = parser.add_argument_group("run")
    r.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C, or "
                   "the end of a video/image folder)")
    r.add_argument("--max-batch", type=int, default=4, help="largest inference batch when onsets queue up "
                   "(default: 4)")
    r.add_argument("--max-queue", type=int, default=8, help="onsets waiting for inference; beyond, the oldest is "
                   "dropped and counted (default: 8)")
    r.add_argument("--quiet", action="store_true", help="no live status line")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):  # -> StreamConfig
    """The :class:`~vibe_rt.stream.StreamConfig` described by parsed arguments."""
    from ..stream import StreamConfig

    if args.camera is not None:
        source = "camera"
    elif args.video is not None:
        source = "video"
    elif args.images is not None:
        source = "images"
    else:
        source = args.source or "demo"
    width, height = parse_size(args.size, "--size", "640x480")
    return StreamConfig(
        source=source, camera=args.camera or 0, width=width, height=height, fps=args.fps, video=args.video,
        as_fast_as_possible=args.as_fast_as_possible, loop=args.loop, images=args.images, on_s=args.on,
        off_s=args.off, model=args.model, backend=args.backend, montage=args.montage, srate=args.srate,
        name=args.name, source_id=args.source_id, lookahead=args.lookahead, events=args.events,
        event_rate=args.event_rate, threshold=args.threshold, refractory=args.refractory,
        max_interval=args.max_interval or None, late_policy=args.late_policy, line_noise=args.line_noise,
        noise_scale=args.noise_scale, record=args.record, duration=args.duration, calibration=args.calibration,
        max_batch=args.max_batch, max_queue=args.max_queue, chunk_ms=args.chunk_ms, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from ..stream import format_status, run_stream

    config = config_from_args(args)
    stop = threading.Event()
    previous = {}

    def _handler(signum, frame):  # noqa: ARG001
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler)
    tty = sys.stderr.isatty()

    def _status(snap: dict) -> None:
        if args.quiet:
            return
        line = format_status(snap)
        if tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        summary = run_stream(config, on_status=_status, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tty and not args.quiet:
            sys.stderr.write("\n")
    print("vibe-rt stream: " + format_status(summary), file=sys.stderr)
    return 0
