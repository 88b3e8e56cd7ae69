"""``vibe-rt compare``: compare a live (or recorded) M/EEG stream with ViBE's synthesized responses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._options import MARKER_SCHEMA, add_comparison_options, comparison_config

_EPILOG = f"""\
synthesized epochs come from (one of):
  --synth NAME    a running `vibe-rt stream` signal stream, epoched around the same markers (simplest, robust);
                  with --live-file: a recording of that stream, or the stream's name inside the same XDF file
  --model CKPT    the signal the stream would have produced for the session's onsets: the response predicted
                  from each marker's image, overlap-added at its onset (--images DIR resolves relative names)
  (neither)       the embedded default model, as with --model
both are epoched like the live data (same window, baseline, anti-alias filter), so overlapping responses (any
SOA shorter than the epoch) are compared as they are, not confounded.

markers: vibe-rt's JSON string markers ({MARKER_SCHEMA}), plain strings (the image
name), MNE-LSL annotation streams (string or one-hot) or numeric codes; with --live-file, a recording's events
sidecar (<stem>_events.tsv, as `vibe-rt stream --record` writes it) is preferred to its own markers. Running
ERPs are averaged per image.

metrics: per-event Pearson r (per channel and overall), running-ERP r and RMSE, split-half noise ceiling of the
live data (odd/even repetitions, Spearman-Brown), latency and per-channel gain fitted jointly on the running ERPs
(> 0: live later). Stream outages are survived (re-resolved by source_id) and reported.

examples:
  vibe-rt compare --live EEG --synth vibe-rt --report reports/session1
  vibe-rt compare --live-file session.xdf --live actiCHamp --synth vibe-rt --report reports/offline
  vibe-rt compare --live-file rec.fif --stimulus-log stim.csv --model ckpt/vibe --images stimuli/
  vibe-rt compare --live-file rec.vhdr --images stimuli/        # a `vibe-rt stream --record` recording
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare a live or recorded M/EEG stream with synthesized responses (closed loop)",
        description="Epoch a live LSL stream (or a recording) around stimulus markers, compare it with ViBE's "
                    "synthesized responses for the same images and report correlation, RMSE, noise ceiling, "
                    "latency and gain, online and in a report.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_comparison_options(parser)
    g = parser.add_argument_group("run")
    g.add_argument("--duration", type=float, metavar="S", help="live: stop after S seconds (default: until Ctrl-C)")
    g.add_argument("--report", type=Path, metavar="DIR", help="write report.json, erps.npz, PNG figures and "
                   "index.html to DIR")
    g.add_argument("--no-html", action="store_true", help="no HTML page in the report")
    g.add_argument("--live-view", type=float, default=5.0, metavar="S", help="live: with --report, rewrite the "
                   "report every S seconds while running; its index.html reloads itself, so a browser shows the ERP "
                   "overlay per channel group and the metrics over time as they evolve (default: 5; 0: only at "
                   "the end)")
    g.add_argument("--quiet", action="store_true", help="no status line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare.run import run_compare

    config = comparison_config(args, duration=args.duration, report=args.report, html=not args.no_html,
                               live_view_s=args.live_view)
    config.validate()
    status = not args.quiet and not config.offline
    if config.live_view:
        sys.stdout.write(f"live view: {config.report / 'index.html'} (open it in a browser; it reloads every "
                         f"{config.live_view_s:g} s)\n")

    def _status(line: str) -> None:
        sys.stdout.write("\r" + line + "   ")
        sys.stdout.flush()

    try:
        result = run_compare(config, on_status=_status if status else None)
    finally:
        if status:
            sys.stdout.write("\n")
    for o in result.outages:
        span = f"for {o['duration_s']:.2f} s" if o["duration_s"] is not None else "until stop"
        sys.stdout.write(f"missed: {o['stream']} stream down {span}, {o['events_lost']} event(s) lost\n")
    _print_summary(result.summary, sys.stdout)
    if result.report is not None:
        sys.stdout.write(f"report: {result.report}\n")
    return 0


def _print_summary(s: dict[str, Any], out: Any) -> None:
    def f(v: Any, fmt: str = "+.3f") -> str:
        return "n/a" if v is None or v != v else format(v, fmt)

    out.write(f"events compared: {s['n_events']} ({s['n_keys']} images), lost: {s['n_lost']} "
              f"{s['lost_by_reason'] or ''}\n")
    out.write(f"mean event r: {f(s['mean_event_r'])}  running-ERP r: {f(s['erp_r'])}  "
              f"(latency-aligned: {f(s.get('erp_r_aligned'))})  noise ceiling: {f(s['noise_ceiling'], '.3f')}\n")
    out.write(f"latency: {f(1e3 * s['latency_s'] if s['latency_s'] == s['latency_s'] else None, '+.1f')} ms "
              f"(live later > 0)  ERP RMSE: {f(s['erp_rmse'], '.3g')}\n")
