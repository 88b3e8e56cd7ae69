"""``vibe-rt experiment rsvp``: a PsychoPy RSVP experiment whose flips drive the synthesized stream and markers."""

from __future__ import annotations

import argparse

from ._options import MARKER_SCHEMA

_EPILOG = f"""\
timing: durations are whole frames of the measured refresh rate (e.g. 0.1 s = 6 frames at 60 Hz). Each onset
is the flip time (PsychoPy clock) converted to the LSL clock; its marker is stamped with that time and the
synthesized response is placed there. A flip interval above 1.5 refresh periods counts as a dropped frame.
Without vsync (Xvfb, some VMs) frames are paced by the clock at --refresh Hz (default 60).

streams (LSL): <name> (synthesized M/EEG, unless --no-synth), <name>-markers (JSON per onset,
{MARKER_SCHEMA}), <name>-codes (int32: image i -> i+1, targets after the images, key press 99999).

log: a TSV row per trial (trial, sequence, position, image, is_target, code, planned_onset, actual_onset_lsl,
flip_interval, on_duration, dropped, marker), flushed as the run goes. Escape aborts.

examples:
  vibe-rt experiment rsvp --images stimuli/ --repetitions 4 --targets targets/ --fullscreen
  vibe-rt experiment rsvp --images stimuli/ --no-synth --log run1.tsv      # markers only (real amplifier)
  xvfb-run -a vibe-rt experiment rsvp --images stimuli/ --windowed        # headless test run
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..experiment.rsvp import RsvpConfig
    from ..experiment.session import STREAM_OPTIONS, RsvpSessionConfig
    from ..options import add_arguments
    from ..stream.config import StreamConfig

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
    display = p.add_argument_group("display")
    mode = display.add_mutually_exclusive_group()
    mode.add_argument("--fullscreen", dest="windowed", action="store_false", default=False,
                      help="full screen (default)")
    groups = add_arguments(p, RsvpSessionConfig, groups={"display": display, "display mode": mode})
    add_arguments(p, RsvpConfig, groups=groups)
    stream = groups["stream"]
    add_arguments(p, StreamConfig, only=STREAM_OPTIONS, groups={"model": stream, "output": stream})
    p.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def config_from_args(args: argparse.Namespace):  # -> RsvpSessionConfig
    """The session an ``experiment rsvp`` command line describes (its --seed also seeds the stream)."""
    from ..experiment.rsvp import RsvpConfig
    from ..experiment.session import STREAM_OPTIONS, RsvpSessionConfig
    from ..options import values_from_namespace
    from ..stream.config import StreamConfig

    stream = StreamConfig(source="none", seed=args.seed,
                          **values_from_namespace(args, StreamConfig, only=STREAM_OPTIONS))
    return RsvpSessionConfig(design=RsvpConfig(**values_from_namespace(args, RsvpConfig)), stream=stream,
                             **values_from_namespace(args, RsvpSessionConfig))


def run(args: argparse.Namespace) -> int:
    from ..experiment.session import run_rsvp_session

    summary = run_rsvp_session(config_from_args(args))
    onset = summary.get("onset_error_s") or {}
    print(f"presented {summary['n_presented']}/{summary['n_trials']} images, {summary['n_dropped']} dropped "
          f"frame(s), pacing {summary['pacing']} at {summary['refresh_hz']:.2f} Hz "
          f"({summary['on_frames']} on / {summary['off_frames']} off frames); onset error p99 "
          f"{1e3 * onset.get('p99', float('nan')):.2f} ms; log {summary['log']}")
    if summary["score"]["hits"] + summary["score"]["misses"]:
        sc = summary["score"]
        print(f"targets: {sc['hits']} hit(s), {sc['misses']} miss(es), {sc['false_alarms']} false alarm(s)")
    return 130 if summary["aborted"] else 0
