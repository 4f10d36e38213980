"""Transformers grounding ILFMs (OWL-ViT, OWLv2, Grounding DINO, MM-Grounding-DINO) built from tiny configs with
random weights: nothing is downloaded; each runs end to end on a random frame and gives clipped boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.foundation import GroundingModel, load_backbone
from videoadapt.foundation.hf_grounding import (
    HFGroundingDino,
    HFOwl,
    default_preprocessing,
    from_config,
    prepare_frames,
    read_preprocessing,
)

TEXT = {
    "vocab_size": 1000,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
}
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def owl_config(kind: str):  # noqa: ANN201
    from transformers import Owlv2Config, OwlViTConfig

    cls = OwlViTConfig if kind == "owlvit" else Owlv2Config
    # The class head maps into the text width: released models have projection_dim == text width (512).
    return cls(text_config=TEXT, vision_config=VISION, projection_dim=32)


def dino_config(kind: str):  # noqa: ANN201
    from transformers import BertConfig, GroundingDinoConfig, MMGroundingDinoConfig, SwinConfig

    cls = GroundingDinoConfig if kind == "grounding-dino" else MMGroundingDinoConfig
    return cls(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=1100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
        ),
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties the box heads of layers 1.. to layer 0: two at least
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        d_model=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        max_text_len=32,
        encoder_n_points=2,
        decoder_n_points=2,
    )


def small(model: GroundingModel) -> GroundingModel:
    """Shrink the canvas of the preprocessing to the tiny configs' sizes."""
    if isinstance(model, HFOwl):
        model.preprocessing["size"] = 32
    else:
        model.preprocessing.update(shortest=48, longest=80)
    return model


@pytest.fixture(scope="module", params=["owlvit", "owlv2"])
def owl(request: pytest.FixtureRequest) -> GroundingModel:
    return small(from_config(owl_config(request.param)))


@pytest.fixture(scope="module", params=["grounding-dino", "mm-grounding-dino"])
def dino(request: pytest.FixtureRequest) -> GroundingModel:
    return small(from_config(dino_config(request.param)))


def frames(height: int = 40, width: int = 56) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)


def test_owl_end_to_end_gives_clipped_boxes_and_scores(owl: GroundingModel) -> None:
    with torch.no_grad():
        regions = owl.detect_frames(frames(), ["a star", "a red circle", "an hourglass"])
    assert regions.boxes.shape == (2, 16, 4) and regions.logits.shape == (2, 16, 3)
    assert regions.embeds.shape == (2, 16, 32)
    assert regions.boxes.min() >= 0 and regions.boxes.max() <= 1
    assert torch.all(regions.boxes[..., 2:] >= regions.boxes[..., :2])
    assert (regions.objectness is not None) == (owl.model_type == "owlv2")
    assert torch.isfinite(regions.logits).all()


def test_owl_region_logits_agree_with_transformers_forward(owl: GroundingModel) -> None:
    """Our decomposition (image_embedder → heads) gives the logits and boxes of the model's own forward."""
    pixels, _ = prepare_frames(frames(32, 32), owl.preprocessing)
    texts = ["a star", "a red circle"]
    batch = owl.tokenizer(texts, padding="max_length", truncation=True, max_length=16)
    with torch.no_grad():
        ours = owl.detect(pixels, texts)
        # transformers takes the queries of every image stacked: [images * queries, L]
        theirs = owl.model(
            pixel_values=pixels,
            input_ids=torch.as_tensor(batch["input_ids"]).repeat(2, 1),
            attention_mask=torch.as_tensor(batch["attention_mask"]).repeat(2, 1),
        )
    from videoadapt.foundation.base import clip_boxes, cxcywh_to_xyxy

    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.boxes, clip_boxes(cxcywh_to_xyxy(theirs.pred_boxes)))


