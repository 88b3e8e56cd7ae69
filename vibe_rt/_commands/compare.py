"""``vibe-rt compare``: compare a live (or recorded) M/EEG stream with ViBE's synthesized responses."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._options import add_model_options

_EPILOG = """\
synthesized epochs come from (one of):
  --synth NAME    a running `vibe-rt stream` signal stream, epoched around the same markers (simplest, robust);
                  with --live-file: a recording of that stream, or the stream's name inside the same XDF file
  --model CKPT    predicted from the image each marker names (--images DIR resolves relative names)
  (neither)       the embedded default model, as with --model

markers: vibe-rt's JSON string markers {"image": ..., "frame_id": ..., "source": ...}, plain strings (the image
name), MNE-LSL annotation streams (string or one-hot) or numeric codes; running ERPs are averaged per image.

metrics: per-event Pearson r (per channel and overall), running-ERP r and RMSE, split-half noise ceiling of the
live data (odd/even repetitions, Spearman-Brown), latency by cross-correlation of the running ERPs (> 0: live
later), per-channel gain. Stream outages are survived (re-resolved by source_id) and reported.

examples:
  vibe-rt compare --live EEG --synth vibe-rt --report reports/session1
  vibe-rt compare --live-file session.xdf --live actiCHamp --synth vibe-rt --report reports/offline
  vibe-rt compare --live-file rec.fif --stimulus-log stim.csv --model ckpt/vibe --images stimuli/
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare a live or recorded M/EEG stream with synthesized responses (closed loop)",
        description="Epoch a live LSL stream (or a recording) around stimulus markers, compare it with ViBE's "
                    "synthesized responses for the same images and report correlation, RMSE, noise ceiling, "
                    "latency and gain, online and in a report.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
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


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Input, synthesized-source and comparison options shared by ``compare`` and ``calibrate``."""
    i = parser.add_argument_group("input")
    i.add_argument("--live", metavar="NAME_OR_TYPE", help="live LSL signal stream: name, type or source_id "
                   "(with --live-file: the signal stream inside an XDF file)")
    i.add_argument("--live-file", type=Path, metavar="FILE", help="offline: a recording (.fif, .vhdr, .edf, .bdf, "
                   ".xdf) instead of a live stream")
    i.add_argument("--markers", metavar="NAME", help="marker stream name/type/source_id (default: any stream of "
                   "type Markers or annotations)")
    i.add_argument("--stimulus-log", type=Path, metavar="CSV", help="--live-file: markers from a CSV with "
                   "columns onset (s, recording time) and image")
    i.add_argument("--live-unit", metavar="UNIT", help="unit of the live data when its stream/file does not say "
                   "(e.g. uV, V, fT)")
    s = parser.add_argument_group("synthesized")
    s.add_argument("--synth", metavar="NAME|FILE", help="synthesized signal stream (or recording), see below")
    add_model_options(s, model_help="checkpoint to predict from the marker images (default: the embedded model)",
                      backend_help="inference backend for --model (default: auto)")
    s.add_argument("--images", type=Path, metavar="DIR", help="folder that relative image names in markers are "
                   "resolved against")
    c = parser.add_argument_group("comparison")
    c.add_argument("--montage", metavar="NAME", help="model montage preset when no model is loaded (default: "
                   "the model's montage, else things-eeg2)")
    c.add_argument("--interpolation", choices=("auto", "spline", "idw"), default="auto", help="how model "
                   "channels missing from the live data are interpolated (default: auto = spherical spline for "
                   "EEG, inverse-distance weighting otherwise)")
    c.add_argument("--no-baseline", action="store_true", help="do not subtract the pre-stimulus mean")
    c.add_argument("--max-lag-ms", type=float, default=100.0, help="largest latency searched (default: 100)")


def build_synth(args: argparse.Namespace) -> tuple[Any, Any]:
    """The montage and the synthesized source (stream name/recording path or a PredictorSynth)."""
    from ..montage import get_montage

    if args.synth:
        return get_montage(args.montage or "things-eeg2"), args.synth
    from ..compare.session import PredictorSynth
    from ..runtime.predictor import load_predictor

    predictor = load_predictor(args.model, args.backend)
    montage = predictor.montage
    if args.montage and args.montage != montage.name:
        from ..errors import ConfigError

        raise ConfigError(f"--montage {args.montage} differs from the model's montage {montage.name!r}; "
                          "leave --montage out when using a model")
    return montage, PredictorSynth(predictor, args.images)


def comparator_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Comparator options from the command line."""
    return {"baseline": None if args.no_baseline else (None, 0.0), "max_lag_s": args.max_lag_ms / 1000.0}


