"""TinyCLIP's architecture: a convolutional stem, CLIP encoder blocks, and the frozen MiniLM text tower.

The vision blocks (:mod:`.blocks`) are ours but have transformers' ``CLIPEncoderLayer`` module tree and names, so
every paradigm that adapts CLIP blocks (adapters, LoRA, prompts, temporal attention) adapts TinyCLIP's the same way.
They are ours, and the MiniLM text tower too (:mod:`.minilm`), because importing transformers' modelling code costs
1.7-2.8 s of a 2-core machine, more than loading TinyCLIP: loading TinyCLIP imports no transformers.
tests/test_tinyclip_without_transformers.py pins both to transformers' numbers. The stem replaces the single
patchify convolution with a few strided 3x3 convolutions: early convolutions make small ViTs trained on little
data markedly better (Xiao et al., "Early Convolutions Help Transformers See Better", 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.foundation.tinyclip.blocks import CLIPEncoderLayer
from videoadapt.foundation.tinyclip.text import MINILM_WIDTH, MiniLMTextTower


@dataclass(frozen=True)
class TinyCLIPConfig:
    image_size: int = 64
    patch_size: int = 8  # total stride of the stem
    width: int = 192
    layers: int = 6
    heads: int = 3
    mlp_ratio: int = 4
    embed_dim: int = 256
    stem_channels: tuple[int, ...] = (48, 96)  # intermediate stem widths; the last conv outputs `width`
    hidden_act: str = "gelu"
    # "eager": TinyCLIP's eager attention (blocks.eager_attention); "sdpa": torch's fused kernel. At 65 tokens and head
    # width 64, CPU flash attention's backward costs ~30% more in fp32, and under bf16 autocast the whole step is
    # 1.6x slower (TinyCLIP fwd+bwd of 64 images, one thread of the 2-core EPYC: 447 vs 277 ms).
    attn_implementation: str = "eager"
    text_head_hidden: int = 512  # MLP on top of frozen MiniLM (0: a linear projection)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyCLIPConfig:
        data = dict(data)
        data["stem_channels"] = tuple(data.get("stem_channels", cls.stem_channels))
        return cls(**data)


class _WeightGradOnOneThread(torch.autograd.Function):
    """``conv2d`` in bf16 whose weight gradient is computed on one thread.

    oneDNN's bf16 weight-gradient kernel for these 3x3 convolutions synchronises its threads at spinning barriers:
    when another process holds one of the cores, each barrier waits out a scheduler time slice, and the stem's
    backward pass took 1.0-1.1 s instead of 30-45 ms (two threads, bf16 autocast, 64 images, the 2-core EPYC shared
    with other jobs; fp32 and a single thread are unaffected). On one thread it costs a few milliseconds more when the
    machine is idle and never falls off that cliff. The gradients are the two-thread kernel's up to the order of its
    sums (1e-5 relative)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.bfloat16)
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        images: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> torch.Tensor:
        ctx.save_for_backward(images, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return nn.functional.conv2d(images, weight, bias, stride, padding)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        images, weight = ctx.saved_tensors
        grad_images = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_images = torch.nn.grad.conv2d_input(images.shape, weight, grad, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                grad_weight = torch.nn.grad.conv2d_weight(images, weight.shape, grad, ctx.stride, ctx.padding)
            finally:
                torch.set_num_threads(threads)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_images, grad_weight, grad_bias, None, None


def _weight_grad_on_one_thread(conv: nn.Conv2d, images: torch.Tensor) -> bool:
    """Whether ``conv`` should take :class:`_WeightGradOnOneThread`: a trained convolution under CPU bf16 autocast
    with several threads."""
    return (
        conv.weight.requires_grad
        and torch.is_grad_enabled()
        and images.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and torch.get_num_threads() > 1
    )


class ConvStem(nn.Module):
    """Strided 3x3 convolutions (BN + ReLU) down to one token per ``patch_size`` pixels, then a 1x1 to width."""

    def __init__(self, config: TinyCLIPConfig) -> None:
        super().__init__()
        stages = int(math.log2(config.patch_size))
        if 2**stages != config.patch_size:
            raise ValueError(f"patch_size must be a power of two, got {config.patch_size}")
        channels = [3, *config.stem_channels]
        channels += [channels[-1]] * (stages + 1 - len(channels))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:stages], channels[1 : stages + 1], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.Conv2d(channels[stages], config.width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d) and _weight_grad_on_one_thread(layer, x):
                x = _WeightGradOnOneThread.apply(x, layer.weight, layer.bias, layer.stride, layer.padding)
            else:
                x = layer(x)
        return x.flatten(2).transpose(1, 2)  # [N, P, D]


class TinyVisionTower(nn.Module):
    def __init__(self, config: TinyCLIPConfig) -> None:
        super().__init__()
        grid = config.image_size // config.patch_size
        self.stem = ConvStem(config)
        self.class_embedding = nn.Parameter(torch.randn(config.width) * config.width**-0.5)
        self.position_embedding = nn.Parameter(torch.randn(1 + grid * grid, config.width) * 0.02)
        self.pre_layernorm = nn.LayerNorm(config.width)
        self.layers = nn.ModuleList(
            CLIPEncoderLayer(
                config.width,
                config.heads,
                config.width * config.mlp_ratio,
                hidden_act=config.hidden_act,
                attn_implementation=config.attn_implementation,
            )
            for _ in range(config.layers)
        )
        self.post_layernorm = nn.LayerNorm(config.width)

    def forward(self, images: torch.Tensor, all_layers: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        patches = self.stem(images)
        # The token stream keeps the stem's dtype: fp32, or bf16 under autocast. An fp32 position embedding would
        # promote it to fp32, and every matmul of every block would then cast its input to bf16 and its gradient
        # back (a bf16 training step of TinyCLIP is ~8% faster without those copies).
        cls = self.class_embedding.expand(patches.shape[0], 1, -1).to(patches.dtype)
        tokens = self.pre_layernorm(torch.cat([cls, patches], dim=1) + self.position_embedding.to(patches.dtype))
        outputs = []
        for block in self.layers:
            tokens = block(tokens, None)
            if all_layers:
                outputs.append(tokens)
        return tokens, outputs


def text_head(config: TinyCLIPConfig) -> nn.Module:
    """Trainable map from frozen MiniLM sentence embeddings to the joint space. An MLP rather than a linear map:
    captions that differ in one position phrase are nearly parallel in MiniLM's space, and the head must pull
    them apart."""
    if config.text_head_hidden <= 0:
        return nn.Linear(MINILM_WIDTH, config.embed_dim, bias=False)
    return nn.Sequential(
        nn.Linear(MINILM_WIDTH, config.text_head_hidden),
        nn.GELU(),
        nn.Linear(config.text_head_hidden, config.embed_dim, bias=False),
    )


class TinyCLIP(ImageLanguageModel):
    """Trainable: the vision tower, both projections and the temperature. Frozen: MiniLM."""

    def __init__(self, config: TinyCLIPConfig | None = None, text_tower: MiniLMTextTower | None = None) -> None:
        super().__init__()
        self.config = config or TinyCLIPConfig()
        self.name = "tiny"
        self.vision = TinyVisionTower(self.config)
        self.visual_projection = nn.Linear(self.config.width, self.config.embed_dim, bias=False)
        self.text_tower = text_tower or MiniLMTextTower()
        self.text_projection = text_head(self.config)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    @property
    def dims(self) -> ModelDims:
        grid = self.config.image_size // self.config.patch_size
        return ModelDims(
            width=self.config.width,
            embed_dim=self.config.embed_dim,
            layers=self.config.layers,
            patch_grid=(grid, grid),
            text_width=MINILM_WIDTH,
        )

    @property
    def processor(self) -> ProcessorSettings:
        # Fixed statistics that bring 0..1 pixels to roughly zero mean and unit scale.
        return ProcessorSettings(image_size=self.config.image_size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(max=100.0)

    def vision_blocks(self) -> nn.ModuleList:
        return self.vision.layers

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        return self.vision.post_layernorm, self.visual_projection

    def vision_modules(self) -> list[nn.Module]:
        return [self.vision, self.visual_projection]

    def text_modules(self) -> list[nn.Module]:
        return [self.text_tower, self.text_projection]

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        self.check_images(images)
        tokens, layers = self.vision(images, all_layers=all_layers)
        pooled = self.vision.post_layernorm(tokens[:, 0])
        return FrameFeatures(
            cls=pooled, patches=tokens[:, 1:], embeds=self.visual_projection(pooled), layers=layers or None
        )

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        """``prefix_embeddings`` ``[K,384]``: learnable context inserted after MiniLM's ``[CLS]`` (CoOp); the
        sentence embedding then mean-pools over the prefix positions too."""
        self.check_texts(texts)
        if prefix_embeddings is None:
            states, mask = self.text_tower.tokens(texts)
        else:
            states, mask = self.text_tower.tokens_with_prefix(texts, prefix_embeddings)
        embeds = self.text_projection(self.text_tower.mean_pool(states, mask).float())
        return TextFeatures(tokens=states, mask=mask, embeds=embeds)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Joint-space text embeddings through the pooled-embedding cache (training and zero-shot use this)."""
        self.check_texts(texts)
        return self.text_projection(self.text_tower.pooled(texts))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen MiniLM, which ships with its own package."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("text_tower.")}
