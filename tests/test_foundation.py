"""ImageLanguageModel implementations: transformers CLIP/SigLIP (tiny random configs) and TinyCLIP."""

from __future__ import annotations

import json

import pytest
import torch

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation import load_backbone
from videoadapt.foundation.hf import from_architecture

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module", params=["clip-tiny", "siglip-tiny"])
def tiny_hf(request):
    return from_architecture(request.param)


def test_encode_frames_shapes(tiny_hf):
    dims = tiny_hf.dims
    size = tiny_hf.processor.image_size
    video = torch.randn(2, 3, 3, size, size)
    features = tiny_hf.encode_frames(video, all_layers=True)
    tokens = dims.num_patches + (1 if dims.has_cls else 0)
    assert features.cls.shape == (2, 3, dims.width)
    assert features.patches.shape == (2, 3, dims.num_patches, dims.width)
    assert features.embeds.shape == (2, 3, dims.embed_dim)
    assert len(features.layers) == dims.layers == len(tiny_hf.vision_blocks())
    assert all(layer.shape == (2, 3, tokens, dims.width) for layer in features.layers)
    # Frames are encoded independently: the per-frame result equals encoding that frame alone.
    single = tiny_hf.encode_images(video[1, 2:3])
    torch.testing.assert_close(features.embeds[1, 2], single.embeds[0], rtol=1e-4, atol=1e-5)


def test_encode_text_shapes(tiny_hf):
    features = tiny_hf.encode_text(["a small red star moves left", "a circle"])
    assert features.embeds.shape == (2, tiny_hf.dims.embed_dim)
    assert features.tokens.shape[:2] == features.mask.shape
    assert features.tokens.shape[-1] == tiny_hf.dims.text_width
    assert features.mask[1].sum() < features.mask[0].sum()  # the shorter text has fewer real tokens


def test_bad_inputs_are_clear(tiny_hf):
    with pytest.raises(VideoadaptError, match="preprocess"):
        tiny_hf.encode_images(torch.randn(1, 3, 17, 17))
    with pytest.raises(VideoadaptError, match="empty"):
        tiny_hf.encode_text([])
    with pytest.raises(VideoadaptError, match="list of strings"):
        tiny_hf.encode_text("a star")


def test_unknown_backbone_lists_forms():
    with pytest.raises(VideoadaptError, match="hf-config:clip-vit-b16"):
        load_backbone("resnet-50")
    with pytest.raises(VideoadaptError, match="clip-vit-b32"):
        load_backbone("hf-config:vit-huge")


def test_clip_vit_b16_architecture_is_exact():
    # openai/clip-vit-base-patch16 has 149,620,737 parameters; the same architecture built from config must too.
    model = load_backbone("hf-config:clip-vit-b16")
    assert sum(p.numel() for p in model.parameters()) == 149_620_737
    assert model.dims.patch_grid == (14, 14) and model.dims.layers == 12 and model.dims.embed_dim == 512


def test_offline_hub_id_says_how_to_use_a_local_directory(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VideoadaptError, match="--backbone DIR"):
        load_backbone("hf:openai/clip-vit-base-patch16")


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte-level BPE alphabet: printable bytes map to themselves, the rest to code points above 255.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _write_minimal_clip_tokenizer(directory) -> None:
    """A byte-level CLIP BPE vocabulary with no merges: enough for a CLIPTokenizer to load and run offline."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")


def test_local_directory_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    original = from_architecture("clip-tiny")
    original.model.config.text_config.eos_token_id = 513
    original.model.save_pretrained(tmp_path)  # safetensors by default
    _write_minimal_clip_tokenizer(tmp_path)
    CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    processor = {
        "do_center_crop": True,
        "crop_size": {"height": 32, "width": 32},
        "size": {"shortest_edge": 32},
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))

    loaded = load_backbone(str(tmp_path))
    assert loaded.processor.image_size == 32
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_images(images).embeds, original.encode_images(images).embeds)
    assert loaded.encode_text(["a red star"]).embeds.shape == (1, 16)


def test_pickled_transformers_checkpoint_is_refused(tmp_path):
    original = from_architecture("clip-tiny")
    original.model.config.save_pretrained(tmp_path)
    torch.save(original.model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle, no safetensors
    with pytest.raises(VideoadaptError, match="cannot load backbone"):
        load_backbone(str(tmp_path))


def test_pickled_tensor_file_is_refused(tmp_path):
    from videoadapt.utils.safe_io import load_tensors

    path = tmp_path / "weights.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(InputFileError, match="pickled"):
        load_tensors(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputFileError, match="not a valid safetensors"):
        load_tensors(tmp_path / "junk.safetensors")


def test_flops_follow_the_fvcore_convention():
    # Published per-view costs at 224 px: ViT-B/16 ~17.6 and ViT-B/32 ~4.4 GFLOPs (one multiply-add = one FLOP),
    # attention matmuls included.
    from videoadapt.bench.cost import count_flops

    images = torch.randn(1, 3, 224, 224)
    b16 = load_backbone("hf-config:clip-vit-b16")
    b32 = load_backbone("hf-config:clip-vit-b32")
    assert 17.5e9 < count_flops(lambda: b16.encode_images(images)) < 17.65e9
    assert 4.35e9 < count_flops(lambda: b32.encode_images(images)) < 4.45e9


def test_safetensors_whose_header_length_looks_like_a_pickle_still_loads(tmp_path):
    # The 8-byte little-endian header length can start with 0x80 0x02, a pickle's opening bytes.
    from videoadapt.utils.safe_io import load_tensors, save_tensors

    path = tmp_path / "w.safetensors"
    for length in range(1, 2000):
        save_tensors(path, {"k" * length: torch.ones(1)})
        head = path.read_bytes()[:2]
        if head[0] == 0x80 and head[1] in (2, 3, 4, 5):
            break
    else:
        pytest.fail("no header length starting with a pickle opcode was produced")
    assert torch.equal(load_tensors(path)["k" * length], torch.ones(1))


def test_flops_see_inside_the_fused_transformer_layer():
    # In eval mode under no_grad, nn.TransformerEncoderLayer takes a fused fast path the counter cannot see into;
    # counting must switch it off, or a temporal transformer would look free. One layer at width W over T tokens:
    # in-projection 3W², out-projection W², MLP 2·4W² per token, plus the attention products 2·T·W per token.
    from videoadapt.bench.cost import count_flops
    from videoadapt.temporal import TemporalTransformer

    width, frames = 64, 5
    module = TemporalTransformer(width, layers=1, heads=4).eval()
    expected = frames * (3 + 1 + 8) * width * width + 2 * frames * frames * width
    assert count_flops(lambda: module(torch.randn(2, frames, width)), [module]) == 2 * expected
    assert all(p.requires_grad for p in module.parameters())  # restored after counting
