"""SynthWorld: seeded, random-access generation of annotated videos and images.

Sample ``i`` of split ``s`` depends only on ``SeedSequence([seed, split_id(s), i])``, so streaming, random
access and parallel writing all produce identical samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from videoadapt.data.synthworld import language
from videoadapt.data.synthworld.render import ObjectStates, background, boxes_from_masks, composite
from videoadapt.data.synthworld.samples import ImageObject, SynthEvent, SynthImage, SynthTrack, SynthVideo
from videoadapt.data.synthworld.script import (
    GroundingScript,
    ObjectPlan,
    script_grounding,
    script_tracking,
    script_video,
)
from videoadapt.data.synthworld.vocabulary import (
    ACTION_CLASSES,
    ACTION_GROUPS,
    COLOUR_NAMES,
    COLOURS,
    DEFAULT_HELD_OUT_SHAPES,
    POSITIONS,
    ROUND_SHAPES,
    SHAPES,
    SIZE_NAMES,
    SIZES,
    action_id,
)
from videoadapt.errors import VideoadaptError

VERSION = "1"
"""Bumped whenever a seed would produce different samples."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_IMAGE_STREAM = 100  # image samples of split s use split id 100 + id(s), apart from every video stream
_TWIN_STREAM = 200
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position")
SCENES: tuple[str, ...] = ("events", "grounding", "tracking")
"""What a video shows: ``events`` one scripted event among objects of distinct shapes (every task but grounding);
``grounding`` two same-shape actors of different colours with an event each, at different times (temporal and
spatio-temporal grounding, where the sentence, not the category, must decide); ``tracking`` two to
``max_objects`` objects moving in straight lines that cross and occlude, entering and leaving, often two of one
shape (open-vocabulary tracking and video instance segmentation, where identities must be kept)."""


class SynthWorldConfigError(VideoadaptError, ValueError):
    """A SynthWorld configuration that cannot produce valid samples."""


