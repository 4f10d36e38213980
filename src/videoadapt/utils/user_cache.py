"""The user's cache folder: files videoadapt derives once from installed packages and reuses across runs (the
SmolLM2 weights converted from the GGUF file its package ships).

``$VIDEOADAPT_CACHE`` when set, else ``$XDG_CACHE_HOME/videoadapt``, else ``~/.cache/videoadapt``. Everything in it
can be deleted at any time: it is rebuilt on next use.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "VIDEOADAPT_CACHE"


def cache_root() -> Path:
    """The cache folder (not created here; writers create what they need)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "videoadapt"
