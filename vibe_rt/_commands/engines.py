"""``vibe-rt engines build|list|verify``: the inference engine cache (ONNX graphs, TensorRT plans)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "engines", help="build, list and verify inference engines (ONNX, TensorRT)",
        description="Export the model's stage graphs to ONNX (checked against PyTorch with ONNX Runtime) and "
                    "build TensorRT plans from them, cached in engines/<model-hash>/ with a manifest.")
    sub = parser.add_subparsers(title="actions", metavar="ACTION", dest="engines_action",
                                parser_class=type(parser))

    build = sub.add_parser("build", help="export ONNX graphs and/or build TensorRT plans",
                           description="Export, verify and build the engines of a model. A valid cached build "
                                       "is reused; one built for another model, TensorRT version or GPU, or "
                                       "with corrupt files, is rebuilt.")
    build.add_argument("--model", metavar="CKPT", help="checkpoint (.safetensors/.json); default: embedded model")
    build.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto",
                       help="tensorrt (needs TensorRT + CUDA GPU), onnxruntime (ONNX export only), auto: "
                            "tensorrt where it can run, else onnxruntime (default)")
    build.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                       help="engine precision (default: fp16 for tensorrt, fp32 for onnxruntime)")
    build.add_argument("--batch", metavar="MIN:OPT:MAX", default="1:1:8",
                       help="TensorRT optimisation profile batch sizes (default 1:1:8)")
    build.add_argument("--out", metavar="DIR", default=None, help="engine cache folder (default: engines/)")
    build.add_argument("--calibration", metavar="DIR", default=None,
                       help="INT8 calibration image folder (default: the built-in procedural set: "
                       "calibration/int8/ of a source checkout, else written once under ~/.cache/vibe-rt/)")
    build.add_argument("--no-fused", action="store_true", help="skip the fused chain graph")
    build.add_argument("--force", action="store_true", help="rebuild even when a valid cached build exists")
    build.set_defaults(func=run)

    lst = sub.add_parser("list", help="list cached engines", description="List the cached engine folders.")
    lst.add_argument("--out", metavar="DIR", default=None, help="engine cache folder (default: engines/)")
    lst.add_argument("--json", action="store_true", help="print machine-readable JSON")
    lst.set_defaults(func=run)

    verify = sub.add_parser("verify", help="check cached engines (checksums, validity, parity)",
                            description="Check every cached engine: file checksums, ONNX validity, TensorRT "
                                        "version/GPU match, and parity against PyTorch for the given model.")
    verify.add_argument("--model", metavar="CKPT", help="checkpoint; default: embedded model")
    verify.add_argument("--out", metavar="DIR", default=None, help="engine cache folder (default: engines/)")
    verify.add_argument("--json", action="store_true", help="print machine-readable JSON")
    verify.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def run(args: argparse.Namespace) -> int:
    action = args.engines_action
    if action == "build":
        return _build(args)
    if action == "list":
        return _list(args)
    if action == "verify":
        return _verify(args)
    return 0


def _build(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..runtime.backends import select_backend
    from ..runtime.cache import build_engines, parse_batch

    batch = parse_batch(args.batch)
    backend = select_backend(args.backend)  # a missing dependency is reported before the model loads
    model = load_model(args.model)
    folder, manifest = build_engines(model, backend=backend, precision=args.precision, batch=batch,
                                     engines_dir=args.out, fused=not args.no_fused, force=args.force,
                                     calibration_dir=args.calibration)
    print(f"{manifest.backend} {manifest.precision} engines of model {manifest.model_hash} in {folder}")
    for name, art in manifest.stages.items():
        print(f"  {name:8s} {art.file:14s} parity {art.parity_error:.2e}  in {art.input_shape} -> "
              f"out {art.output_shape}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..errors import EngineError
    from ..runtime.manifest import list_manifests, resolve_engines_dir

    root = resolve_engines_dir(args.out)
    entries = list_manifests(root)
    if args.json:
        rows = [{"folder": str(f), "error": str(m)} if isinstance(m, EngineError) else
                {"folder": str(f), **m.to_dict()} for f, m in entries]
        print(json.dumps(rows, indent=2))
        return 0
    if not entries:
        print(f"no engines in {root} (build them with `vibe-rt engines build`)")
        return 0
    for folder, manifest in entries:
        if isinstance(manifest, EngineError):
            print(f"{folder}: unreadable ({manifest})")
            continue
        gpu = f" on {manifest.gpu['name']} (sm {manifest.gpu['compute_capability']})" if manifest.gpu else ""
        trt = f" TensorRT {manifest.versions.get('tensorrt')}" if manifest.backend == "tensorrt" else ""
        worst = max((a.parity_error or 0.0) for a in manifest.stages.values()) if manifest.stages else 0.0
        print(f"{folder}: model {manifest.model_hash} {manifest.backend} {manifest.precision}{trt}{gpu}, "
              f"graphs {', '.join(manifest.stages)}, batch {':'.join(map(str, manifest.batch))}, "
              f"max parity error {worst:.1e}, built {manifest.build_time}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..runtime.cache import verify_engines

    results = verify_engines(args.out, load_model(args.model))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        if not results:
            print("no engines to verify (build them with `vibe-rt engines build`)")
        for r in results:
            parity = ", ".join(f"{k} {v:.1e}" for k, v in r.parity.items())
            print(f"[{r.status}] {r.folder} ({r.backend} {r.precision}): {r.message}"
                  + (f"; parity {parity}" if parity else ""))
    return 1 if any(r.status == "error" for r in results) else 0
