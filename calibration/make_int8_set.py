"""Generate the default INT8 calibration image set ``calibration/int8/`` (32 procedural PNGs, 96 x 96).

Deterministic (seeded): re-running it rewrites identical files. The images span what a camera or an RSVP
experiment shows the encoder: smooth gradients, edges and gratings at several orientations and spatial
frequencies, blobs and objects on plain backgrounds, textures and noise, in colour and grey, bright and dark.

Usage: ``python calibration/make_int8_set.py [--out calibration/int8] [--n 32] [--size 96]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vibe_rt.runtime.int8_set import N_IMAGES, SEED, SIZE, write_int8_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "int8")
    parser.add_argument("--n", type=int, default=N_IMAGES)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    write_int8_set(args.out, args.n, args.size, args.seed)
    print(f"wrote {args.n} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
