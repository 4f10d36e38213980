"""CLIP and SigLIP/SigLIP2 through transformers, behind the :class:`ImageLanguageModel` interface.

Weights come from a hub id (``hf:openai/clip-vit-base-patch16``), a local directory saved with
``save_pretrained``/``huggingface-cli download --local-dir``, or an exact architecture with random weights
(``hf-config:clip-vit-b16``) for parameter counting and tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from videoadapt.data.transforms import CLIP_MEAN, CLIP_STD, SIGLIP_SETTINGS, ProcessorSettings
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.utils.safe_io import load_json


class HFImageLanguageModel(ImageLanguageModel):
    """A transformers CLIP-like model; ``family`` is ``"clip"`` or ``"siglip"`` (fixed-resolution SigLIP2 included)."""

    def __init__(
        self,
        model: nn.Module,
        family: str,
        processor: ProcessorSettings,
        tokenizer: Any | None = None,
        name: str = "hf",
    ) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self._processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else HashTokenizer(model.config.text_config)
        self.name = name

    # -- interface -------------------------------------------------------------------------------------------
    @property
    def dims(self) -> ModelDims:
        vision = self.model.config.vision_config
        grid = vision.image_size // vision.patch_size
        embed_dim = vision.hidden_size if self.family == "siglip" else self.model.config.projection_dim
        return ModelDims(
            width=vision.hidden_size,
            embed_dim=embed_dim,
            layers=vision.num_hidden_layers,
            patch_grid=(grid, grid),
            text_width=self.model.config.text_config.hidden_size,
            has_cls=self.family == "clip",
        )

    @property
    def processor(self) -> ProcessorSettings:
        return self._processor

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def vision_blocks(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        if self.family != "clip":
            return None
        return self.model.vision_model.post_layernorm, self.model.visual_projection

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.vision_model] + ([self.model.visual_projection] if self.family == "clip" else [])

    def text_modules(self) -> list[nn.Module]:
        return [self.model.text_model] + ([self.model.text_projection] if self.family == "clip" else [])

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        self.check_images(images)
        vision = self.model.vision_model
        out = vision(pixel_values=images, output_hidden_states=all_layers)
        tokens = out.last_hidden_state
        layers = list(out.hidden_states[1:]) if all_layers else None
        if self.family == "clip":
            pooled = out.pooler_output  # post-LayerNorm CLS
            return FrameFeatures(
                cls=pooled, patches=tokens[:, 1:], embeds=self.model.visual_projection(pooled), layers=layers
            )
        # SigLIP: no CLS token; the attention-pooling head's output already lives in the joint space.
        return FrameFeatures(cls=out.pooler_output, patches=tokens, embeds=out.pooler_output, layers=layers)

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        """Encode ``texts``; ``prefix_embeddings`` ``[K, Dt]`` (learnable context vectors, CoOp) are inserted into
        every text's token embeddings right after the BOS token (CLIP) or at the start (SigLIP, which has none).

        With a prefix, texts are truncated to ``K`` fewer tokens, positions run over the longer sequence, the
        attention mask covers the prefix, and CLIP still pools at its EOS token (now ``K`` positions later).
        Gradients flow to ``prefix_embeddings`` through the (frozen) text tower; ``tokens``/``mask`` include the
        prefix positions.
        """
        self.check_texts(texts)
        text_model = self.model.text_model
        max_length = self.model.config.text_config.max_position_embeddings
        extra = 0 if prefix_embeddings is None else prefix_embeddings.shape[0]
        if extra >= max_length - 1:
            raise VideoadaptError(f"{self.name}: a text prefix of {extra} tokens leaves no room in {max_length}")
        # SigLIP was trained on texts padded to the full length; CLIP pools at the EOS token and pads freely.
        padding = "max_length" if self.family == "siglip" else "longest"
        batch = self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=max_length - extra, return_tensors="pt"
        )
        device = next(self.parameters()).device
        input_ids = batch["input_ids"].to(device)
        mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).to(device)
        if prefix_embeddings is not None:
            return self._encode_text_with_prefix(input_ids, mask, prefix_embeddings)
        out = text_model(input_ids=input_ids, attention_mask=mask if self.family == "clip" else None)
        embeds = out.pooler_output
        if self.family == "clip":
            embeds = self.model.text_projection(embeds)
        return TextFeatures(tokens=out.last_hidden_state, mask=mask, embeds=embeds)

    def _encode_text_with_prefix(
        self, input_ids: torch.Tensor, mask: torch.Tensor, prefix: torch.Tensor
    ) -> TextFeatures:
        """The text tower's own forward (transformers' CLIPTextModel / SiglipTextModel), recomputed from its parts
        so that embeddings can be inserted between the token lookup and the position embeddings — as CoOp's
        TextEncoder does on OpenAI CLIP (official KaiyangZhou/CoOp, trainers/coop.py)."""
        text_model = self.model.text_model
        embeddings = text_model.embeddings
        n, k = input_ids.shape[0], prefix.shape[0]
        tokens = embeddings.token_embedding(input_ids)
        prefix = prefix.to(tokens.dtype).unsqueeze(0).expand(n, -1, -1)
        at = 1 if self.family == "clip" else 0  # after CLIP's BOS; SigLIP texts have no BOS
        x = torch.cat([tokens[:, :at], prefix, tokens[:, at:]], dim=1)
        length = x.shape[1]
        positions = torch.arange(length, device=x.device).unsqueeze(0)
        x = x + embeddings.position_embedding(positions)
        mask = torch.cat([mask[:, :at], mask.new_ones(n, k), mask[:, at:]], dim=1)
        attention = None
        if self.family == "clip":
            # CLIP's text tower is causal and ignores padding: an additive [N,1,L,L] mask with both.
            allowed = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            allowed = allowed.unsqueeze(0) & mask.bool().unsqueeze(1)
            attention = torch.zeros(n, 1, length, length, dtype=x.dtype, device=x.device)
            attention = attention.masked_fill(~allowed.unsqueeze(1), torch.finfo(x.dtype).min)
        states = text_model.final_layer_norm(text_model.encoder(inputs_embeds=x, attention_mask=attention)[0])
        if self.family == "siglip":
            # SigLIP pools the last position (padded to the full length, as in training).
            return TextFeatures(tokens=states, mask=mask, embeds=text_model.head(states[:, -1]))
        eos = text_model.eos_token_id
        # The same EOS lookup as transformers' CLIPTextModel (old configs: the largest id), shifted by the prefix.
        ids = input_ids.to(torch.int)
        index = ids.argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)
        pooled = states[torch.arange(n, device=states.device), index + k]
        return TextFeatures(tokens=states, mask=mask, embeds=self.model.text_projection(pooled))


class HashTokenizer:
    """Stand-in tokenizer for random-weight architectures that come without vocabulary files.

    Words map to ids by a stable hash, so tests and FLOP counts can run the text tower; the ids mean nothing, which
    is fine for random weights. Real checkpoints always use their own tokenizer.
    """

    def __init__(self, text_config: Any) -> None:
        self.vocab_size = int(text_config.vocab_size)
        self.max_length = int(text_config.max_position_embeddings)
        eos = getattr(text_config, "eos_token_id", None)
        # CLIP pools at the EOS id (or the largest id, for old configs); keep both inside the vocabulary.
        self.eos_id = eos if isinstance(eos, int) and 0 <= eos < self.vocab_size else self.vocab_size - 1
        self.bos_id = 0
        self.pad_id = self.eos_id

    def _ids(self, text: str) -> list[int]:
        words = re.findall(r"\w+|[^\w\s]", text.lower())
        span = max(self.vocab_size - 2, 1)
        ids = [1 + int.from_bytes(hashlib.blake2s(w.encode(), digest_size=4).digest(), "little") % span for w in words]
        ids = [min(i, self.eos_id - 1) if i >= self.eos_id else i for i in ids]
        return [self.bos_id, *ids][: self.max_length - 1] + [self.eos_id]

    def __call__(self, texts: list[str], padding: str = "longest", max_length: int | None = None, **_: Any) -> dict:
        rows = [self._ids(t) for t in texts]
        length = (max_length or self.max_length) if padding == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


# -- loading ---------------------------------------------------------------------------------------------------

# Exact published architectures (config.json of the official checkpoints), built with random weights.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "clip-vit-b16": dict(
        family="clip",
        vision=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=16,
        ),
        text=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            vocab_size=49408,
            max_position_embeddings=77,
        ),
        projection_dim=512,
    ),
    "clip-vit-b32": dict(
        family="clip",
        vision=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
        ),
        text=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            vocab_size=49408,
            max_position_embeddings=77,
        ),
        projection_dim=512,
    ),
    "clip-vit-l14": dict(
        family="clip",
        vision=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
        ),
        text=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            max_position_embeddings=77,
        ),
        projection_dim=768,
    ),
    "siglip-b16": dict(
        family="siglip",
        vision=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=16,
        ),
        text=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=32000,
            max_position_embeddings=64,
        ),
    ),
    # Tiny random configs for fast tests.
    "clip-tiny": dict(
        family="clip",
        vision=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=1000,
            max_position_embeddings=32,
            eos_token_id=999,
            bos_token_id=0,
            pad_token_id=999,
        ),
        projection_dim=16,
    ),
    "siglip-tiny": dict(
        family="siglip",
        vision=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=1000,
            max_position_embeddings=16,
        ),
    ),
}


def from_architecture(name: str, seed: int = 0) -> HFImageLanguageModel:
    """Build a published architecture with random weights (no download)."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    if name not in ARCHITECTURES:
        raise VideoadaptError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    spec = ARCHITECTURES[name]
    torch.manual_seed(seed)
    if spec["family"] == "clip":
        config = CLIPConfig(
            text_config=spec["text"], vision_config=spec["vision"], projection_dim=spec["projection_dim"]
        )
        model: nn.Module = CLIPModel(config)
        processor = ProcessorSettings(image_size=spec["vision"]["image_size"], mean=CLIP_MEAN, std=CLIP_STD)
    else:
        config = SiglipConfig(text_config=spec["text"], vision_config=spec["vision"])
        model = SiglipModel(config)
        processor = replace(SIGLIP_SETTINGS, image_size=spec["vision"]["image_size"])
    return HFImageLanguageModel(model.eval(), spec["family"], processor, name=f"hf-config:{name}")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def from_pretrained(source: str) -> HFImageLanguageModel:
    """Load a CLIP/SigLIP checkpoint from a hub id or a local directory, with its tokenizer and processor."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import cached_file

    try:
        # The local cache first; the network only when the hub answers (no 30 s of retries on a closed network).
        config = AutoConfig.from_pretrained(source, local_files_only=not _hub_reachable())
    except OSError as error:
        raise VideoadaptError(
            f"cannot load backbone {source!r}: {str(error).splitlines()[0]}. Without access to the model hub, "
            f"download the checkpoint on a connected machine (e.g. `hf download {source} --local-dir DIR`), "
            "copy DIR here and pass `--backbone DIR`."
        ) from None
    # Fixed-resolution SigLIP2 checkpoints (e.g. google/siglip2-base-patch16-224) declare model_type "siglip"
    # and load as SigLIP; NaFlex ones ("siglip2") take variable patch grids this interface does not model yet.
    if config.model_type == "siglip2":
        raise VideoadaptError(
            f"{source}: NaFlex SigLIP2 checkpoints are not supported; use a fixed-resolution SigLIP2 checkpoint "
            "such as google/siglip2-base-patch16-224"
        )
    family = {"clip": "clip", "siglip": "siglip"}.get(config.model_type)
    if family is None:
        raise VideoadaptError(f"{source}: model type {config.model_type!r} is not a CLIP or SigLIP model")
    try:
        # Only safetensors weights: a pickled pytorch_model.bin is refused rather than unpickled.
        local = Path(source).is_dir() or not _hub_reachable()
        model = AutoModel.from_pretrained(source, use_safetensors=True, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        processor_file = (
            Path(source) / "preprocessor_config.json"
            if Path(source).is_dir()
            else Path(cached_file(source, "preprocessor_config.json", local_files_only=local))
        )
    except (OSError, ValueError) as error:
        raise VideoadaptError(f"cannot load backbone {source!r}: {str(error).splitlines()[0]}") from None
    processor = processor_settings(processor_file, family)
    return HFImageLanguageModel(model.eval(), family, processor, tokenizer=tokenizer, name=source)


_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes used in preprocessor_config.json


def processor_settings(path: Path, family: str) -> ProcessorSettings:
    """Read a transformers ``preprocessor_config.json`` ourselves (its processor classes need PIL/torchvision)."""
    config = load_json(path)

    def side(value: Any) -> int | None:
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            return value.get("shortest_edge") or value.get("height")
        return None

    crop = config.get("do_center_crop", False)
    size = side(config.get("crop_size")) if crop else side(config.get("size"))
    if size is None:
        raise VideoadaptError(f"{path}: no image size in the processor config")
    return ProcessorSettings(
        image_size=int(size),
        mean=tuple(config.get("image_mean", CLIP_MEAN)),
        std=tuple(config.get("image_std", CLIP_STD)),
        resize="shortest_edge" if crop else "squash",
        crop="center" if crop else "none",
        interpolation=_RESAMPLE.get(config.get("resample", 3), "bicubic"),
    )
