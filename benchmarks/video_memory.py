"""Peak memory and time to sample 8 frames of a 4K 10-minute H.264 clip, beside a 640x480 one and a 2-hour one.

    python benchmarks/video_memory.py [--dir DIR] [--minutes 10] [--fps 5] [--gop-seconds 10] [--frames 8]
        [--long-hours 2] [--json]

Generates, once (cached in ``--dir``, default a folder under the system temp folder; files are reused when their
settings match), three H.264 clips with libx264 ``preset=ultrafast``, ``crf=28``, no B-frames in the first two:

* ``uhd``: 3840x2160, ``--minutes`` long at ``--fps`` (a low rate keeps generation feasible on a small CPU),
* ``vga``: 640x480, the same length, rate and keyframe interval,
* ``long``: 160x120, ``--long-hours`` long at ``--fps``, as MP4 and remuxed (packets copied) to Matroska, whose
  frame count is not in the header, so the probe counts its packets.

Content: a fixed gradient with a block moving across the frame and a small ticking counter (mostly static, like
much real footage; it decodes faster than busy footage would). A keyframe every ``--gop-seconds`` bounds the cost
of reaching a sampled frame: at most one keyframe interval of frames is decoded per sampled frame.

Each measurement runs in a fresh subprocess (``--child``): ``read_video(path, UniformSegments(frames))``, full size
and with ``max_short_side=896`` (what a 224-pixel CLIP asks for, ``transforms.decode_short_side``). It reports
the peak resident set (``VmHWM`` in ``/proc/self/status``) of that process, its peak after imports (the floor:
Python, NumPy, PyAV), the wall time of the call and what it decoded (``DecodeStats``). Target (issue 19): peak
≤ 1 GB for the 4K clip.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHORT_SIDE = 896  # transforms.decode_short_side(CLIP_SETTINGS): 4 x 224


def generate(path: Path, width: int, height: int, seconds: float, fps: int, gop: int) -> dict:
    """Write an H.264 clip (see the module docstring) unless one with the same settings is already there."""
    import av

    settings = {"width": width, "height": height, "seconds": seconds, "fps": fps, "keyframe_interval_frames": gop}
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("settings") == settings:
        return json.loads(meta.read_text())
    frames = round(seconds * fps)
    start = time.perf_counter()
    partial = path.with_name(path.name + ".part" + path.suffix)
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28", "g": str(gop), "keyint_min": str(gop), "bf": "0"}
        stream.codec_context.thread_count = 1  # a shared machine: one core for the encoder
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(np.uint8)
        block_h, block_w = max(2, height // 6), max(2, width // 10)
        tick = max(2, width // 40)
        for i in range(frames):
            frame = base.copy()
            left = (i * 7) % (width - block_w)
            frame[height // 3 : height // 3 + block_h, left : left + block_w] = 255
            frame[:tick, : tick * (1 + i % 10)] = 0  # a counter in the corner: every frame differs
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    result = {
        "settings": settings,
        "frames": frames,
        "codec": "h264 (libx264 ultrafast, crf 28, no B-frames)",
        "bytes": path.stat().st_size,
        "generation_seconds": round(time.perf_counter() - start, 1),
    }
    meta.write_text(json.dumps(result, indent=2))
    return result


def remux_mkv(source: Path, target: Path) -> None:
    import av

    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return
    partial = target.with_name(target.name + ".part.mkv")
    with av.open(str(source)) as inp, av.open(str(partial), "w", format="matroska") as out:
        video = inp.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in inp.demux(video):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    partial.replace(target)


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc (KiB). VmHWM is the peak resident set of this program image;
    ``ru_maxrss`` would not do: Linux carries it over from the parent through fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: the best there is (KiB on Linux)


def child(path: str, frames: int, short_side: int | None) -> None:
    """One measurement, in this fresh process; prints one JSON line."""
    from videoadapt.data.sampling import UniformSegments
    from videoadapt.data.video import read_video

    floor = _status_kib("VmHWM")
    start = time.perf_counter()
    clip = read_video(path, UniformSegments(frames), max_short_side=short_side, max_seconds=600)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    stats = clip.stats
    print(
        json.dumps(
            {
                "max_short_side": short_side,
                "frames_shape": list(clip.frames.shape),
                "indices": clip.indices.tolist(),
                "seconds": round(seconds, 3),
                "peak_rss_mb": round(peak / 1024, 1),
                "rss_after_imports_mb": round(floor / 1024, 1),
                "packets": stats.packets,
                "decoded": stats.decoded,
                "converted": stats.converted,
                "seeks": stats.seeks,
            }
        )
    )


def measure(path: Path, frames: int, short_side: int | None) -> dict:
    command = [sys.executable, __file__, "--child", str(path), "--frames", str(frames)]
    if short_side is not None:
        command += ["--short-side", str(short_side)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "videoadapt-video-memory")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the 4K and 640x480 clips")
    parser.add_argument("--fps", type=int, default=5, help="frame rate of every generated clip")
    parser.add_argument("--gop-seconds", type=float, default=10.0, help="keyframe interval, seconds")
    parser.add_argument("--long-hours", type=float, default=2.0, help="length of the long clip (0: none)")
    parser.add_argument("--frames", type=int, default=8, help="frames sampled (uniform segments)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--short-side", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.frames, args.short_side)
        return

    from videoadapt.utils.machine import machine_description

    args.dir.mkdir(parents=True, exist_ok=True)
    gop = max(1, round(args.gop_seconds * args.fps))
    seconds = args.minutes * 60
    clips = {
        "uhd": (args.dir / f"uhd_{args.minutes:g}min.mp4", 3840, 2160, seconds),
        "vga": (args.dir / f"vga_{args.minutes:g}min.mp4", 640, 480, seconds),
    }
    if args.long_hours > 0:
        clips["long"] = (args.dir / f"long_{args.long_hours:g}h.mp4", 160, 120, args.long_hours * 3600)
    results: dict = {"machine": machine_description(), "dir": str(args.dir), "sampler": f"uniform:{args.frames}"}
    for name, (path, width, height, length) in clips.items():
        generated = generate(path, width, height, length, args.fps, gop)
        entry: dict = {"file": path.name, "generated": generated, "runs": []}
        for short_side in (None, SHORT_SIDE):
            entry["runs"].append(measure(path, args.frames, short_side))
        if name == "long":
            mkv = path.with_suffix(".mkv")
            remux_mkv(path, mkv)
            entry["matroska_runs"] = [measure(mkv, args.frames, None)]
        results[name] = entry
    uhd = results["uhd"]["runs"]
    results["target"] = {
        "peak_rss_mb_limit": 1024,
        "uhd_peak_rss_mb": max(run["peak_rss_mb"] for run in uhd),
        "met": max(run["peak_rss_mb"] for run in uhd) <= 1024,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    machine = results["machine"]
    print(f"machine: {machine['platform']}, {machine['cpu']}, {machine['usable_cpus']}/{machine['cpu_count']} CPUs")
    for name in clips:
        entry = results[name]
        gen = entry["generated"]
        print(f"{name}: {entry['file']} {gen['frames']} frames, {gen['bytes'] / 1e6:.1f} MB")
        for run in entry["runs"] + entry.get("matroska_runs", []):
            print(
                f"  short side {run['max_short_side']!s:>4}: {run['seconds']:7.2f} s, peak RSS "
                f"{run['peak_rss_mb']:7.1f} MB (after imports {run['rss_after_imports_mb']:.1f}), "
                f"{run['decoded']} decoded, {run['seeks']} seeks"
            )


if __name__ == "__main__":
    main()
