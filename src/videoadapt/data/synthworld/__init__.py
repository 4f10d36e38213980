"""SynthWorld: a procedural, seeded world of short videos and still images with exact ground truth for every
video-text task (tracking, grounding, segmentation, retrieval, recognition, captioning, QA).

>>> world = SynthWorld(SynthWorldConfig(seed=0))
>>> video = world.video("train", 0)          # random access; identical however it is reached
>>> image = world.image(0)                   # still scene for image-text pretraining
>>> twin = world.twin(image, "colour")       # hard negative differing in one attribute

See docs/synthworld.md for the vocabulary, the action classes and the on-disk layout.
"""

from videoadapt.data.synthworld.groundtruth import UnrecognisedAction, action_from_states
from videoadapt.data.synthworld.samples import ImageObject, SynthEvent, SynthImage, SynthTrack, SynthVideo
from videoadapt.data.synthworld.vocabulary import (
    ACTION_CLASSES,
    ACTION_GROUPS,
    ACTIONS,
    ANSWER_VOCAB,
    COLOUR_NAMES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZE_NAMES,
    SIZES,
    partner,
)
from videoadapt.data.synthworld.world import (
    ATTRIBUTES,
    SCENES,
    SPLITS,
    VERSION,
    SynthWorld,
    SynthWorldConfig,
    SynthWorldConfigError,
)

__all__ = [
    "ACTIONS",
    "ACTION_CLASSES",
    "ACTION_GROUPS",
    "ANSWER_VOCAB",
    "ATTRIBUTES",
    "COLOURS",
    "COLOUR_NAMES",
    "POSITIONS",
    "SHAPES",
    "SCENES",
    "SIZES",
    "SIZE_NAMES",
    "SPLITS",
    "VERSION",
    "ImageObject",
    "SynthEvent",
    "SynthImage",
    "SynthTrack",
    "SynthVideo",
    "SynthWorld",
    "SynthWorldConfig",
    "SynthWorldConfigError",
    "UnrecognisedAction",
    "action_from_states",
    "partner",
]
