"""Something-Something v2 action recognition from the official json files.

Expected layout (``ssv2:PATH``; PATH is the annotation folder, or one split's json with the labels file beside it)::

    PATH/something-something-v2-labels.json        {"Putting something into something": "101", ...}
    PATH/something-something-v2-train.json         [{"id": "78687", "label": "putting a pen into a cup",
    PATH/something-something-v2-validation.json      "template": "Putting [something] into [something]",
    PATH/something-something-v2-test.json            "placeholders": ["a pen", "a cup"]}, ...]
    VIDEO_DIR/**/<id>.webm

Splits: ``train``, ``val`` (the ``validation`` file), ``test`` (the official test json has only ids: loading it for
recognition fails, as it has no labels). The class of an item is its ``template`` with the brackets removed
("Putting [something] into [something]" → "Putting something into something"), looked up in the labels file, as
the official baseline does; the ``label`` field is the template filled in with the placeholders and is not a class.
Classes are ordered by their index in the labels file. ``video_dir`` defaults to
``PATH/20bn-something-something-v2``, ``PATH/videos`` or PATH. Videos are ``<id>.webm`` (any container is found).
"""

from __future__ import annotations

from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    check_split,
    check_task,
    finish_files,
    read_json,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import ClassificationItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLIT_FILES = {"train": "train", "val": "validation", "test": "test"}
LABELS = "something-something-v2-labels.json"


def template_class(template: str) -> str:
    """The class name of a template: the official baseline drops the brackets around the placeholders."""
    return template.replace("[", "").replace("]", "")


@registry.register("format", "ssv2")
def load_ssv2(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """Something-Something v2 json (see the module docstring) → recognition items over the 174 templates."""
    check_task("ssv2", task, ("recognition",))
    check_split("ssv2", split, tuple(SPLIT_FILES))
    root = Path(path)
    file = annotation_file(
        root, [f"something-something-v2-{SPLIT_FILES[split]}.json"], f"Something-Something v2 {split} json"
    )
    labels_file = file.parent / LABELS
    classes = _classes(labels_file)
    lookup = {name: i for i, name in enumerate(classes)}
    entries = read_json(file)
    if not isinstance(entries, list):
        raise InputFileError(file, "expected a json list of {id, label, template, placeholders}")
    index = VideoIndex(find_video_dir(root, video_dir, ["20bn-something-something-v2", "videos"]), ".webm")
    problems = Problems(skip_bad)
    items: list[Item] = []
    for k, entry in enumerate(entries):
        where = f"item {k}"
        if not isinstance(entry, dict) or not str(entry.get("id", "")).strip():
            problems.bad(file, where, "not an object with an 'id'")
            continue
        video_id = str(entry["id"]).strip()
        where = f"item {k} (id {video_id!r})"
        template = entry.get("template")
        if not isinstance(template, str):
            problems.bad(file, where, "no 'template' (the official test split has no labels)")
            continue
        name = template_class(template)
        if name not in lookup:
            problems.bad(file, where, f"template {template!r} is not a class of {LABELS}")
            continue
        clip = index.path_for(video_id, skip_missing, problems, file, where)
        if clip is None:
            continue
        items.append(ClassificationItem(VideoRef(video_id, clip), lookup[name]))
    return finish_files(task, split, items, file, problems, index, classes=classes)


def _classes(labels_file: Path) -> list[str]:
    labels = read_json(labels_file)
    if not isinstance(labels, dict) or not labels:
        raise InputFileError(labels_file, 'expected a json object {"template": "index"}')
    try:
        by_index = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinite float
        raise InputFileError(labels_file, "class indices must be integers") from None
    if sorted(by_index) != list(range(len(labels))):
        raise InputFileError(labels_file, f"class indices must be 0..{len(labels) - 1}, each once")
    return [by_index[i] for i in range(len(labels))]