@dataclass(frozen=True)
class SynthWorldConfig:
    size: int = 64
    """Frame side in pixels (frames are square)."""
    frames: int = 16
    fps: float = 8.0
    min_objects: int = 1
    max_objects: int = 4
    held_out_shapes: tuple[str, ...] = DEFAULT_HELD_OUT_SHAPES
    """Categories never shown in the train split of videos (images show every shape)."""
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Fractions of ``--videos N`` going to train / val / test."""
    scenes: str = "events"
    """One of :data:`SCENES`; ``events`` videos are exactly those of before grounding scenes existed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "held_out_shapes", tuple(self.held_out_shapes))
        object.__setattr__(self, "split_fractions", tuple(float(f) for f in self.split_fractions))
        self.validate()

    def validate(self) -> None:
        problems = []
        if not 32 <= self.size <= 1024:
            problems.append(f"size must be in [32, 1024], got {self.size}")
        if not 8 <= self.frames <= 1024:
            problems.append(f"frames must be in [8, 1024] (events need at least 4 frames), got {self.frames}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            problems.append(f"fps must be positive, got {self.fps}")
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            problems.append(f"need 1 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}")
        unknown = [s for s in self.held_out_shapes if s not in SHAPES]
        if unknown:
            problems.append(f"unknown held-out shapes {unknown}; known: {', '.join(SHAPES)}")
        seen = [s for s in SHAPES if s not in self.held_out_shapes]
        if len(seen) < 5 or len([s for s in seen if s not in ROUND_SHAPES]) < 2:
            problems.append("hold out fewer shapes: training needs at least 5 shapes, 2 of them not round")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or sum(self.split_fractions) <= 0:
            problems.append(f"split_fractions must be 3 non-negative numbers, got {self.split_fractions}")
        if self.seed < 0:
            problems.append(f"seed must be non-negative, got {self.seed}")
        if self.scenes not in SCENES:
            problems.append(f"unknown scenes {self.scenes!r}; known: {', '.join(SCENES)}")
        if problems:
            raise SynthWorldConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["held_out_shapes"] = list(self.held_out_shapes)
        d["split_fractions"] = list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthWorldConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class SynthWorld:
    config: SynthWorldConfig = field(default_factory=SynthWorldConfig)

    # --- splits ---------------------------------------------------------------------------------------------

    def split_sizes(self, total: int) -> dict[str, int]:
        """Videos per split for ``total`` videos: val and test get floor(fraction·N), train the rest."""
        fractions = self.config.split_fractions
        val = int(total * fractions[1] / sum(fractions))
        test = int(total * fractions[2] / sum(fractions))
        return {"train": total - val - test, "val": val, "test": test}

    def shapes(self, split: str) -> tuple[str, ...]:
        """Categories that may appear in videos of ``split`` (train lacks the held-out ones)."""
        _split_id(split)
        if split == "train":
            return tuple(s for s in SHAPES if s not in self.config.held_out_shapes)
        return SHAPES

    # --- videos ---------------------------------------------------------------------------------------------

    def video(self, split: str, index: int, *, action: str | None = None) -> SynthVideo:
        """Video ``index`` of ``split``. ``action`` forces the class while keeping the rest of the sample's
        draws (forcing the partner of a pair gives exactly this video played backwards)."""
        cfg = self.config
        scene_seq, text_seq = np.random.SeedSequence([cfg.seed, _split_id(split), index]).spawn(2)
        if cfg.scenes == "grounding":
            if action is not None:
                raise SynthWorldConfigError("action= forces the class of an events video; grounding scenes have two")
            return self._grounding_video(split, index, scene_seq)
        if cfg.scenes == "tracking":
            if action is not None:
                raise SynthWorldConfigError("action= forces the class of an events video; tracking scenes have none")
            return self._tracking_video(split, index, scene_seq)
        script, bg, flip, label = self._scene(split, scene_seq, action)
        states = [o.states.reversed() if flip else o.states for o in script.objects]
        start, end = (
            (cfg.frames - 1 - script.end, cfg.frames - 1 - script.start) if flip else (script.start, script.end)
        )
        shapes = [o.shape for o in script.objects]
        frames, masks = composite(bg, shapes, states, cfg.frames)
        tracks = [
            self._track(k + 1, plan.shape, plan.role, st, mask)
            for k, (plan, st, mask) in enumerate(zip(script.objects, states, masks, strict=True))
        ]
        actor_tracks = [t for t in tracks if t.role == "actor"]
        # Two-object sentences name the objects left to right, a choice that survives reversal.
        actor_tracks.sort(key=lambda t: (t.center[0, 0], t.track_id))
        distractors = [t for t in tracks if t.role == "distractor"]

        text = np.random.default_rng(text_seq)
        event = SynthEvent(
            action=label,
            track_ids=[t.track_id for t in actor_tracks],
            start_frame=start,
            end_frame=end,
            start_s=start / cfg.fps,
            end_s=end / cfg.fps,
            query=language.event_query(label, actor_tracks),
        )
        return SynthVideo(
            id=f"{split}_{index:06d}",
            split=split,
            index=index,
            frames=frames,
            fps=float(cfg.fps),
            action=label,
            action_id=action_id(label),
            tracks=tracks,
            events=[event],
            captions=language.video_captions(label, actor_tracks, distractors, cfg.size, text),
            qa=language.video_qa(label, tracks, actor_tracks, cfg.size, self.shapes(split), text),
            novel=any(t.novel for t in tracks),
            reversed=flip,
        )

    def _scene(
        self, split: str, scene_seq: np.random.SeedSequence, action: str | None
    ) -> tuple[Any, np.ndarray, bool, str]:
        """The draws that fix what a video shows: ``(script, background, played backwards, label)``."""
        cfg = self.config
        rng = np.random.default_rng(scene_seq)
        group = ACTION_GROUPS[int(rng.integers(len(ACTION_GROUPS)))]
        flip = bool(rng.random() < 0.5)
        if action is not None:
            if action not in ACTION_CLASSES:
                raise SynthWorldConfigError(f"unknown action {action!r}")
            group = next(g for g in ACTION_GROUPS if action in g)
            if len(group) == 2:
                flip = action != group[0]
        canonical = group[0]
        label = group[1] if flip and len(group) == 2 else canonical
        actors = ACTION_CLASSES[canonical].actors
        n_objects = int(rng.integers(max(cfg.min_objects, actors), max(cfg.max_objects, actors) + 1))
        script = script_video(rng, canonical, self.shapes(split), cfg.size, cfg.frames, n_objects)
        return script, background(rng, cfg.size), flip, label

    def frames(self, split: str, index: int, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The pixels of video ``index``'s frames ``indices`` (all when None), uint8 ``[len,H,W,3]``: exactly
        ``video(split, index).frames[indices]``, drawing only those frames and none of the annotations (tracks,
        masks, captions, questions), which a training step that samples 4 of 8 frames never reads."""
        cfg = self.config
        scene_seq, _ = np.random.SeedSequence([cfg.seed, _split_id(split), index]).spawn(2)
        chosen = np.arange(cfg.frames) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= cfg.frames):
            raise SynthWorldConfigError(f"frame indices {chosen.tolist()} outside the video's {cfg.frames} frames")
        if cfg.scenes == "grounding":
            grounding, bg = self._grounding_scene(split, scene_seq)
            script, flip = grounding, False
        elif cfg.scenes == "tracking":
            objects, bg = self._tracking_scene(split, scene_seq)
            states = [o.states.at(chosen) for o in objects]
            return composite(bg, [o.shape for o in objects], states, len(chosen))[0]
        else:
            script, bg, flip, _ = self._scene(split, scene_seq, None)
        states = [(o.states.reversed() if flip else o.states).at(chosen) for o in script.objects]
        pixels, _ = composite(bg, [o.shape for o in script.objects], states, len(chosen))
        return pixels

    def _grounding_scene(self, split: str, scene_seq: np.random.SeedSequence) -> tuple[GroundingScript, np.ndarray]:
        """The draws that fix what a grounding video shows: ``(script, background)``; shared by :meth:`video`
        and :meth:`frames` so both render the same pixels."""
        cfg = self.config
        rng = np.random.default_rng(scene_seq)
        script = script_grounding(rng, self.shapes(split), cfg.size, cfg.frames, max(0, cfg.max_objects - 2))
        return script, background(rng, cfg.size)

    def _tracking_scene(self, split: str, scene_seq: np.random.SeedSequence) -> tuple[list[ObjectPlan], np.ndarray]:
        """The draws that fix what a tracking video shows: ``(objects, background)``."""
        cfg = self.config
        rng = np.random.default_rng(scene_seq)
        n_objects = int(rng.integers(max(2, cfg.min_objects), max(2, cfg.max_objects) + 1))
        objects = script_tracking(rng, self.shapes(split), cfg.size, cfg.frames, n_objects)
        return objects, background(rng, cfg.size)

    def _tracking_video(self, split: str, index: int, scene_seq: np.random.SeedSequence) -> SynthVideo:
        """A tracking scene: tracks with exact visible masks and boxes; no event, caption or question."""
        cfg = self.config
        objects, bg = self._tracking_scene(split, scene_seq)
        frames, masks = composite(bg, [o.shape for o in objects], [o.states for o in objects], cfg.frames)
        tracks = [
            self._track(k + 1, plan.shape, plan.role, plan.states, mask)
            for k, (plan, mask) in enumerate(zip(objects, masks, strict=True))
        ]
        return SynthVideo(
            id=f"tracking_{split}_{index:06d}",
            split=split,
            index=index,
            frames=frames,
            fps=float(cfg.fps),
            action="",
            action_id=-1,
            tracks=tracks,
            events=[],
            captions=[],
            qa={"multiple_choice": [], "open_ended": []},
            novel=any(t.novel for t in tracks),
            reversed=False,
        )

    def _grounding_video(self, split: str, index: int, scene_seq: np.random.SeedSequence) -> SynthVideo:
        """A grounding scene: one event per actor, each query naming its actor's colour and shape."""
        cfg = self.config
        script, bg = self._grounding_scene(split, scene_seq)
        shapes = [o.shape for o in script.objects]
        frames, masks = composite(bg, shapes, [o.states for o in script.objects], cfg.frames)
        tracks = [
            self._track(k + 1, plan.shape, plan.role, plan.states, mask)
            for k, (plan, mask) in enumerate(zip(script.objects, masks, strict=True))
        ]
        events = []
        for k, label, (start, end) in zip(script.actors, script.actions, script.spans, strict=True):
            actor = tracks[k]
            if np.isnan(actor.boxes[start : end + 1]).any():  # pragma: no cover - script_grounding keeps actors whole
                raise AssertionError(f"{split}_{index:06d}: actor {actor.track_id} is not visible throughout its event")
            events.append(
                SynthEvent(
                    action=label,
                    track_ids=[actor.track_id],
                    start_frame=start,
                    end_frame=end,
                    start_s=start / cfg.fps,
                    end_s=end / cfg.fps,
                    query=language.event_query(label, [actor]),
                )
            )
        return SynthVideo(
            id=f"grounding_{split}_{index:06d}",
            split=split,
            index=index,
            frames=frames,
            fps=float(cfg.fps),
            action=events[0].action,
            action_id=action_id(events[0].action),
            tracks=tracks,
            events=events,
            captions=[e.query for e in events],
            qa={"multiple_choice": [], "open_ended": []},
            novel=any(t.novel for t in tracks),
            reversed=False,
        )

    def videos(self, split: str, n: int, start: int = 0) -> Iterator[SynthVideo]:
        """Stream videos ``start … start + n - 1`` of ``split`` in memory (nothing touches the disk)."""
        for index in range(start, start + n):
            yield self.video(split, index)

    def _track(self, track_id: int, shape: str, role: str, st: ObjectStates, mask: np.ndarray) -> SynthTrack:
        present = st.radius > 0
        return SynthTrack(
            track_id=track_id,
            category=shape,
            role=role,
            novel=shape in self.config.held_out_shapes,
            colours=_named_runs(st.rgb[present], _PALETTE, COLOUR_NAMES),
            sizes=_named_runs(st.radius[present, None], _SIZE_FRACTIONS * self.config.size, SIZE_NAMES),
            boxes=boxes_from_masks(mask),
            masks=mask,
            visible=mask.any(axis=(1, 2)),
            center=st.center,
            radius=st.radius,
            angle=st.angle,
            rgb=st.rgb,
        )

    # --- images ---------------------------------------------------------------------------------------------

    def image(self, index: int, *, split: str = "train") -> SynthImage:
        """A still scene for image-text pretraining; every shape (held-out ones included) can appear."""
        cfg = self.config
        seq = np.random.SeedSequence([cfg.seed, _IMAGE_STREAM + _split_id(split), index])
        rng = np.random.default_rng(seq)
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        specs: list[dict[str, Any]] = []
        cells = [int(c) for c in rng.permutation(len(POSITIONS))]
        for _ in range(n):
            spec = {
                "shape": SHAPES[int(rng.integers(len(SHAPES)))],
                "colour": COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))],
                "size": SIZE_NAMES[int(rng.integers(len(SIZE_NAMES)))],
                "angle": float(rng.uniform(0.0, 2 * math.pi)),
                "jitter": rng.uniform(-0.04, 0.04, size=2),
            }
            for i, cell in enumerate(cells):
                spec["cell"] = cell
                if _fits(spec, specs, cfg.size):
                    specs.append(spec)
                    del cells[i]
                    break
        bg = background(rng, cfg.size)
        return self._render_image(f"image_{split}_{index:06d}", split, index, specs, bg, text_seed=seq, edit=None)

    def images(self, n: int, *, split: str = "train", start: int = 0) -> Iterator[SynthImage]:
        for index in range(start, start + n):
            yield self.image(index, split=split)

    def twin(self, image: SynthImage, attribute: str) -> SynthImage:
        """The same scene with exactly one ``attribute`` ("shape", "colour", "size" or "position") of one
        object changed; the canonical captions then differ only in that attribute's words (hard negatives)."""
        if attribute not in ATTRIBUTES:
            raise SynthWorldConfigError(f"unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
        cfg = self.config
        rng = np.random.default_rng(
            [cfg.seed, _TWIN_STREAM + _split_id(image.split), image.index, ATTRIBUTES.index(attribute)]
        )
        background_, original = image.scene
        specs = [dict(s) for s in original]
        for k in rng.permutation(len(specs)):
            k = int(k)
            old = specs[k]
            candidates = _alternatives(attribute, old, specs, cfg.size)
            if candidates:
                new_value = candidates[int(rng.integers(len(candidates)))]
                specs[k] = dict(old, **{_spec_key(attribute): new_value})
                edit = {
                    "object": k,
                    "attribute": attribute,
                    "from": _value_name(attribute, old[_spec_key(attribute)]),
                    "to": _value_name(attribute, new_value),
                }
                seq = np.random.SeedSequence([cfg.seed, _IMAGE_STREAM + _split_id(image.split), image.index])
                return self._render_image(
                    f"{image.id}_twin_{attribute}",
                    image.split,
                    image.index,
                    specs,
                    background_,
                    text_seed=seq,
                    edit=edit,
                )
        raise SynthWorldConfigError(f"no object of {image.id} can change its {attribute}")

    def _render_image(
        self,
        image_id: str,
        split: str,
        index: int,
        specs: list[dict[str, Any]],
        bg: np.ndarray,
        *,
        text_seed: np.random.SeedSequence,
        edit: dict[str, Any] | None,
    ) -> SynthImage:
        size = self.config.size
        states = []
        for spec in specs:
            center = _spec_center(spec, size)
            states.append(
                ObjectStates.constant(
                    1,
                    (center[0], center[1]),
                    SIZES[spec["size"]] * size,
                    spec["angle"],
                    COLOURS[spec["colour"]],
                )
            )
        frames, masks = composite(bg, [s["shape"] for s in specs], states, 1)
        objects = []
        for spec, st, mask in zip(specs, states, masks, strict=True):
            objects.append(
                ImageObject(
                    shape=spec["shape"],
                    colour=spec["colour"],
                    size=spec["size"],
                    position=POSITIONS[spec["cell"]],
                    center=(float(st.center[0, 0]), float(st.center[0, 1])),
                    radius=float(st.radius[0]),
                    angle=float(st.angle[0]),
                    novel=spec["shape"] in self.config.held_out_shapes,
                    box=boxes_from_masks(mask)[0],
                    mask=mask[0],
                )
            )
        # The caption rng comes from the original image's seed, so a twin's paraphrases pick the same words.
        text = np.random.default_rng(text_seed.spawn(2)[1])
        captions = language.image_captions(objects, text)
        return SynthImage(
            id=image_id,
            split=split,
            index=index,
            image=frames[0],
            objects=objects,
            caption=captions[0],
            captions=captions,
            novel=any(o.novel for o in objects),
            edit=edit,
            scene=(bg, [dict(s) for s in specs]),
        )


def _split_id(split: str) -> int:
    try:
        return _SPLIT_IDS[split]
    except KeyError:
        raise SynthWorldConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)}") from None


