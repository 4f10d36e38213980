"""TinyOWL: the embedded grounding ILFM — TinyCLIP's image tower with OWL-ViT's box and class heads, trained here
to detect SynthWorld objects by open-vocabulary queries (held-out categories never named in training)."""

from videoadapt.foundation.tinyowl.model import TinyOWL, TinyOWLConfig

__all__ = ["TinyOWL", "TinyOWLConfig"]
