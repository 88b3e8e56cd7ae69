"""``vibe-rt devices``: the amplifiers ``vibe-rt stream --device`` emulates (built-in and user profiles)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..devices import DeviceProfile

_EPILOG = """\
user profiles: every *.json in the folders of VIBE_RT_DEVICES (separated like PATH), else in
~/.config/vibe-rt/devices; a profile file can also be given directly (vibe-rt stream --device my-amp.json).
Give a name or file to see one profile in full (and check a file of your own).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "devices", help="list the amplifiers vibe-rt stream --device emulates",
        description="List the device profiles (built-in and user) that vibe-rt stream --device emulates: channels, "
                    "rates, resolution, reference, LSL stream shape and transport delay.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("device", nargs="?", metavar="NAME|FILE", help="show one profile in full (its channels, "
                        "positions and sources); a file is validated")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _rates(summary: dict) -> str:
    return "/".join(f"{r:g}" for r in summary["rates_hz"])


def _chunk(summary: dict) -> str:
    lsl = summary["lsl"]
    return f"{lsl['chunk_size']} smp" if lsl["chunk_size"] is not None else f"{1e3 * lsl['chunk_s']:g} ms"


def _delay(value: float | None) -> str:
    return "unknown" if value is None else f"{1e3 * value:g} ms"


def _table(summaries: list[dict]) -> str:
    header = ("name", "EEG+other ch", "rates Hz (default)", "resolution", "reference", "LSL type/format/chunk", "delay",
              "origin")
    rows = [(s["name"], f"{s['channels']}" + (f"+{s['extra_channels']}" if s["extra_channels"] else ""),
             f"{_rates(s)} ({s['default_rate_hz']:g})",
             f"{s['resolution']:g} {s['unit']}", s["reference"].split(" (")[0],
             f"{s['lsl']['type']}/{s['lsl']['channel_format']}/{_chunk(s)}", _delay(s["transport_delay_s"]),
             s["origin"]) for s in summaries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _details(profile: DeviceProfile) -> dict:
    """Everything about one profile (``vibe-rt devices NAME``)."""
    return {**profile.summary(), "lsl_name": profile.lsl.name, "lsl_source": profile.lsl.source,
            "channel_labels": list(profile.channels),
            "equivalents": list(profile.equivalents) if profile.equivalents else None,
            "positions_mm": (1000 * profile.positions).round(1).tolist(), "range": profile.range,
            "precision_bits": profile.precision_bits, "transport_delay_note": profile.transport_delay_note,
            "sources": list(profile.sources)}


def run(args: argparse.Namespace) -> int:
    from ..devices import list_devices, load_device

    if args.device:
        details = _details(load_device(args.device))
        if args.json:
            print(json.dumps(details, indent=2))
            return 0
        print(f"{details['name']}: {details['manufacturer']} {details['model']} ({details['origin']})")
        for key in ("channels", "rates_hz", "default_rate_hz", "resolution", "unit", "range", "precision_bits",
                    "reference", "ground", "positions", "lsl", "lsl_name", "transport_delay_s",
                    "transport_delay_note", "lsl_source"):
            print(f"  {key}: {details[key]}")
        print("  channel labels: " + ", ".join(details["channel_labels"]))
        if details["equivalents"]:
            print("  10-10 equivalents: " + ", ".join(details["equivalents"]))
        print("  sources:\n" + "\n".join(f"    - {s}" for s in details["sources"]))
        return 0
    summaries = [d.summary() for d in list_devices()]
    print(json.dumps(summaries, indent=2) if args.json else _table(summaries))
    return 0
