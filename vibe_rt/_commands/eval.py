"""``vibe-rt eval``: score a ViBE checkpoint on a test split (encoding r, noise ceiling, ridge baseline)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a ViBE checkpoint on held-out test data",
        description="Encoding r (per channel and time across test images vs a random half of the repetitions, "
                    "100 splits; the headline is its mean), per-image r, split-half noise ceiling, stage-1 "
                    "reconstruction r, and a ridge baseline on the same image features. Writes report.json "
                    "and PNG plots.")
    parser.add_argument("--model", required=True, help="ViBE checkpoint (.safetensors/.json or stem)")
    parser.add_argument("--data", required=True, help="dataset folder with test/ (and train/ for the baseline)")
    parser.add_argument("--out", help="report folder (report.json, r_per_channel.png, r_per_time.png, r_map.png)")
    parser.add_argument("--splits", type=int, default=100, help="random half splits (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits")
    parser.add_argument("--no-baseline", action="store_true", help="skip the ridge baseline")
    parser.add_argument("--ridge-features", default="tokens", choices=("tokens", "pooled", "both"))
    parser.add_argument("--cache", help="image-feature cache (default DATA/.features)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.pipeline import evaluate_checkpoint

    rep = evaluate_checkpoint(args.model, args.data, args.out, n_splits=args.splits, seed=args.seed,
                              baseline=not args.no_baseline, ridge_kind=args.ridge_features,
                              cache_dir=args.cache, threads=args.threads)
    summary = {"headline_r": rep["headline_r"], "noise_ceiling": {k: rep["noise_ceiling"][k] for k in
                                                                  ("lower", "upper")},
               "reconstruction_r": rep["stage1"]["reconstruction_r"],
               "models": {k: v["r"] for k, v in rep["models"].items()}}
    print(json.dumps(summary))
    return 0
