"""MSVD (YouTube2Text) captions: text-video retrieval and captioning.

Expected layout (``msvd:PATH``; PATH is the folder)::

    PATH/AllVideoDescriptions.txt        the corpus' English descriptions: '#' header lines, then
                                         "<clip name> <caption words ...>" per line, ~40 per clip
      or PATH/captions.json              {"<clip name>": ["caption", ...], ...}  (or ``captions=FILE``)
    PATH/train_list.txt | val_list.txt | test_list.txt     one clip name per line (the standard 1200/100/670
                                         split, as CLIP4Clip distributes it)
    VIDEO_DIR/**/<clip name>.avi         e.g. YouTubeClips/-4wsuPCjDBc_5_15.avi

CLIP4Clip ships the captions as ``raw-captions.pkl``, a pickle: videoadapt never loads pickles (loading one can
run arbitrary code), so convert it once to ``captions.json`` (``{clip: [" ".join(tokens), ...]}``) or use the
corpus' own ``AllVideoDescriptions.txt``. Every split keeps all captions of each clip (multi-sentence retrieval,
as CLIP4Clip evaluates MSVD). ``video_dir`` defaults to ``PATH/YouTubeClips``, ``PATH/MSVD_Videos``,
``PATH/videos`` or PATH.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    check_split,
    check_task,
    finish_files,
    first_existing,
    read_json,
    read_text_lines,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import CaptionItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
CAPTION_FILES = ("AllVideoDescriptions.txt", "captions.json")
PICKLE = "raw-captions.pkl"


def read_descriptions(file: Path, problems: Problems) -> dict[str, list[str]]:
    """``{clip: [captions]}`` from ``AllVideoDescriptions.txt`` (``#`` lines are the corpus header)."""
    captions: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(read_text_lines(file), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        clip, _, caption = text.partition(" ")
        if not caption.strip():
            problems.bad(file, f"line {number}", f"no caption after the clip name {clip!r}")
            continue
        captions[clip].append(caption.strip())
    return captions


def read_caption_json(file: Path, problems: Problems) -> dict[str, list[str]]:
    document = read_json(file)
    if not isinstance(document, dict):
        raise InputFileError(file, 'expected a json object {"clip": ["caption", ...]}')
    captions: dict[str, list[str]] = {}
    for clip, texts in document.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            problems.bad(file, f"item {clip!r}", "captions must be a list of strings")
            continue
        captions[str(clip)] = [t.strip() for t in texts]
    return captions


@registry.register("format", "msvd")
def load_msvd(
    path: str,
    split: str,
    task: str,
    *,
    captions: str | None = None,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """MSVD captions + split lists (see the module docstring) → retrieval or captioning items."""
    check_task("msvd", task, ("retrieval", "captioning"))
    check_split("msvd", split, SPLITS)
    root = Path(path)
    base = root if root.is_dir() else root.parent
    if not base.exists():
        raise InputFileError(root, "no such folder (expected the MSVD annotation folder)")
    caption_file = Path(captions) if captions else first_existing(base / c for c in CAPTION_FILES)
    if caption_file is None:
        hint = (
            f"; {PICKLE} is a pickle, which videoadapt does not load: convert it to captions.json"
            if (base / PICKLE).exists()
            else ""
        )
        raise InputFileError(base, f"no MSVD captions (looked for {', '.join(CAPTION_FILES)}){hint}")
    problems = Problems(skip_bad)
    if caption_file.suffix == ".json":
        by_clip = read_caption_json(caption_file, problems)
    else:
        by_clip = read_descriptions(caption_file, problems)
    list_file = base / f"{split}_list.txt"
    clips = [line.strip() for line in read_text_lines(list_file) if line.strip()]
    index = VideoIndex(find_video_dir(root, video_dir, ["YouTubeClips", "MSVD_Videos", "videos"]), ".avi")
    items: list[Item] = []
    for clip in dict.fromkeys(clips):
        texts = tuple(t for t in by_clip.get(clip, ()) if t)
        if not texts:
            problems.bad(caption_file, f"video {clip!r} (listed in {list_file.name})", "has no captions")
            continue
        found = index.path_for(clip, skip_missing, problems, list_file, f"video {clip!r}")
        if found is None:
            continue
        items.append(CaptionItem(VideoRef(clip, found), texts))
    return finish_files(task, split, items, list_file, problems, index, extra={"captions_file": str(caption_file)})
