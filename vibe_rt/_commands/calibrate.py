"""``vibe-rt calibrate``: fit a per-channel gain / latency calibration profile from a comparison session."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_EPILOG = """\
the session is either a report folder (or its report.json) written by `vibe-rt compare --report DIR`, or a
recording compared offline first (same options as `vibe-rt compare --live-file`).

model: live(t) = gain[channel] * synthesized(t - latency); latency by cross-correlation of the running ERPs
(sub-sample), gain by least squares per channel. With --adapter, also a per-dimension scale and shift of the
model's latent (fitted through the decoder of --model, default the embedded model: pass the model that
synthesized the session); it is kept only if it improves the held-out ERP r (fit on odd, test on even
repetitions), and the profile then works only with that model.
Use the profile with: vibe-rt stream --calibration calibration/NAME.json

examples:
  vibe-rt calibrate --session reports/session1                  # -> calibration/session1.json
  vibe-rt calibrate --session reports/session1 --out calibration/lab-eeg.json --adapter
  vibe-rt calibrate --session rec.fif --stimulus-log stim.csv --model ckpt/vibe --images stimuli/ \\
      --out calibration/rec.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .compare import add_common_arguments

    parser = subparsers.add_parser(
        "calibrate", help="fit per-channel gain and latency from a comparison session",
        description="Fit a calibration profile (per-channel gain, latency offset, channel map) from a comparison "
                    "report or a recording, and show the metrics before and after.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session", type=Path, required=True, metavar="REPORT_OR_FILE",
                        help="comparison report folder/report.json, or a recording (.fif .vhdr .edf .bdf .xdf)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                        help="profile to write (default: calibration/<session name>.json)")
    parser.add_argument("--per-channel-latency", action="store_true", help="fit one latency per channel "
                        "(noisier) instead of one overall")
    parser.add_argument("--adapter", action="store_true", help="also fit a small latent adapter for --model "
                        "(needs images shown at least twice)")
    add_common_arguments(parser)
    parser.set_defaults(func=run)


def default_profile_path(session: Path) -> Path:
    """``calibration/<name>.json`` for a report folder (its name), its report.json (the folder's) or a recording
    (its stem)."""
    if session.suffix.lower() == ".json":
        session = session.parent
    return Path("calibration") / f"{session.stem if session.is_file() else session.name}.json"


def run(args: argparse.Namespace) -> int:
    from ..compare.calibrate import fit_calibration, save_calibration
    from ..compare.report import read_report

    session = args.session
    if args.out is None:
        args.out = default_profile_path(session)
    if session.is_dir() or session.suffix.lower() == ".json":
        report, erps, montage = read_report(session)
        channel_map = (report.get("info", {}).get("channel_match")
                       or report.get("info", {}).get("streams", {}).get("live", {}).get("channel_match") or {})
        channel_map = channel_map.get("map") if isinstance(channel_map, dict) else None
    else:
        from .compare import build_synth, run_offline

        args.live_file = session
        montage, synth = build_synth(args)
        sess = run_offline(args, montage, synth)
        erps = sess.comparator.erps()
        channel_map = sess.live.match.to_dict()["map"]
    adapter_model = None
    if args.adapter:
        from ..checkpoint import load_model

        adapter_model = load_model(args.model).model
    profile = fit_calibration(erps, montage, max_lag_s=args.max_lag_ms / 1000.0,
                              per_channel_latency=args.per_channel_latency, channel_map=channel_map,
                              name=args.out.stem, adapter_model=adapter_model)
    path = save_calibration(profile, args.out)
    b, a = profile["metrics_before"], profile["metrics_after"]
    lat = profile["latency_s"]
    if isinstance(lat, float):
        lat_txt = f"{1e3 * lat:+.1f} ms"
    else:
        lat_txt = f"per channel {1e3 * min(lat):+.1f}..{1e3 * max(lat):+.1f} ms"
    out = sys.stdout
    out.write(f"latency: {lat_txt} (live later > 0); gain: {min(profile['gain']):.2f}..{max(profile['gain']):.2f}\n")
    out.write(f"ERP r:    before {b['erp_r']:+.3f}  after {a['erp_r']:+.3f}\n")
    out.write(f"ERP RMSE: before {b['erp_rmse']:.3g}  after {a['erp_rmse']:.3g}\n")
    held = profile.get("metrics_heldout")
    if held:
        out.write(f"held out (fit odd, test even repetitions): r {held['before']['erp_r']:+.3f} -> "
                  f"{held['after']['erp_r']:+.3f}, RMSE {held['before']['erp_rmse']:.3g} -> "
                  f"{held['after']['erp_rmse']:.3g}\n")
    fit = (held or {}).get("adapter")
    if fit:
        best = max(fit["penalty_r"].values())
        verdict = (f"kept (penalty {fit['chosen']:g}), in sample r {profile['metrics_after_adapter']['erp_r']:+.3f}"
                   if fit["kept"] else "not kept: no better than without it")
        out.write(f"latent adapter: held-out r {fit['identity_r']:+.3f} -> {best:+.3f}, {verdict}\n")
    out.write(f"profile: {path}\n")
    return 0