_PALETTE = np.array([COLOURS[name] for name in COLOUR_NAMES], dtype=np.int64)
_SIZE_FRACTIONS = np.array([SIZES[name] for name in SIZE_NAMES], dtype=np.float64)


def _named_runs(values: np.ndarray, table: np.ndarray, names: tuple[str, ...]) -> list[str]:
    """Names of the frames whose value ([T,D]) equals a row of ``table`` ([K,D] or [K]), in order, consecutive
    repeats merged: the colours a changing object shows, or the sizes a growing one passes through."""
    table = table.reshape(len(names), -1)
    matches = (np.abs(values[:, None, :] - table[None]) < 1e-6).all(axis=2)  # [T,K]
    hits = matches.argmax(axis=1)[matches.any(axis=1)]
    runs: list[str] = []
    for k in hits:
        if not runs or runs[-1] != names[k]:
            runs.append(names[k])
    return runs


# --- image scene helpers ------------------------------------------------------------------------------------


def _spec_center(spec: dict[str, Any], size: int) -> np.ndarray:
    row, col = divmod(spec["cell"], 3)
    center = np.array([(col + 0.5) * size / 3, (row + 0.5) * size / 3]) + spec["jitter"] * size
    radius = SIZES[spec["size"]] * size
    # Clamped into the frame; a clamped centre stays inside its own cell, so "position" keeps its meaning.
    return np.clip(center, radius + 1.0, size - radius - 1.0)


