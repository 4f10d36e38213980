"""Load an adapted encoder saved by :meth:`VideoEncoder.save_pretrained` (PEFT's ``from_pretrained`` as the model).

>>> encoder.save_pretrained("out/encoder")          # encoder.json + encoder.safetensors
>>> encoder = load_encoder("out/encoder")           # backbone from its spec, paradigms with their options, weights

Imports nothing of the training code: a program that only predicts loads an encoder without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.foundation.loading import load_backbone
from videoadapt.paradigms.base import ENCODER_CONFIG, ENCODER_WEIGHTS, FORMAT_VERSION, VideoEncoder
from videoadapt.paradigms.compose import build_video_encoder
from videoadapt.utils.safe_io import load_json, load_tensors

WEIGHT_KINDS = ("trainable", "full")


def load_encoder(directory: str | Path, ilfm: ImageLanguageModel | None = None) -> VideoEncoder:
    """The encoder saved in ``directory``, in eval mode.

    The backbone is loaded from the recorded spec unless ``ilfm`` is given (it is changed in place, as
    :func:`build_video_encoder` does); the paradigms are composed with their saved options, merged if the encoder was
    saved merged, and the weights loaded. A trainable-only save also checks that the frozen weights it sits on are
    the ones it was trained on (a backbone with unseeded random weights, or another checkpoint, is refused).
    """
    directory = Path(directory)
    config_path, weights_path = directory / ENCODER_CONFIG, directory / ENCODER_WEIGHTS
    if not config_path.is_file():
        raise InputFileError(config_path, "not found: not a directory written by VideoEncoder.save_pretrained")
    record = _read_record(config_path)
    if not weights_path.is_file():
        raise InputFileError(weights_path, f"not found; {ENCODER_CONFIG} beside it names no other weights file")
    state = load_tensors(weights_path)
    if ilfm is None:
        ilfm = load_backbone(record["backbone"])
    _apply_backbone_options(ilfm, record.get("backbone_options"), config_path)
    encoder = build_video_encoder(ilfm, record["paradigms"], record["options"])
    if record["merged"]:
        encoder.merge()
    if record["weights"] == "full":
        _load_full(encoder, state, weights_path)
    else:
        _load_trainable(encoder, state, weights_path, record.get("frozen_sha256"))
    return encoder.eval()


def _apply_backbone_options(ilfm: ImageLanguageModel, options: Any, path: Path) -> None:
    """A video MLLM's recorded settings (pooling, projector, prompt), applied before the paradigms are built; the
    seed only chose the untrained projector, which the saved weights replace."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise InputFileError(path, f"'backbone_options' must be an object, got {options!r}")
    if not hasattr(ilfm, "reconfigure"):
        raise InputFileError(path, f"'backbone_options' are recorded, but {ilfm.name} takes none (not a video MLLM)")
    try:
        ilfm.reconfigure(**{k: v for k, v in options.items() if k != "seed"})
    except VideoadaptError as error:
        raise InputFileError(path, f"'backbone_options': {error}") from None


def _read_record(path: Path) -> dict[str, Any]:
    record = load_json(path)
    if not isinstance(record, dict):
        raise InputFileError(path, f"expected a JSON object, got {type(record).__name__}")
    version = record.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputFileError(path, f"'format' must be an integer format version, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputFileError(
            path,
            f"format version {version} is newer than this videoadapt reads ({FORMAT_VERSION}; saved by videoadapt "
            f"{record.get('videoadapt_version', '?')}): upgrade videoadapt",
        )
    checks: list[tuple[str, type | tuple[type, ...], str]] = [
        ("backbone", str, "a backbone spec string"),
        ("paradigms", str, "a paradigm spec like 'lora+post_network'"),
        ("options", dict, "an object mapping paradigm names to options"),
        ("merged", bool, "true or false"),
        ("weights", str, f"one of {', '.join(WEIGHT_KINDS)}"),
    ]
    for key, kind, expected in checks:
        if not isinstance(record.get(key), kind):
            got = "nothing" if key not in record else repr(record[key])
            raise InputFileError(path, f"{key!r} must be {expected}, got {got}")
    if record["weights"] not in WEIGHT_KINDS:
        raise InputFileError(path, f"'weights' must be one of {', '.join(WEIGHT_KINDS)}, got {record['weights']!r}")
    return record


def _misfit(expected: set[str], given: set[str]) -> str:
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    return (
        f"weights do not fit the encoder this {ENCODER_CONFIG} describes: {len(missing)} missing (e.g. {missing[:3]}), "
        f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
    )


def _check_shapes(targets: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path) -> None:
    wrong = [(k, tuple(state[k].shape), tuple(t.shape)) for k, t in targets.items() if state[k].shape != t.shape]
    if wrong:
        shown = ", ".join(f"{k} {got} (expected {want})" for k, got, want in wrong[:3])
        raise InputFileError(path, f"{len(wrong)} tensors have the wrong shape: {shown}")


def _load_trainable(encoder: VideoEncoder, state: dict[str, torch.Tensor], path: Path, fingerprint: Any) -> None:
    expected = encoder.trainable_state_dict()
    if set(state) != set(expected):
        raise InputFileError(path, _misfit(set(expected), set(state)))
    _check_shapes(expected, state, path)
    if fingerprint is not None and encoder.frozen_fingerprint() != fingerprint:
        raise InputFileError(
            path,
            f"holds only the trainable weights, and the frozen ones under them differ from those it was saved with "
            f"(backbone {encoder.ilfm.spec or encoder.ilfm.name!r}: another checkpoint, or random weights that are not "
            "reproducible such as tiny-random); pass load_encoder(directory, ilfm=) the backbone it was trained on",
        )
    encoder.load_trainable_state_dict(state)


def _load_full(encoder: VideoEncoder, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = encoder.state_dict()
    if set(state) != set(expected):
        raise InputFileError(path, _misfit(set(expected), set(state)))
    _check_shapes(expected, state, path)
    encoder.load_state_dict(state)
