"""SynthWorld as a data set for every task, generated in memory (``synth``) or read from disk (``synth:DIR``).

In memory, ``load_task_data("synth", split, task, seed=0, videos=2000, size=64, frames=16)`` draws the split's
videos of ``SynthWorld(SynthWorldConfig(seed, size, frames))`` with ``split_sizes(videos)`` (80/10/10), and the
:class:`SynthSource` regenerates a clip's frames from its id when asked (cheap and deterministic, so nothing is
kept in memory). On disk, ``DIR`` is a set written by ``videoadapt synth``::

    DIR/annotations/<split>.json    {"info": {..., "config": {...}}, "vocabulary": {...}, "videos": [...]}
    DIR/videos/<split>/<id>.mp4     lossless, decodes to exactly the generated frames

and clips are decoded with :class:`FileSource`. The same seed and size give the same items either way. On disk, a
video whose boxes leave the frame, whose event spans are negative or inverted, or whose ``file`` is not a
relative path inside ``DIR`` (absolute, ``..``, a symlink out) is a bad item (an error, or skipped and counted
with ``skip_bad``).

Tasks: ``recognition`` (classes = the action vocabulary, label = ``action_id``; ``extra["reversal_pairs"]`` lists
each time-reversal pair ``[i, j]`` of class indices and ``extra["reversal_partner"][i]`` the partner of class
``i``, itself for bounce and collide), ``retrieval`` and ``captioning`` (all captions of a video), ``qa`` (option
``qa="multiple_choice"`` (default): 5 candidates per question, ids ``<video>/mc<k>``; ``qa="open_ended"``: answers
from the closed answer vocabulary, ids ``<video>/oe<k>``). Every task sets ``extra["novel"]`` (per item: the video
shows a category held out of video training) and ``extra["config"]``.

``temporal_grounding`` and ``st_grounding`` read *grounding scenes* (docs/synthworld.md#grounding-scenes): in
memory they switch the config to ``scenes="grounding"`` by themselves (the origin then ends in
``,scenes=grounding``); on disk they need a set written with ``videoadapt synth --scenes grounding``, and every
other task refuses such a set (it has no labels, captions or questions). Each event is one :class:`GroundingItem`,
id ``<video>/g<k>``: ``query`` names the actor by colour and shape, ``duration = frames / fps``, ``windows`` =
``((start_frame / fps, end_frame / fps),)`` and, for both tasks, ``tube`` = the actor's boxes ``(x1, y1, x2, y2)``
(end-exclusive pixels) on every frame ``start_frame..end_frame`` inclusive. On disk an event whose span is
reversed, empty or outside the video, or whose actor has no box or a box outside the frame on a frame of its
span, makes its video a bad item.

Recognition with ``reversal_copies=True`` measures the time-reversal pairs exactly (``reversal_copies="test"``: in the
test split only, where a bench reads them; validation then costs no extra clips): the val and test splits get, after
their videos, one more item per video whose class has a distinct partner: the same video played backwards
(``ClassificationItem.time_reversed``), labelled with the partner class; ``extra["reversal_copies"]`` lists
``[original, copy]`` item indices. A bag-of-frames model scores a clip and its reversal alike, so on these balanced
pairs it cannot beat 50 %. The train split never gets copies (a reversed clip is a valid video of its partner, but
training on them would change the data the paradigms are compared on), so one option serves every split.

``stills=True`` (captioning and retrieval, in memory): the splits hold still scenes (``SynthWorld.image``, ids
``still_<split>_<index>``) instead of videos, each a static clip of ``frames`` copies of its image, with its
captions; still scenes show every shape, the held-out ones included. They are the image-caption pairs of an
image-text stage before video training (LLaVA's first stage; docs/training.md).

``tracking`` and ``segmentation``: classes = the ten shapes, ``extra["novel_categories"]`` = the held-out ones,
``extra["category_synonyms"]`` = each shape's other names in the captions (``vocabulary.SHAPE_SYNONYMS``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.data.formats.common import Problems, check_split, check_task, finish, join_inside, read_json
from videoadapt.data.masks import encode_mask
from videoadapt.data.records import (
    TASKS,
    CaptionItem,
    ClassificationItem,
    FileSource,
    GroundingItem,
    Item,
    ObjectTrack,
    QAItem,
    TaskData,
    TrackingItem,
    Tube,
    VideoRef,
    VideoSource,
)
from videoadapt.data.sampling import Sampler
from videoadapt.data.synthworld import rle
from videoadapt.data.synthworld import vocabulary as vocab
from videoadapt.data.synthworld.disk import GROUNDING_TASKS, TRACKING_TASKS, check_video_annotation, scenes_for
from videoadapt.data.synthworld.world import SPLITS, SynthWorld, SynthWorldConfig
from videoadapt.errors import InputFileError, UnsafePathError, VideoadaptError
from videoadapt.registry import registry

QA_KINDS = ("multiple_choice", "open_ended")
DEFAULT_VIDEOS = 2000
# Grounding scenes have ids of their own (``grounding_train_000012``): a feature cache keyed by video id must
# never mistake one kind of scene for the other of the same seed, split and index.
_ID = re.compile(r"^(?:(grounding|tracking|still)_)?(train|val|test)_(\d+)$")
STILL_TASKS = ("captioning", "retrieval")


@dataclass(frozen=True)
class SynthSource:
    """Frames of in-memory SynthWorld clips, regenerated from ``(config, split, index)`` by video id.

    The sampler sees the whole generated clip (``config.frames`` frames at ``config.fps``), exactly as it sees a
    decoded file, so in-memory and on-disk sets give the same frames for the same sampler.
    """

    config: SynthWorldConfig

    def frames(
        self, ref: VideoRef, sampler: Sampler | None = None, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        match = _ID.match(ref.video_id)
        if match is None:
            raise VideoadaptError(f"{ref.video_id!r} is not a SynthWorld video id (expected e.g. train_000012)")
        if match.group(1) == "still":
            # A still scene as a static clip: as many copies of the image as the sampler asks frames.
            config = self.config
            count = (
                config.frames if sampler is None else np.asarray(sampler.indices(config.frames, config.fps, rng)).size
            )
            image = SynthWorld(self.config).image(int(match.group(3)), split=match.group(2)).image
            return np.repeat(image[None], count, axis=0)
        if (match.group(1) or "events") != self.config.scenes:
            raise VideoadaptError(f"{ref.video_id!r} is not a video of this SynthWorld's {self.config.scenes!r} scenes")
        world = SynthWorld(self.config)
        split, index = match.group(2), int(match.group(3))
        if sampler is None:
            return world.frames(split, index)
        # Only the sampled frames are drawn (SynthWorld.frames): half the work of a step's clips at 4 of 8 frames.
        config = self.config
        indices = np.asarray(sampler.indices(config.frames, float(config.fps), rng), dtype=np.int64).reshape(-1)
        return world.frames(split, index, indices)


@lru_cache(maxsize=8)
def _annotations(config: SynthWorldConfig, split: str, count: int) -> tuple[dict[str, Any], ...]:
    """The annotations of a split's first ``count`` videos, without frames, tracks or masks (a few KB each).

    Cached because a trainer asks for the same split once per task and per epoch; generating costs ~5 ms a video.
    Grounding scenes keep their events and, of the tracks, only each actor's boxes on its event's frames (null
    elsewhere): the on-disk layout the disk reader builds the same items from.
    """
    world = SynthWorld(config)
    out = []
    for video in world.videos(split, count):
        if config.scenes == "grounding":
            out.append(_grounding_annotation(video))
            continue
        if config.scenes == "tracking":
            out.append(_tracking_annotation(video))
            continue
        out.append(
            {
                "id": video.id,
                "action": video.action,
                "action_id": video.action_id,
                "captions": list(video.captions),
                "qa": video.qa,
                "novel": video.novel,
                "reversed": video.reversed,
            }
        )
    return tuple(out)


@lru_cache(maxsize=8)
def _still_annotations(config: SynthWorldConfig, split: str, count: int) -> tuple[dict[str, Any], ...]:
    """The captions of a split's first ``count`` still scenes (``SynthWorld.image``: every shape, held-out ones
    included), under ids of their own (``still_train_000012``) so that no feature cache mistakes one for a video."""
    world = SynthWorld(config)
    out = []
    for index in range(count):
        image = world.image(index, split=split)
        out.append({"id": f"still_{split}_{index:06d}", "captions": list(image.captions), "novel": image.novel})
    return tuple(out)


def _grounding_annotation(video: Any) -> dict[str, Any]:
    """What grounding items need of a grounding-scene video, in the on-disk annotation's shape but small."""
    tracks = []
    for event in video.events:
        (track_id,) = event.track_ids
        boxes: list[list[float] | None] = [None] * video.num_frames
        for i in range(event.start_frame, event.end_frame + 1):
            boxes[i] = video.track(track_id).boxes[i].tolist()
        tracks.append({"track_id": track_id, "boxes": boxes})
    return {
        "id": video.id,
        "novel": video.novel,
        "num_frames": video.num_frames,
        "height": int(video.frames.shape[1]),
        "width": int(video.frames.shape[2]),
        "fps": video.fps,
        "events": [e.to_annotation() for e in video.events],
        "tracks": tracks,
    }


