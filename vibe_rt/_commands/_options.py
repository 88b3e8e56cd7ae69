"""Command-line options shared by ``compare`` and ``calibrate`` (``stream`` and ``experiment`` build theirs from
the declared options of their configs, :mod:`vibe_rt.options`).

Only argparse here: the modules behind the options are imported when a command runs, not when the parser is
built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..stream.config import BACKEND_CHOICES  # declarations only: cheap to import when the parser is built

#: Where every help text sends the reader for the keys of the JSON markers (one schema, described once).
MARKER_SCHEMA = "keys: README.md, section Markers"

_Group = argparse._ActionsContainer  # an ArgumentParser or an argument group of one


def add_model_options(group: _Group, *, model_help: str | None = None, backend_help: str | None = None) -> None:
    """``--model CKPT`` (default: the embedded model) and ``--backend {auto,torch,onnxruntime,tensorrt}``."""
    group.add_argument("--model", type=Path, metavar="CKPT", help=model_help or "checkpoint (.safetensors/.json "
                       "stem); default: the embedded default model")
    group.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=backend_help or "inference "
                       "backend (default: auto = TensorRT with a GPU, else ONNX Runtime, else torch)")


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
    i.add_argument("--device", metavar="NAME|FILE", help="the live amplifier's device profile (vibe-rt devices): "
                   "its channels are matched through it (10-10 equivalents of its labels, e.g. BioSemi A1=Fp1, and "
                   "its positions where the stream gives none)")
    s = parser.add_argument_group("synthesized")
    s.add_argument("--synth", metavar="NAME|FILE", help="synthesized signal stream (or recording), see below")
    add_model_options(s, model_help="checkpoint to predict from the marker images (default: the embedded model)",
                      backend_help="inference backend for --model (default: auto)")
    s.add_argument("--images", type=Path, metavar="DIR", help="folder that relative image names in markers are "
                   "resolved against")
    s.add_argument("--unit-scale", metavar="'N UNIT'", help="--model trained on a.u. data (whitened, z-scored): "
                   "what one unit of its output is, e.g. '2 uV' (as for vibe-rt stream)")
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
        montage=args.montage, unit_scale=args.unit_scale, device=args.device, interpolation=args.interpolation,
        baseline=not args.no_baseline, max_lag_ms=args.max_lag_ms, **run_options)  # type: ignore[arg-type]


__all__ = ["MARKER_SCHEMA", "add_comparison_options", "add_model_options", "comparison_config"]
