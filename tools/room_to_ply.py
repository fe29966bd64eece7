"""Writes a generated benchmark room as a PLY file, to try `r2s-segment` without a scan of your own.

    python tools/room_to_ply.py --seed 0 --out room.ply [--points-per-m2 1500]

The room of `r2s_model.synthetic.rooms.generate_room`: metres, z up, floor at z = 0, RGB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from r2s_model.synthetic.rooms import generate_room
from r2s_ros.segment.outputs import atomic_write, write_ply


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="room seed")
    parser.add_argument("--out", type=Path, required=True, help="PLY file to write")
    parser.add_argument("--points-per-m2", type=float, default=1500.0, help="scan density")
    args = parser.parse_args(argv)
    room = generate_room(args.seed, points_per_m2=args.points_per_m2)
    colors = np.rint(room.colors * 255).astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write({args.out: lambda path: write_ply(path, room.points, colors)})
    print(f"{args.out}: room {args.seed}, {len(room.points)} points, {len(room.objects)} objects")


if __name__ == "__main__":
    main()
