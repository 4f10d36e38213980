"""The feature cache's errors: an unfinished extraction, rows damaged since they were written, non-finite features."""

from __future__ import annotations

from pathlib import Path

from videoadapt.errors import VideoadaptError


class IncompleteCacheError(VideoadaptError):
    """A cache directory whose extraction has not finished (no manifest): rerun the extraction to resume."""


class CorruptCacheError(VideoadaptError):
    """Rows whose bytes no longer match the checksum recorded when they were written."""

    def __init__(self, directory: Path, video_ids: list[str]) -> None:
        self.video_ids = video_ids
        shown = ", ".join(repr(v) for v in video_ids[:10]) + (" ..." if len(video_ids) > 10 else "")
        super().__init__(
            f"{directory}: {len(video_ids)} corrupt row(s) (bytes differ from their checksum): {shown}; "
            "extract them again (rerun `videoadapt extract --overwrite` or delete the cache)"
        )


class NonFiniteFeaturesError(VideoadaptError):
    """Features holding NaN or infinity: refused when written (naming the videos), or found in a cache when read
    (naming the array file and the row), since training on them would turn every loss and gradient into NaN."""

    def __init__(self, message: str, video_ids: list[str], path: Path | None = None) -> None:
        self.video_ids, self.path = video_ids, None if path is None else str(path)
        super().__init__(message)


REEXTRACT = "extract the cache again (`videoadapt extract` with the same arguments and --overwrite)"