def _tracking_annotation(video: Any) -> dict[str, Any]:
    """What tracking and segmentation items need of a tracking-scene video: its tracks' boxes and visible masks
    (the on-disk annotation's shape, less what those tasks never read)."""
    return {
        "id": video.id,
        "novel": video.novel,
        "num_frames": video.num_frames,
        "height": int(video.frames.shape[1]),
        "width": int(video.frames.shape[2]),
        "fps": video.fps,
        "tracks": [
            {
                "track_id": t.track_id,
                "category": t.category,
                "boxes": [None if np.isnan(b).any() else b.tolist() for b in t.boxes],
                "masks": [rle.encode(m) for m in t.masks],
            }
            for t in video.tracks
        ],
    }


def _tracking_item(ref: VideoRef, ann: dict[str, Any], categories: list[str]) -> TrackingItem:
    """One :class:`TrackingItem`: every track on the frames where it is visible (a box and a mask there); a track
    hidden or absent throughout is left out. Masks become compressed COCO RLEs. Raises :class:`_BadGrounding`
    for a category outside the vocabulary or a box without a mask."""
    frames, fps = int(ann["num_frames"]), float(ann["fps"])
    width, height = int(ann["width"]), int(ann["height"])
    tracks = []
    for track in ann["tracks"]:
        if track["category"] not in categories:
            raise _BadGrounding(f"track {track['track_id']}: unknown category {track['category']!r}")
        kept = [i for i, box in enumerate(track["boxes"]) if box is not None]
        if not kept:
            continue
        masks = []
        for i in kept:
            mask = rle.decode(track["masks"][i])
            if mask.shape != (height, width) or not mask.any():
                raise _BadGrounding(f"track {track['track_id']}: frame {i} has a box but no {width}x{height} mask")
            masks.append(encode_mask(mask))
        tracks.append(
            ObjectTrack(
                track_id=int(track["track_id"]),
                category=str(track["category"]),
                frames=tuple(kept),
                boxes=tuple(tuple(float(v) for v in track["boxes"][i]) for i in kept),
                masks=tuple(masks),
            )
        )
    return TrackingItem(ref, frames, fps, width, height, tuple(tracks))


