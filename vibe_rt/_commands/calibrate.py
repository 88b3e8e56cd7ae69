"""``vibe-rt calibrate``: fit a per-channel gain / latency calibration profile from a comparison session."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._options import add_comparison_options, comparison_config

if TYPE_CHECKING:
    from ..calibration import CalibrationProfile

_EPILOG = """\
the session is either a report folder (or its report.json) written by `vibe-rt compare --report DIR`, or a
recording compared offline first (same options as `vibe-rt compare --live-file`).

model: live(t) = gain[channel] * synthesized(t - latency), fitted jointly by least squares on the running ERPs
(gain per channel, an intercept per image and channel, latency to a fraction of a sample) with the synthesized
signal cut at onset - latency (overlapping responses included: the synthesized side is the signal the stream
makes for the session's onsets); each gain and latency comes with a standard error from a block bootstrap over
the events. The stream applies the latency as an onset delay of the whole response. With --adapter, also a
per-dimension scale and shift of the model's latent (fitted through the decoder of --model, default the embedded
model: pass the model that synthesized the session); it is kept only if it improves the held-out ERP r (fit on
odd, test on even repetitions), and the profile then works only with that model.
Use the profile with: vibe-rt stream --calibration calibration/NAME.json

examples:
  vibe-rt calibrate --session reports/session1                  # -> calibration/session1.json
  vibe-rt calibrate --session reports/session1 --out calibration/lab-eeg.json --adapter
  vibe-rt calibrate --session rec.fif --stimulus-log stim.csv --model ckpt/vibe --images stimuli/ \\
      --out calibration/rec.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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
    add_comparison_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare.run import CalibrateConfig, calibrate_session

    config = CalibrateConfig(session=args.session, out=args.out, per_channel_latency=args.per_channel_latency,
                             adapter=args.adapter, compare=comparison_config(args))
    profile, path = calibrate_session(config)
    _print_profile(profile, path, sys.stdout)
    return 0


def _print_profile(profile: CalibrationProfile, path: Path, out: Any) -> None:
    """The fitted latency and gain, the ERP metrics before and after, and the adapter's verdict."""
    b, a = profile.metrics["before"], profile.metrics["after"]
    lat = profile.latency_s
    if isinstance(lat, float):
        lat_txt = f"{1e3 * lat:+.1f} ms"
    else:
        lat_txt = f"per channel {1e3 * min(lat):+.1f}..{1e3 * max(lat):+.1f} ms"
    unc = profile.uncertainty
    lat_se = unc.get("latency_se_s")
    if isinstance(lat_se, (int, float)):
        lat_txt += f" +- {1e3 * lat_se:.2f}"
    out.write(f"latency: {lat_txt} (live later > 0); gain: {min(profile.gain):.2f}..{max(profile.gain):.2f}\n")
    gain_se = unc.get("gain_se")
    if gain_se:
        lats = profile.latency_s if isinstance(profile.latency_s, tuple) else None
        lat_ses = lat_se if isinstance(lat_se, list) else None
        out.write(f"per channel (standard errors: {unc['method']}, {unc['n_boot']} replicates, blocks of "
                  f"{unc.get('block', 1)} events):\n")
        for i, (ch, g, se) in enumerate(zip(profile.channels, profile.gain, gain_se)):
            extra = f"  latency {1e3 * lats[i]:+.1f} +- {1e3 * lat_ses[i]:.1f} ms" if lats and lat_ses else ""
            out.write(f"  {ch:>6}  gain {g:.3f} +- {se:.3f}{extra}\n")
    else:
        out.write("uncertainty: n/a (the session kept no single events to resample)\n")
    out.write(f"ERP r:    before {b['erp_r']:+.3f}  after {a['erp_r']:+.3f}\n")
    out.write(f"ERP RMSE: before {b['erp_rmse']:.3g}  after {a['erp_rmse']:.3g}\n")
    held = profile.metrics.get("heldout")
    if held:
        out.write(f"held out (fit odd, test even repetitions): r {held['before']['erp_r']:+.3f} -> "
                  f"{held['after']['erp_r']:+.3f}, RMSE {held['before']['erp_rmse']:.3g} -> "
                  f"{held['after']['erp_rmse']:.3g}\n")
    fit = (held or {}).get("adapter")
    if fit:
        best = max(fit["penalty_r"].values())
        verdict = (f"kept (penalty {fit['chosen']:g}), in sample r {profile.metrics['after_adapter']['erp_r']:+.3f}"
                   if fit["kept"] else "not kept: no better than without it")
        out.write(f"latent adapter: held-out r {fit['identity_r']:+.3f} -> {best:+.3f}, {verdict}\n")
    out.write(f"profile: {path}\n")
