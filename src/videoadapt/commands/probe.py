"""`videoadapt probe`: frame count, frame rate, duration, size and codec of video files."""

from __future__ import annotations

import argparse
import json
import sys

from videoadapt.commands import Command
from videoadapt.registry import registry

_COLUMNS = ("frames", "fps", "duration", "width", "height", "codec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to probe")
    parser.add_argument("--json", action="store_true", help="print a JSON object (a list of them for several files)")
    parser.add_argument(
        "--count-frames",
        action="store_true",
        help="decode every frame to count them (slower; also checks that the whole stream decodes)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that building the CLI parser does not load PyAV and numpy.
    from videoadapt.data.video import probe

    # Probe everything before printing, so a bad file fails the command without half a table on screen.
    infos = [probe(path, count_frames=args.count_frames) for path in args.videos]
    if args.json:
        rows = [info.to_dict() for info in infos]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("file", overflow="fold")  # a path is useless cut short with an ellipsis
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column == "codec" else "right")
    for info in infos:
        table.add_row(
            info.path,
            str(info.frames),
            f"{info.fps:g}",
            f"{info.duration:.3f} s",
            str(info.width),
            str(info.height),
            info.codec,
        )
    Console(file=sys.stdout).print(table)
    return 0


registry.register("command", "probe")(
    Command(
        help="show frame count, fps, duration, size and codec of videos",
        add_arguments=add_arguments,
        run=run,
        description="Show the frame count, frame rate, duration, size and codec of each VIDEO. A file "
        "that cannot be read as a video is an error (exit status 2) naming the file and the reason.",
    )
)
