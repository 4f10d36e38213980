"""Decoding rates of read_video on real clips: a full decode vs sampling 8 frames (uniform), on this machine.

    python benchmarks/decode_rate.py [--dir /work/shared/data/asl-gestures] [--repeats 3] [--json]

Each measurement is one pass over every clip in ``--dir``, repeated ``--repeats`` times after a warm-up pass
(which also brings the files into the page cache); the median pass is reported. ``plain_pyav`` is the
textbook loop (decode every frame, ``frame.to_ndarray``) for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import av

from videoadapt.data.sampling import UniformSegments
from videoadapt.data.video import read_video
from videoadapt.utils.machine import machine_description

# The shared data folder sits beside the checkout.
ASL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "asl-gestures"


def machine() -> dict:
    return {
        **machine_description(),
        "pyav": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
    }


def median_pass(clips: list[Path], decode: Callable[[Path], int], repeats: int) -> tuple[float, int]:
    """Median seconds of one pass over ``clips``, and the frames one pass returns."""
    frames = sum(decode(clip) for clip in clips)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for clip in clips:
            decode(clip)
        times.append(time.perf_counter() - start)
    return statistics.median(times), frames


def plain_pyav(clip: Path) -> int:
    with av.open(str(clip)) as container:
        return sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24") is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ASL_DIR, help=f"folder of clips (default {ASL_DIR})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per clip (uniform segments)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clips = sorted(p for p in args.dir.iterdir() if p.suffix.lower() in {".mkv", ".mp4", ".webm", ".mov", ".avi"})
    if not clips:
        raise SystemExit(f"no video files in {args.dir}")
    sampler = UniformSegments(args.frames)

    full_s, full_frames = median_pass(clips, lambda c: len(read_video(c).frames), args.repeats)
    sampled_s, sampled_frames = median_pass(clips, lambda c: len(read_video(c, sampler).frames), args.repeats)
    plain_s, plain_frames = median_pass(clips, plain_pyav, args.repeats)
    result = {
        "machine": machine(),
        "dir": str(args.dir),
        "clips": len(clips),
        "frames_total": full_frames,
        "repeats": args.repeats,
        "full_decode": {
            "clips_per_s": len(clips) / full_s,
            "frames_per_s": full_frames / full_s,
        },
        f"uniform_{args.frames}": {
            "clips_per_s": len(clips) / sampled_s,
            "frames_per_s": sampled_frames / sampled_s,
        },
        # How many more clips per second sampling gets through than decoding whole clips.
        "sampled_vs_full_clips_ratio": full_s / sampled_s,
        "plain_pyav_full_decode": {"frames_per_s": plain_frames / plain_s},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cpu']}, {m['usable_cpus']}/{m['cpu_count']} CPUs usable")
    print(f"{len(clips)} clips, {full_frames} frames, from {args.dir}")
    print(f"  full decode        {len(clips) / full_s:8.1f} clips/s {full_frames / full_s:8.1f} frames/s")
    label = f"uniform {args.frames}"
    print(f"  {label:18s} {len(clips) / sampled_s:8.1f} clips/s {sampled_frames / sampled_s:8.1f} frames/s")
    print(f"  sampled/full clips {full_s / sampled_s:8.2f}x")
    print(f"  plain PyAV loop    {'':17s}{plain_frames / plain_s:8.1f} frames/s")


if __name__ == "__main__":
    main()
