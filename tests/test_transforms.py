"""preprocess(): resize/crop/normalise as CLIP's and SigLIP's processors do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoadapt.data.transforms import (
    CLIP_MEAN,
    CLIP_SETTINGS,
    CLIP_STD,
    SIGLIP_SETTINGS,
    ProcessorSettings,
    preprocess,
    resized_size,
)


def normalised(values: np.ndarray, settings: ProcessorSettings) -> np.ndarray:
    """Hand formula: [..., 3] uint8 values -> (v / 255 - mean) / std, channel last."""
    mean, std = np.array(settings.mean, np.float32), np.array(settings.std, np.float32)
    return (values.astype(np.float32) * np.float32(1 / 255) - mean) / std


def test_constants_match_the_published_processor_configs():
    assert CLIP_SETTINGS == ProcessorSettings(224, CLIP_MEAN, CLIP_STD, "shortest_edge", "center", "bicubic")
    assert CLIP_SETTINGS.mean == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_SETTINGS.std == (0.26862954, 0.26130258, 0.27577711)
    assert SIGLIP_SETTINGS.image_size == 224
    assert SIGLIP_SETTINGS.mean == SIGLIP_SETTINGS.std == (0.5, 0.5, 0.5)
    assert (SIGLIP_SETTINGS.resize, SIGLIP_SETTINGS.crop, SIGLIP_SETTINGS.interpolation) == (
        "squash",
        "none",
        "bicubic",
    )


@pytest.mark.parametrize(
    ("height", "width", "settings", "expected"),
    [
        (480, 640, CLIP_SETTINGS, (224, 298)),  # int(224 * 640 / 480) = int(298.67)
        (640, 480, CLIP_SETTINGS, (298, 224)),
        (224, 224, CLIP_SETTINGS, (224, 224)),
        (100, 50, CLIP_SETTINGS, (448, 224)),  # upscaling too
        (480, 640, SIGLIP_SETTINGS, (224, 224)),
    ],
)
def test_resized_size_follows_transformers_rounding(height, width, settings, expected):
    assert resized_size(height, width, settings) == expected


def test_hand_computed_crop_and_normalise():
    # Short side already equals image_size, so no resampling: only the crop and the formula remain.
    settings = ProcessorSettings(image_size=2, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    frame = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(1, 2, 5, 3) * 8  # H=2, W=5
    out = preprocess(frame, settings)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    left = (5 - 2) // 2  # transformers' centre crop offset: 1
    kept = frame[0, :, left : left + 2]  # [2,2,3]
    expected = (kept / 255.0 - np.array([0.5, 0.25, 0.0])) / np.array([0.5, 0.25, 1.0])
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)
    # One value worked out fully: pixel (0, 1), red = 8 * 3 = 24 -> (24/255 - 0.5) / 0.5.
    assert out[0, 0, 0, 0].item() == pytest.approx((24 / 255 - 0.5) / 0.5, abs=1e-6)


def test_crop_offsets_for_odd_margins_on_both_axes():
    settings = ProcessorSettings(image_size=3, mean=(0, 0, 0), std=(1, 1, 1), resize="squash", crop="center")
    # squash to 3x3 first; a 3x3 input is left alone, so this checks a no-op crop.
    frame = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
    out = preprocess(frame, settings)
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), frame / 255.0, atol=1e-6)
    # Shortest edge on a tall image: rows (7 - 3) // 2 = 2 .. 4 survive.
    tall = np.zeros((1, 7, 3, 3), np.uint8)
    tall[0, :, :, 0] = np.arange(7)[:, None] * 30
    out = preprocess(tall, ProcessorSettings(3, (0, 0, 0), (1, 1, 1)))
    np.testing.assert_allclose(out[0, 0, :, 0].numpy() * 255, [60, 90, 120], atol=1e-4)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("settings", [CLIP_SETTINGS, SIGLIP_SETTINGS], ids=["clip", "siglip"])
def test_constant_frames_stay_exact_through_resampling(settings, interpolation):
    colour = np.array([200, 17, 99], np.uint8)
    frames = np.broadcast_to(colour, (2, 480, 640, 3)).copy()
    settings = ProcessorSettings(**{**settings.__dict__, "interpolation": interpolation})
    out = preprocess(frames, settings)
    assert out.shape == (2, 3, 224, 224)
    expected = normalised(colour, settings)
    for channel in range(3):
        assert torch.allclose(out[:, channel], torch.tensor(float(expected[channel])), atol=1e-6)


def test_downscale_is_antialiased():
    # A one-pixel checkerboard shrunk 4x must come out mid grey; without antialiasing it aliases.
    board = ((np.indices((448, 448)).sum(0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(board[None, :, :, None], 3, axis=3)
    out = preprocess(frames, ProcessorSettings(112, (0, 0, 0), (1, 1, 1)))
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)
    assert out.std().item() < 0.02


def test_numpy_and_torch_inputs_agree(asl_clips):
    from videoadapt.data.sampling import UniformSegments
    from videoadapt.data.video import read_video

    frames = read_video(asl_clips[0], UniformSegments(2)).frames
    a = preprocess(frames, CLIP_SETTINGS)
    b = preprocess(torch.from_numpy(frames), CLIP_SETTINGS)
    assert a.shape == (2, 3, 224, 224) and a.is_contiguous()
    assert torch.equal(a, b)
    assert preprocess(frames, SIGLIP_SETTINGS).shape == (2, 3, 224, 224)


def test_empty_clip_gives_empty_batch():
    assert preprocess(np.zeros((0, 10, 12, 3), np.uint8), CLIP_SETTINGS).shape == (0, 3, 224, 224)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((1, 8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 8, 8, 4), np.uint8),
        np.zeros((1, 0, 8, 3), np.uint8),
    ],
)
def test_bad_frames_are_rejected(frames):
    with pytest.raises(ValueError, match="uint8"):
        preprocess(frames, CLIP_SETTINGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(image_size=0),
        dict(mean=(0.5, 0.5)),
        dict(std=(0.5, 0.0, 0.5)),
        dict(resize="longest_edge"),
        dict(crop="random"),
        dict(crop="none"),  # shortest_edge without a crop is not square
        dict(interpolation="lanczos"),
    ],
)
def test_bad_settings_are_rejected(kwargs):
    base = dict(image_size=224, mean=CLIP_MEAN, std=CLIP_STD)
    with pytest.raises(ValueError):
        ProcessorSettings(**{**base, **kwargs})


def test_settings_accept_lists_and_stay_hashable():
    settings = ProcessorSettings(224, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], resize="squash", crop="none")
    assert settings.mean == (0.5, 0.5, 0.5)
    assert hash(settings) == hash(SIGLIP_SETTINGS) and settings == SIGLIP_SETTINGS


def _hf_processor(name: str):
    """A transformers image processor that can actually run here, or skip (it needs PIL or torchvision)."""
    transformers = pytest.importorskip("transformers")
    try:
        processor = getattr(transformers, name)()
        processor(images=[np.zeros((8, 8, 3), np.uint8)], return_tensors="np")
    except (ImportError, OSError, ValueError) as error:
        pytest.skip(f"transformers.{name} cannot run here: {' '.join(str(error).split())[:100]}")
    return processor


@pytest.mark.parametrize(
    ("name", "settings"), [("CLIPImageProcessor", CLIP_SETTINGS), ("SiglipImageProcessor", SIGLIP_SETTINGS)]
)
def test_matches_transformers_processor(asl_clips, name, settings):
    from videoadapt.data.sampling import UniformSegments
    from videoadapt.data.video import read_video

    processor = _hf_processor(name)
    frames = read_video(asl_clips[0], UniformSegments(3)).frames
    theirs = processor(images=list(frames), return_tensors="np")["pixel_values"]
    ours = preprocess(frames, settings).numpy()
    assert ours.shape == theirs.shape
    # Both resize in uint8 with antialiased bicubic (theirs in PIL); rounding differs on a small fraction
    # of the values (measured on all 149 fixture frames: 0.2% by one level, 3 of 22 million by two).
    level = 1 / 255 / min(settings.std)
    difference = np.abs(ours - theirs)
    assert difference.max() <= 2.01 * level
    assert (difference > level / 2).mean() < 0.01