def test_owl_is_a_normal_image_language_model(owl: GroundingModel) -> None:
    pixels, _ = prepare_frames(frames(32, 32), owl.preprocessing)
    features = owl.encode_frames(pixels[None])
    assert features.embeds.shape == (1, 2, 32) and features.patches.shape == (1, 2, 16, 32)
    assert owl.encode_text(["a star"]).embeds.shape == (1, 32)
    assert len(owl.vision_blocks()) == 1 and owl.dims.patch_grid == (4, 4)


def test_owlv2_padding_maps_boxes_back_to_the_frame() -> None:
    settings = {**default_preprocessing("owlv2"), "size": 32}
    pixels, factors = prepare_frames(frames(20, 40), settings)
    assert pixels.shape == (2, 3, 32, 32)
    # The frame fills the top half of the padded square: a box over the whole canvas is twice the frame's height.
    torch.testing.assert_close(factors, torch.tensor([1.0, 2.0, 1.0, 2.0]))


def test_dino_end_to_end_gives_clipped_boxes_and_phrase_logits(dino: GroundingModel) -> None:
    assert dino.text_conditioned_regions
    with torch.no_grad():
        regions = dino.detect_frames(frames(), ["a star", "a red circle", "an hourglass"])
    assert regions.boxes.shape == (2, 10, 4) and regions.logits.shape == (2, 10, 3)
    assert regions.embeds.shape == (2, 10, 32)
    assert regions.boxes.min() >= 0 and regions.boxes.max() <= 1
    assert torch.isfinite(regions.logits).all()
    with pytest.raises(VideoadaptError, match="detect"):
        dino.encode_regions(torch.zeros(1, 3, 48, 48))


def test_dino_keeps_the_aspect_ratio(dino: GroundingModel) -> None:
    pixels, _ = prepare_frames(frames(40, 80), dino.preprocessing)
    assert pixels.shape[-2:] == (40, 80)  # shortest 48 would make the long side 96 > longest 80


def test_dino_frame_and_text_interface(dino: HFGroundingDino) -> None:
    pixels, _ = prepare_frames(frames(48, 48), dino.preprocessing)
    assert dino.encode_images(pixels).embeds.shape == (2, 32)
    assert dino.encode_text(["a star", "a red circle"]).embeds.shape == (2, 32)


def test_preprocessor_json_is_read(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 224, "width": 224}, "image_mean": [0.1, 0.2, 0.3], "resample": 2})
    )
    settings = read_preprocessing(tmp_path / "preprocessor_config.json", "owlvit")
    assert settings["size"] == 224 and settings["mean"] == (0.1, 0.2, 0.3) and settings["resample"] == "bilinear"
    assert read_preprocessing(tmp_path / "missing.json", "owlv2") == default_preprocessing("owlv2")


def test_local_directory_loads_through_the_backbone_spec(tmp_path) -> None:  # noqa: ANN001
    """A saved OWL-ViT directory (config, safetensors, tokenizer) loads with --backbone DIR."""
    model = from_config(owl_config("owlvit"))
    model.model.save_pretrained(tmp_path)
    _write_tokenizer(tmp_path)
    loaded = load_backbone(str(tmp_path))
    assert isinstance(loaded, HFOwl) and loaded.preprocessing["size"] == 768
    loaded.preprocessing["size"] = 32
    with torch.no_grad():
        ours = loaded.detect_frames(frames(32, 32), ["a star"])
        original = small(model).detect_frames(frames(32, 32), ["a star"])
    torch.testing.assert_close(ours.boxes, original.boxes)


def _write_tokenizer(path) -> None:  # noqa: ANN001
    """A word-level CLIP-style tokenizer built offline (tokenizers' WordLevel model), enough to load."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 999, "[UNK]": 1, "a": 2, "star": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|endoftext|>", bos_token="<|startoftext|>", eos_token="<|endoftext|>"
    ).save_pretrained(path)


def test_unknown_model_type_is_refused() -> None:
    from transformers import CLIPConfig

    with pytest.raises(VideoadaptError, match="not a grounding model"):
        from_config(CLIPConfig())