class _BadGrounding(ValueError):
    """An event that cannot be a grounding item (its reason is the message)."""


def _grounding_items(ref: VideoRef, ann: dict[str, Any]) -> list[Item]:
    """One :class:`GroundingItem` per event, with the window in seconds and the actor's tube on the event's
    inclusive frames. Raises :class:`_BadGrounding` for an event whose span or tube is not usable ground truth."""
    frames, fps = int(ann["num_frames"]), float(ann["fps"])
    width, height = int(ann["width"]), int(ann["height"])
    tracks = {int(t["track_id"]): t for t in ann["tracks"]}
    items: list[Item] = []
    for k, event in enumerate(ann["events"]):
        start, end = int(event["start_frame"]), int(event["end_frame"])
        start_s, end_s = float(event["start_s"]), float(event["end_s"])
        if not (0 <= start < end < frames and 0 <= start_s < end_s <= frames / fps + 1e-6):
            raise _BadGrounding(
                f"event {k}: span frames [{start}, {end}] ({start_s:g}-{end_s:g} s) is not 0 <= start < end < "
                f"{frames} (reversed, empty or outside the video)"
            )
        track_ids = [int(t) for t in event["track_ids"]]
        if len(track_ids) != 1 or track_ids[0] not in tracks:
            raise _BadGrounding(f"event {k}: needs exactly one actor among the video's tracks, got {track_ids}")
        boxes = []
        for i in range(start, end + 1):
            box = tracks[track_ids[0]]["boxes"][i]
            if box is None or len(box) != 4 or not all(np.isfinite(float(v)) for v in box):
                raise _BadGrounding(f"event {k}: the actor has no box on frame {i} of its span")
            x1, y1, x2, y2 = (float(v) for v in box)
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise _BadGrounding(
                    f"event {k}: box {[x1, y1, x2, y2]} on frame {i} is not inside the {width}x{height} frame"
                )
            boxes.append((x1, y1, x2, y2))
        tube = Tube(tuple(range(start, end + 1)), tuple(boxes), fps, width, height)
        items.append(
            GroundingItem(
                query_id=f"{ref.video_id}/g{k}",
                video=ref,
                query=str(event["query"]),
                duration=frames / fps,
                windows=((start_s, end_s),),
                tube=tube,
            )
        )
    if not items:
        raise _BadGrounding("video has no events")
    return items