def run_offline(args: argparse.Namespace, montage: Any, synth: Any) -> Any:
    """Offline comparison of ``--live-file``; returns the session."""
    from ..compare.offline import compare_offline

    synth_arg = synth
    synth_stream = None
    if isinstance(synth, str):  # a recording of the synthesized stream, or a stream inside the same XDF
        if Path(synth).is_file():
            synth_arg = Path(synth)
        else:
            synth_arg, synth_stream = args.live_file, synth
    return compare_offline(args.live_file, montage, synth_arg, stimulus_log=args.stimulus_log,
                           live_stream=args.live, markers_stream=args.markers, synth_stream=synth_stream,
                           interpolation=args.interpolation, unit_override=args.live_unit, **comparator_kwargs(args))


def _print_summary(s: dict[str, Any], out: Any) -> None:
    def f(v: Any, fmt: str = "+.3f") -> str:
        return "n/a" if v is None or v != v else format(v, fmt)

    out.write(f"events compared: {s['n_events']} ({s['n_keys']} images), lost: {s['n_lost']} "
              f"{s['lost_by_reason'] or ''}\n")
    out.write(f"mean event r: {f(s['mean_event_r'])}  running-ERP r: {f(s['erp_r'])}  "
              f"(latency-aligned: {f(s.get('erp_r_aligned'))})  noise ceiling: {f(s['noise_ceiling'], '.3f')}\n")
    out.write(f"latency: {f(1e3 * s['latency_s'] if s['latency_s'] == s['latency_s'] else None, '+.1f')} ms "
              f"(live later > 0)  ERP RMSE: {f(s['erp_rmse'], '.3g')}\n")


def _write_live_view(args: argparse.Namespace, live: Any) -> None:
    """Rewrite the report folder from a snapshot of the running comparison (the worker goes on meanwhile)."""
    from ..compare.report import write_report

    comp = live.snapshot()
    if comp.n_events:
        write_report(args.report, comp, outages=live.outages(), gaps=live.data_gaps(),
                     info={"mode": "live (running)", "streams": live.info()}, refresh_s=args.live_view)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if not args.live_file and not args.live:
        raise ConfigError("give --live NAME_OR_TYPE (a live LSL stream) or --live-file FILE (a recording)")
    montage, synth = build_synth(args)
    if args.live_file:
        session = run_offline(args, montage, synth)
        comp, outages, gaps = session.comparator, [], []
        info = {"mode": "offline", "file": str(args.live_file), "channel_match": session.live.match.to_dict()}
    else:
        from ..compare.live import LiveComparator

        # a short run does not wait longer for its streams than it runs
        resolve_timeout = 10.0 if args.duration is None else min(10.0, max(1.0, args.duration))
        live = LiveComparator(args.live, montage, synth, markers=args.markers, interpolation=args.interpolation,
                              unit_override=args.live_unit, resolve_timeout=resolve_timeout,
                              **comparator_kwargs(args))
        live.start()
        t0 = next_view = time.monotonic()
        view = args.report is not None and args.live_view > 0 and not args.no_html
        if view:
            sys.stdout.write(f"live view: {args.report / 'index.html'} (open it in a browser; it reloads every "
                             f"{args.live_view:g} s)\n")
        try:
            while args.duration is None or time.monotonic() - t0 < args.duration:
                time.sleep(0.5)
                if not args.quiet:
                    sys.stdout.write("\r" + live.status_line() + "   ")
                    sys.stdout.flush()
                if not live.running:
                    break
                if view and time.monotonic() >= next_view:
                    _write_live_view(args, live)
                    next_view = time.monotonic() + args.live_view
        except KeyboardInterrupt:
            pass
        finally:
            live.stop()
            if not args.quiet:
                sys.stdout.write("\n")
        comp, outages, gaps = live.comparator, live.outages(), live.data_gaps()
        info = {"mode": "live", "streams": live.info()}
        for o in outages:
            span = f"for {o['duration_s']:.2f} s" if o["duration_s"] is not None else "until stop"
            sys.stdout.write(f"missed: {o['stream']} stream down {span}, {o['events_lost']} event(s) lost\n")
    summary = comp.summary()
    _print_summary(summary, sys.stdout)
    if args.report:
        from ..compare.report import write_report

        path = write_report(args.report, comp, outages=outages, gaps=gaps, info=info, html_page=not args.no_html,
                            summary=summary)
        sys.stdout.write(f"report: {path}\n")
    return 0
