"""The error types videoadapt raises on bad input.

Every error a user can cause carries the offending file (when there is one) and a reason; the CLI prints it as
one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

from pathlib import Path


class VideoadaptError(Exception):
    """Base class of every error caused by input (files, arguments, configs) rather than by a bug."""


class InputFileError(VideoadaptError):
    """A file given to videoadapt cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmptySplitError(InputFileError):
    """A split with no items: a small data set whose automatic split left its validation or test part empty, or a
    split every item of which was skipped as bad."""


class UnsafePathError(InputFileError):
    """A path written inside a file (an annotation) that would leave the folder it must stay in: absolute, with a
    ``..`` step, or resolving through a symlink to somewhere outside. Names the file, the item and the path."""


class VideoDecodeError(InputFileError):
    """A video cannot be probed or decoded: missing, not a video, truncated, corrupt, empty or absurd."""


class UnknownNameError(VideoadaptError, KeyError):
    """A name that is not registered; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]