def _reversal(actions: list[str], partners: dict[str, str]) -> tuple[list[list[int]], list[int]]:
    partner = [actions.index(partners[a]) for a in actions]
    pairs = [[i, j] for i, j in enumerate(partner) if i < j]
    return pairs, partner


def _items(
    task: str,
    annotations: list[dict[str, Any]],
    ref_for: Any,
    origin: str | Path,
    problems: Problems,
    qa: str,
    actions: list[str],
    answers: list[str],
) -> tuple[list[Item], list[bool]]:
    items: list[Item] = []
    novel: list[bool] = []
    for k, ann in enumerate(annotations):
        where = _where(k, ann)
        try:
            ref = ref_for(ann)
            if task == "recognition":
                if ann["action"] not in actions:
                    problems.bad(origin, where, f"action {ann['action']!r} is not one of the {len(actions)} classes")
                    continue
                new: list[Item] = [ClassificationItem(ref, actions.index(ann["action"]))]
            elif task in GROUNDING_TASKS:
                new = _grounding_items(ref, ann)
            elif task in TRACKING_TASKS:
                new = [_tracking_item(ref, ann, list(vocab.SHAPES))]
            elif task in ("retrieval", "captioning"):
                captions = tuple(str(c) for c in ann["captions"] if str(c).strip())
                if not captions:
                    problems.bad(origin, where, "video has no captions")
                    continue
                new = [CaptionItem(ref, captions)]
            else:
                new = _qa_items(ref, ann["qa"][qa], qa, answers)
                if not new:
                    problems.bad(origin, where, f"video has no {qa} questions")
                    continue
        except _BadGrounding as error:
            problems.bad(origin, where, str(error))
            continue
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as error:
            problems.bad(origin, where, f"malformed annotation ({type(error).__name__}: {error})")
            continue
        items.extend(new)
        novel.extend([bool(ann.get("novel", False))] * len(new))
    return items, novel


def _add_reversal_copies(items: list[Item], novel: list[bool], partner: list[int]) -> list[list[int]]:
    """Append the time-reversed copy of every item whose class has a distinct partner; ``[original, copy]`` pairs."""
    pairs = []
    for index in range(len(items)):
        ref, label = items[index].video, items[index].label  # type: ignore[union-attr]
        if partner[label] != label:
            pairs.append([index, len(items)])
            items.append(ClassificationItem(ref, partner[label], time_reversed=True))
            novel.append(novel[index])
    return pairs


def _where(k: int, ann: Any) -> str:
    return f"video {k} ({ann.get('id', '?')!r})" if isinstance(ann, dict) else f"video {k}"


def _qa_items(ref: VideoRef, questions: list[dict[str, Any]], qa: str, answers: list[str]) -> list[Item]:
    out: list[Item] = []
    for k, q in enumerate(questions):
        if qa == "multiple_choice":
            options = tuple(str(o) for o in q["options"])
            index = int(q["answer_index"])
            if not 0 <= index < len(options):
                raise ValueError(f"answer_index {index} outside the {len(options)} options")
            out.append(QAItem(f"{ref.video_id}/mc{k}", ref, str(q["question"]), options[index], options, index))
        else:
            answer = str(q["answer"])
            if answer not in answers:
                raise ValueError(f"answer {answer!r} is not in the answer vocabulary")
            out.append(QAItem(f"{ref.video_id}/oe{k}", ref, str(q["question"]), answer))
    return out