def _fits(spec: dict[str, Any], others: list[dict[str, Any]], size: int) -> bool:
    """Objects may touch a little but never overlap by more than 10% of their radii."""
    center, radius = _spec_center(spec, size), SIZES[spec["size"]] * size
    for other in others:
        gap = float(np.hypot(*(center - _spec_center(other, size)))) - 0.9 * (radius + SIZES[other["size"]] * size)
        if gap < 0 or other["cell"] == spec["cell"]:
            return False
    return True


def _spec_key(attribute: str) -> str:
    return "cell" if attribute == "position" else attribute


def _value_name(attribute: str, value: Any) -> str:
    return POSITIONS[value] if attribute == "position" else value


def _alternatives(attribute: str, spec: dict[str, Any], specs: list[dict[str, Any]], size: int) -> list[Any]:
    """Values ``attribute`` of ``spec`` can take while the scene stays valid: objects still fit, and the edited
    object does not become a copy of another one."""
    others = [s for s in specs if s is not spec]
    key = _spec_key(attribute)
    if attribute == "shape":
        options: list[Any] = list(SHAPES)
    elif attribute == "colour":
        options = list(COLOUR_NAMES)
    elif attribute == "size":
        options = list(SIZE_NAMES)
    else:
        options = list(range(len(POSITIONS)))
    described = {(s["shape"], s["colour"], s["size"]) for s in others}
    valid = []
    for value in options:
        edited = dict(spec, **{key: value})
        if value != spec[key] and _fits(edited, others, size):
            if (edited["shape"], edited["colour"], edited["size"]) not in described:
                valid.append(value)
    return valid
