"""TinyCLIP: the embedded default ILFM — a small ViT image tower trained here against the frozen MiniLM-L6 text
encoder, so that every comparison runs offline on a pretrained (not random) model."""

from videoadapt.foundation.tinyclip.model import TinyCLIP, TinyCLIPConfig

__all__ = ["TinyCLIP", "TinyCLIPConfig"]
