"""``vibe-rt stream``: simulate M/EEG from a camera, video, image folder or demo scene, streamed over LSL."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ._options import MARKER_SCHEMA

_EPILOG = f"""\
streams (LSL):
  <name>          type EEG (microvolts) or MEG (tesla), float32, --srate Hz, source_id vibe-rt-<name>-<montage>;
                  channel labels/units/types/locations (mm) and the output delay in the stream's meta-data
  <name>-markers  type Markers, one JSON string per stimulus onset ({MARKER_SCHEMA})
  <name>-codes    type Markers, int32 code per onset whose response is in the signal (for OpenViBE, MNE-LSL)

--record FILE.vhdr also writes FILE_events.tsv (onset, duration, trial_type, image, value, status) beside it;
--calibration PROFILE delays each whole response by the profile's latency and scales it by its gains (declared
in desc/vibe_rt/calibration and logged at start).

timing: a sample stamped t is pushed at t + --lookahead, so responses computed within the lookahead land at
their true time; later ones are counted as late and handled by --late-policy.

devices: --device NAME (vibe-rt devices lists them) streams that amplifier's cap, rates, resolution, units and
its LSL app's stream shape, every channel with a response; --device-delay emulates its transport delay and
--subject SEED a synthetic subject (alpha, evoked latency and amplitude, head).

examples:
  vibe-rt stream --source demo
  vibe-rt stream --camera 0 --srate 500 --record session.vhdr
  vibe-rt stream --images stimuli/ --on 0.2 --off 0.8 --events every
  vibe-rt stream --camera 0 --device biosemi-64 --subject 7
  vibe-rt stream --images stimuli/ --on 0.1 --off 0.1 --loop --shuffle --seed 1 --record rsvp.vhdr
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..options import add_arguments
    from ..stream.config import StreamConfig

    parser = subparsers.add_parser(
        "stream", help="stream simulated M/EEG over LSL from a camera, video, image folder or demo scene",
        description="Turn what a camera (or video, image folder, demo scene) shows into simulated M/EEG with "
                    "ViBE, in real time, and stream it with stimulus markers over Lab Streaming Layer.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_argument_group("source (one of)").add_mutually_exclusive_group()
    add_arguments(parser, StreamConfig, groups={"source (one of)": sources})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..app import run_stream
    from ..options import values_from_namespace
    from ..stream import StreamConfig, format_status

    config = StreamConfig(**values_from_namespace(args, StreamConfig))
    config.validate()  # before the signal handlers and the model: bad input is one line
    stop = threading.Event()
    previous = {}

    def _handler(signum, frame):  # noqa: ARG001
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler)
    show = not args.quiet
    tty = sys.stderr.isatty()

    def _status(snap: dict) -> None:
        if not show:
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
        if tty and show:
            sys.stderr.write("\n")
    print("vibe-rt stream: " + format_status(summary), file=sys.stderr)
    if summary.get("recording") not in (None, "ok"):
        print(f"vibe-rt: error: {summary['recording']}", file=sys.stderr)
        return 1
    return 0
