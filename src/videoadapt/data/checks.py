"""Every video a split names, opened up front: which are missing and which cannot be read, all found at once.

Training would otherwise meet a bad video only when a batch asks for it, one at a time and possibly an hour in.
Opening a header (PyAV, in threads: it releases the GIL while it reads) costs milliseconds a file; clips held in
memory (SynthWorld) have no file and are not opened.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from videoadapt.data.records import TaskData, VideoRef
from videoadapt.errors import VideoadaptError

HEADER_SECONDS = 30.0  # a header that takes longer to open counts as unreadable (a hung network mount)
SHOWN = 20  # problems named in one error message


@dataclass
class VideoProblems:
    """Videos of a split that are not on disk, and those whose header cannot be opened (with the reason)."""

    checked: int = 0
    missing: list[VideoRef] = field(default_factory=list)
    unreadable: list[tuple[VideoRef, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unreadable)

    def bad_ids(self) -> set[str]:
        return {ref.video_id for ref in self.missing} | {ref.video_id for ref, _ in self.unreadable}

    def lines(self) -> list[str]:
        return [f"missing: {ref.path}" for ref in self.missing] + [
            f"unreadable: {ref.path}: {reason}" for ref, reason in self.unreadable
        ]


def find_bad_videos(data: TaskData, workers: int = 8) -> VideoProblems:
    """Open the header of every distinct video file of ``data`` in ``workers`` threads."""
    from videoadapt.data.video import probe

    if workers < 1:
        raise VideoadaptError(f"workers must be at least 1, got {workers}")
    refs = [ref for ref in data.videos() if ref.path is not None]
    missing = [ref for ref in refs if not ref.path.exists()]  # type: ignore[union-attr]
    present = [ref for ref in refs if ref.path.exists()]  # type: ignore[union-attr]

    def open_header(ref: VideoRef) -> str | None:
        try:
            probe(ref.path, max_seconds=HEADER_SECONDS)  # type: ignore[arg-type]
        except (VideoadaptError, OSError, ValueError) as error:
            return str(error)
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(open_header, present))
    unreadable = [(ref, reason) for ref, reason in zip(present, reasons, strict=True) if reason is not None]
    return VideoProblems(len(refs), missing, unreadable)


def require_readable_videos(data: TaskData, skip_bad: bool, workers: int = 8) -> TaskData:
    """``data`` when every video opens; otherwise one error listing every bad video and its reason, or, with
    ``skip_bad``, ``data`` without their items and the count in ``extra["bad_videos"]``."""
    problems = find_bad_videos(data, workers)
    if not problems:
        return data
    lines = problems.lines()
    shown = "\n  ".join(lines[:SHOWN]) + (f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else "")
    where = f"{data.origin}: split {data.split!r}"
    if not skip_bad:
        raise VideoadaptError(
            f"{where}: {len(problems.missing)} missing and {len(problems.unreadable)} unreadable of "
            f"{problems.checked} videos:\n  {shown}\n(set data.skip_bad=true to leave them out and count them; "
            "`videoadapt check-data` lists them without training)"
        )
    bad = problems.bad_ids()
    kept = [item for item in data.items if item.video.video_id not in bad]
    if not kept:
        raise VideoadaptError(f"{where}: no video can be read:\n  {shown}")
    extra = dict(data.extra)
    extra["bad_videos"] = {
        "count": len(bad),
        "missing": len(problems.missing),
        "unreadable": len(problems.unreadable),
        "examples": lines[:5],
    }
    return replace(data, items=kept, extra=extra)


def skip_counts(data: TaskData) -> dict[str, int]:
    """What was left out of a split before any batch, by cause (``skip_bad``): annotation rows a reader could not
    use, items the task refused, videos missing or unreadable up front."""
    return {
        "annotation_rows": int(data.extra.get("skipped", {}).get("count", 0)),  # type: ignore[union-attr]
        "items_the_task_refused": int(data.extra.get("skipped_by_task", {}).get("count", 0)),  # type: ignore
        "bad_videos": int(data.extra.get("bad_videos", {}).get("count", 0)),  # type: ignore[union-attr]
    }
