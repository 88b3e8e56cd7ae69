"""``vibe-rt info``: versions, devices, backends and the embedded model."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show versions, compute devices, backends and the embedded model",
                                   description="Show versions, compute devices, inference backends and the "
                                               "embedded default model.")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _embedded_model() -> dict[str, object]:
    from ..checkpoint import default_checkpoint_path, read_checkpoint_config
    from ..errors import CheckpointError

    path = default_checkpoint_path()
    try:
        config = read_checkpoint_config(path)
    except CheckpointError as err:
        return {"path": str(path), "status": f"unavailable: {err}"}
    montage = config["montage"]
    return {"path": str(path), "status": "ok", "montage": montage["name"], "channels": len(montage["ch_names"]),
            "encoder": config["config"]["encoder"]["name"], "metrics": config.get("metrics", {})}


def run(args: argparse.Namespace) -> int:
    from ..system import system_info

    info = system_info()
    info["embedded_model"] = _embedded_model()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"vibe-rt {info['vibe_rt']} (Python {info['python']}, {info['platform']})")
    print("libraries: " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items() if v))
    devices = info["devices"]
    gpus = ", ".join(f"{g['name']} (sm {g['compute_capability']})" for g in devices["cuda"]) or "none"
    print(f"devices: CPU {devices['cpu']} x{devices['cpu_count']}; CUDA GPUs: {gpus}")
    print("backends: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["backends"].items()))
    model = info["embedded_model"]
    print(f"embedded model: {model['path']} [{model['status']}]"
          + (f" montage {model['montage']} ({model['channels']} ch), encoder {model['encoder']}"
             if model["status"] == "ok" else ""))
    return 0