def _finish(
    task: str,
    split: str,
    annotations: list[dict[str, Any]],
    ref_for: Any,
    source: VideoSource,
    origin: str | Path,
    problems: Problems,
    qa: str,
    actions: list[str],
    partners: dict[str, str],
    answers: list[str],
    config: dict[str, Any],
    reversal_copies: bool | str = False,
) -> TaskData:
    items, novel = _items(task, annotations, ref_for, origin, problems, qa, actions, answers)
    extra: dict[str, Any] = {"novel": novel, "config": config}
    classes = answer_list = None
    if task == "recognition":
        classes = list(actions)
        extra["reversal_pairs"], extra["reversal_partner"] = _reversal(actions, partners)
        if split != "train" and (reversal_copies is True or split in _copy_splits(reversal_copies)):
            extra["reversal_copies"] = _add_reversal_copies(items, novel, extra["reversal_partner"])
    if task in TRACKING_TASKS:
        classes = list(vocab.SHAPES)
        extra["novel_categories"] = [s for s in classes if s in config.get("held_out_shapes", ())]
        # The other names the captions use for each shape: a tracker may ask for a category by all of them.
        extra["category_synonyms"] = {s: list(vocab.SHAPE_SYNONYMS.get(s, ())) for s in classes}
    if task == "qa":
        extra["qa"] = qa
        if qa == "open_ended":
            answer_list = list(answers)
    return finish(
        task=task,
        split=split,
        items=items,
        source=source,
        origin=origin,
        problems=problems,
        classes=classes,
        answers=answer_list,
        extra=extra,
    )


def _copy_splits(value: bool | str) -> set[str]:
    """The splits that get time-reversed copies: ``True`` val and test, ``False`` none, or the names given."""
    if isinstance(value, bool):
        return {"val", "test"} if value else set()
    names = {n.strip() for n in str(value).split(",") if n.strip()}
    if not names or not names <= {"val", "test"}:
        raise VideoadaptError(
            f"reversal_copies must be true, false or evaluation split names (val, test), got {value!r}"
        )
    return names


@registry.register("format", "synthworld")
def load_synthworld(
    path: str | None,
    split: str,
    task: str,
    *,
    seed: int = 0,
    videos: int = DEFAULT_VIDEOS,
    size: int = 64,
    frames: int = 16,
    qa: str = "multiple_choice",
    split_fractions: Sequence[float] | None = None,
    skip_bad: bool = False,
    reversal_copies: bool | str = False,
    stills: bool = False,
) -> TaskData:
    """SynthWorld in memory (``path`` None: options ``seed``, ``videos``, ``size``, ``frames``, ``split_fractions``)
    or the set written by ``videoadapt synth`` in folder ``path`` (those options are then ignored: the set's own
    config applies). Video ``i`` of a split is the same whatever ``videos`` and ``split_fractions`` are, so
    ``videos: 9000, split_fractions: [16, 1, 1]`` trains on 8,000 videos and keeps the 500 validation and test
    videos of ``videos: 5000``. ``reversal_copies`` (recognition): time-reversed copies in val and test, or in the
    evaluation splits named (``"test"``, ``"val,test"``; see the module docstring). ``stills`` (captioning,
    retrieval; in memory): the splits hold still scenes instead of videos, each a static clip of its image with
    its captions (``videos`` of them, split as videos are): image-caption pairs that show every shape, held-out
    ones included, for an image-text stage before video training (LLaVA's first stage)."""
    check_task("synthworld", task, TASKS)
    if stills and task not in STILL_TASKS:
        raise VideoadaptError(f"stills (still scenes as static clips) serve {' and '.join(STILL_TASKS)}, not {task}")
    if stills and path is not None:
        raise VideoadaptError(f"{path}: stills are drawn in memory (--data synth), not read from a set on disk")
    check_split("synthworld", split, SPLITS)
    if qa not in QA_KINDS:
        raise VideoadaptError(f"qa must be one of {', '.join(QA_KINDS)}, got {qa!r}")
    if not isinstance(reversal_copies, bool):
        _copy_splits(reversal_copies)  # refuses what is neither true/false nor evaluation split names
    if reversal_copies and task != "recognition":
        raise VideoadaptError(f"reversal_copies applies to recognition only (its action classes), not to {task}")
    problems = Problems(skip_bad)
    actions, answers = list(vocab.ACTIONS), list(vocab.ANSWER_VOCAB)
    partners = {a: vocab.partner(a) for a in actions}
    if path is None:
        if videos < 1:
            raise VideoadaptError(f"videos must be at least 1, got {videos}")
        fractions = {} if split_fractions is None else {"split_fractions": tuple(split_fractions)}
        scenes = scenes_for(task)
        try:
            config = SynthWorldConfig(seed=seed, size=size, frames=frames, scenes=scenes, **fractions)
        except ValueError as error:
            raise VideoadaptError(f"synthworld: {error}") from error
        count = SynthWorld(config).split_sizes(videos)[split]
        origin = f"synthworld:seed={seed},videos={videos},size={size},frames={frames}"
        if split_fractions is not None:
            origin += f",split_fractions={'/'.join(f'{f:g}' for f in config.split_fractions)}"
        if scenes != "events":
            origin += f",scenes={scenes}"
        if stills:
            origin += ",stills"
        if count == 0:
            raise VideoadaptError(f"{origin}: split {split!r} is empty (ask for more videos)")
        drawn = _still_annotations if stills else _annotations
        return _finish(
            task,
            split,
            list(drawn(config, split, count)),
            lambda ann: VideoRef(ann["id"]),
            SynthSource(config),
            origin,
            problems,
            qa,
            actions,
            partners,
            answers,
            config.to_dict(),
            reversal_copies,
        )

    root = Path(path)
    file = root / "annotations" / f"{split}.json"
    if not root.is_dir():
        raise InputFileError(root, "no such SynthWorld folder (write one with `videoadapt synth --out DIR`)")
    document = read_json(file)
    if not isinstance(document, dict) or not isinstance(document.get("videos"), list):
        raise InputFileError(file, "not a SynthWorld annotation file (expected an object with a 'videos' list)")
    vocabulary = document.get("vocabulary") or {}
    info = document.get("info") or {}
    if not isinstance(vocabulary, dict) or not isinstance(info, dict):
        raise InputFileError(file, "'vocabulary' and 'info' must be objects")
    # The file's own vocabulary, so that a set stays readable by what it says about itself.
    actions = _names(vocabulary.get("actions", actions), file, "vocabulary.actions")
    answers = _names(vocabulary.get("answers", answers), file, "vocabulary.answers")
    partners = vocabulary.get("partners", partners)
    if not isinstance(partners, dict) or any(partners.get(a) not in actions for a in actions):
        raise InputFileError(file, "'vocabulary.partners' must map every action to an action")
    config = info.get("config") or {}
    if not isinstance(config, dict):
        raise InputFileError(file, "'info.config' must be an object")
    _check_scenes(file, task, config.get("scenes", "events"))
    annotations, paths = _checked(document["videos"], root, file, problems)

    def ref_for(ann: dict[str, Any]) -> VideoRef:
        return VideoRef(str(ann["id"]), paths[id(ann)])

    return _finish(
        task,
        split,
        annotations,
        ref_for,
        FileSource(),
        file,
        problems,
        qa,
        actions,
        partners,
        answers,
        config,
        reversal_copies,
    )


