"""SynthWorld generation rates: videos/s in memory (one process) and written to disk, on this machine.

python benchmarks/synthworld_rate.py [--videos N] [--size 64] [--frames 16] [--workers K] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from videoadapt.data.synthworld import SynthWorld, SynthWorldConfig
from videoadapt.data.synthworld.disk import write_synthworld
from videoadapt.utils.machine import machine_description


def in_memory_rate(config: SynthWorldConfig, videos: int) -> float:
    world = SynthWorld(config)
    world.video("train", 0)  # warm caches outside the timing
    start = time.perf_counter()
    for _ in world.videos("train", videos, start=1):
        pass
    return videos / (time.perf_counter() - start)


def image_rate(config: SynthWorldConfig, images: int) -> float:
    world = SynthWorld(config)
    start = time.perf_counter()
    for _ in world.images(images):
        pass
    return images / (time.perf_counter() - start)


def disk_rate(config: SynthWorldConfig, videos: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_synthworld(root, config, videos, workers=workers)
        return videos / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel disk measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = SynthWorldConfig(size=args.size, frames=args.frames)
    result = {
        "machine": machine_description(),
        "size": args.size,
        "frames": args.frames,
        "videos": args.videos,
        "in_memory_videos_per_s": in_memory_rate(config, args.videos),
        "in_memory_images_per_s": image_rate(config, args.videos),
        "disk_videos_per_s": disk_rate(config, args.videos, 1),
        f"disk_{args.workers}_workers_videos_per_s": disk_rate(config, args.videos, args.workers),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cpu']}, {m['usable_cpus']}/{m['cpu_count']} CPUs usable")
    print(f"SynthWorld {args.size}x{args.size}x{args.frames}, {args.videos} videos")
    for key, value in result.items():
        if key.endswith("_per_s"):
            print(f"  {key:32s} {value:8.1f}")


if __name__ == "__main__":
    main()
