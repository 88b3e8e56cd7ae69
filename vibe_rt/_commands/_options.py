"""Command-line options shared by several subcommands (``stream``, ``compare``, ``calibrate``, ``experiment``).

Only argparse here: the modules behind the options are imported when a command runs, not when the parser is
built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Where every help text sends the reader for the keys of the JSON markers (one schema, described once).
MARKER_SCHEMA = "keys: README.md, section Markers"

# the names of vibe_rt.runtime.backends.BACKENDS plus "auto" (not imported: building the parser stays cheap)
BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")

_Group = argparse._ActionsContainer  # an ArgumentParser or an argument group of one


def add_model_options(group: _Group, *, model_help: str | None = None, backend_help: str | None = None) -> None:
    """``--model CKPT`` (default: the embedded model) and ``--backend {auto,torch,onnxruntime,tensorrt}``."""
    group.add_argument("--model", type=Path, metavar="CKPT", help=model_help or "checkpoint (.safetensors/.json "
                       "stem); default: the embedded default model")
    group.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=backend_help or "inference "
                       "backend (default: auto = TensorRT with a GPU, else ONNX Runtime, else torch)")


def add_stream_output_options(group: _Group, *, source_id_help: str, lookahead_help: str | None = None) -> None:
    """The LSL signal stream's ``--srate``, ``--name``, ``--source-id`` and ``--lookahead``."""
    group.add_argument("--srate", type=float, default=1000.0, help="output sampling rate in Hz, e.g. 250, 500, "
                       "1000 (default: 1000)")
    group.add_argument("--name", default="vibe-rt", help="LSL stream name (default: vibe-rt)")
    group.add_argument("--source-id", metavar="ID", default=None, help=source_id_help)
    group.add_argument("--lookahead", type=float, default=0.25, metavar="S", help=lookahead_help or "output delay "
                       "in seconds: the time budget for computing a response (default: 0.25)")


def add_comparison_options(parser: argparse.ArgumentParser) -> None:
    """Input, synthesized-source and comparison options of ``compare`` and ``calibrate``
    (:class:`vibe_rt.compare.CompareConfig`, see :func:`comparison_config`)."""
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
                   "(V, mV, uV, nV, T, pT, fT, T/m, fT/cm, fT/m)")
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


def comparison_config(args: argparse.Namespace, **run_options: object):  # -> vibe_rt.compare.CompareConfig
    """The :class:`~vibe_rt.compare.CompareConfig` of :func:`add_comparison_options`' arguments; ``run_options``
    sets the others (``duration``, ``report`` ...)."""
    from ..compare.run import CompareConfig

    return CompareConfig(
        live=args.live, live_file=args.live_file, markers=args.markers, stimulus_log=args.stimulus_log,
        live_unit=args.live_unit, synth=args.synth, model=args.model, backend=args.backend, images=args.images,
        montage=args.montage, interpolation=args.interpolation, baseline=not args.no_baseline,
        max_lag_ms=args.max_lag_ms, **run_options)  # type: ignore[arg-type]


def parse_size(text: str, option: str = "--size", example: str = "640x480", minimum: int = 1) -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``; a :class:`~vibe_rt.errors.ConfigError` naming ``option`` otherwise."""
    from ..errors import ConfigError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} must look like {example}, got {text!r}") from None
    if w < minimum or h < minimum:
        raise ConfigError(f"{option} must be at least {minimum}x{minimum}, got {text!r}")
    return w, h


__all__ = ["BACKEND_CHOICES", "MARKER_SCHEMA", "add_comparison_options", "add_model_options", "add_stream_output_options",
           "comparison_config", "parse_size"]