def _check_scenes(file: Path, task: str, scenes: Any) -> None:
    """Grounding tasks need a grounding-scenes set and every other task an events set: the one kind has no
    labels, captions or questions, the other names its actor by category alone."""
    wanted = scenes_for(task)
    if scenes == wanted:
        return
    if wanted != "events":
        raise InputFileError(
            file,
            f"{task} needs a set of {wanted} scenes, but this one has scenes={scenes!r} "
            f"(write one with `videoadapt synth --scenes {wanted}`)",
        )
    serves = GROUNDING_TASKS if scenes == "grounding" else TRACKING_TASKS
    raise InputFileError(
        file,
        f"{task} needs a set of events scenes, but this one has scenes={scenes!r}, which serves only "
        f"{' and '.join(serves)} (write one without `--scenes {scenes}`)",
    )


def _names(value: Any, file: Path, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputFileError(file, f"'{what}' must be a non-empty list of strings")
    return list(value)


def _checked(
    videos: list[Any], root: Path, file: Path, problems: Problems
) -> tuple[list[dict[str, Any]], dict[int, Path]]:
    """The annotations whose ground truth is sane (:func:`check_video_annotation`: boxes inside the frame, spans
    neither negative nor inverted) and whose ``file`` stays inside ``root``; each other one is a bad item."""
    kept, paths = [], {}
    for k, ann in enumerate(videos):
        where = _where(k, ann)
        reason = check_video_annotation(ann)
        if reason is not None:
            problems.bad(file, where, reason)
            continue
        if "id" not in ann or "file" not in ann:
            problems.bad(file, where, "malformed annotation (needs 'id' and 'file')")
            continue
        path, unsafe = join_inside(root, str(ann["file"]))
        if unsafe is not None:
            problems.bad(file, where, f"video path {ann['file']!r} {unsafe}", UnsafePathError)
            continue
        kept.append(ann)
        paths[id(ann)] = path
    return kept, paths
