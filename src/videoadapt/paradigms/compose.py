"""Composition: ``"lora+post_network"`` -> one :class:`VideoEncoder` (backbone adaptations, then one head)."""

from __future__ import annotations

from typing import Any

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import TemporalContext, VideoEncoder
from videoadapt.paradigms.temporal_head import TemporalHead


def build_video_encoder(
    ilfm: ImageLanguageModel, spec: str, options: dict[str, dict[str, Any]] | None = None
) -> VideoEncoder:
    """Compose the paradigms named in ``spec`` (``"a+b"``) on ``ilfm``, which is changed in place.

    ``options`` maps a paradigm name to its keyword options. Conflicts are refused with the reason.
    """
    from videoadapt.paradigms import paradigm_class

    names = [n.strip() for n in spec.split("+") if n.strip()]
    if not names:
        raise VideoadaptError("empty paradigm specification")
    if len(set(names)) != len(names):
        raise VideoadaptError(f"{spec}: a paradigm is named twice")
    options = options or {}
    unknown_options = set(options) - set(names)
    if unknown_options:
        raise VideoadaptError(f"{spec}: options given for paradigms not in the composition: {sorted(unknown_options)}")
    paradigms = [paradigm_class(n)(**options.get(n, {})) for n in names]
    adapting = [p for p in paradigms if p.adapts_backbone]
    whole = [p for p in adapting if p.trains_whole_backbone]
    if whole and len(adapting) > 1:
        others = ", ".join(p.name for p in adapting if p is not whole[0])
        raise VideoadaptError(
            f"{spec}: {whole[0].name} already trains every backbone parameter; {others} would add nothing to train"
        )
    for parameter in ilfm.parameters():
        parameter.requires_grad_(False)
    context = TemporalContext()
    for paradigm in adapting:
        paradigm.adapt(ilfm, context)
    heads = [(p, h) for p in paradigms if (h := p.head(ilfm)) is not None]
    if len(heads) > 1:
        raise VideoadaptError(
            f"{spec}: {heads[0][0].name} and {heads[1][0].name} both put a module after the backbone; keep one"
        )
    head = heads[0][1] if heads else paradigms[0].default_head(ilfm)
    if head is None:
        head = TemporalHead(ilfm, temporal="mean")
    return VideoEncoder(ilfm, head, context, paradigms)
