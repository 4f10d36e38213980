"""Composition: ``"lora+post_network"`` -> one :class:`VideoEncoder` (backbone adaptations, then one head)."""

from __future__ import annotations

from typing import Any

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import TemporalContext, VideoEncoder
from videoadapt.paradigms.generative_head import GenerativeHead, check_generative_composition, is_generative
from videoadapt.paradigms.temporal_head import TemporalHead


def build_video_encoder(
    ilfm: ImageLanguageModel,
    spec: str,
    options: dict[str, dict[str, Any]] | None = None,
    *,
    resources: dict[str, Any] | None = None,
) -> VideoEncoder:
    """Compose the paradigms named in ``spec`` (``"a+b"``) on ``ilfm``, which is changed in place.

    ``options`` maps a paradigm name to its keyword options (each paradigm's typed config checks them).
    ``resources`` holds objects a paradigm needs beyond options, by name: ``{"teacher": module}`` for
    ``distillation`` with ``teacher="run"`` (a trained encoder). Conflicts are refused with the reason, and so are
    options that would change nothing: head options of a paradigm whose default head another paradigm's head
    replaces, resources no paradigm of the composition uses.
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
    generative = is_generative(ilfm)
    if generative:
        check_generative_composition(spec, names, ilfm)
    paradigms = [paradigm_class(n)(**options.get(n, {})) for n in names]
    resources = resources or {}
    used = {name for p in paradigms for name in p.resources_used()}
    unused = sorted(set(resources) - used)
    if unused:
        raise VideoadaptError(f"{spec}: resources {unused} are used by no paradigm of the composition")
    for paradigm in paradigms:
        paradigm.use_resources({k: v for k, v in resources.items() if k in paradigm.resources_used()})
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
    if generative:
        # The MLLM's projector is the post-network of every composition (paradigms/generative_head.py).
        given = [(p.name, p.head_options_given()) for p in paradigms if p.head_options_given()]
        if given:
            name, keys = given[0]
            raise VideoadaptError(
                f"{spec}: {name}'s options {list(keys)} set a temporal head, but on the video MLLM {ilfm.name} the "
                "head is its projector and token pooling (set those with model.mllm)"
            )
        return VideoEncoder(ilfm, GenerativeHead(ilfm), context, paradigms, resource_names=tuple(sorted(resources)))
    heads = [(p, h) for p in paradigms if (h := p.head(ilfm)) is not None]
    if len(heads) > 1:
        raise VideoadaptError(
            f"{spec}: {heads[0][0].name} and {heads[1][0].name} both put a module after the backbone; keep one"
        )
    if heads:
        owner, head = heads[0]
        ignored = [(p.name, p.head_options_given()) for p in paradigms if p is not owner and p.head_options_given()]
        if ignored:
            name, keys = ignored[0]
            raise VideoadaptError(
                f"{spec}: {name}'s options {list(keys)} set its default head, which {owner.name}'s head replaces; "
                f"give them to {owner.name} or drop them"
            )
    else:
        head = paradigms[0].default_head(ilfm)
        if head is None:
            head = TemporalHead(ilfm, temporal="mean")
        ignored = [(p.name, p.head_options_given()) for p in paradigms[1:] if p.head_options_given()]
        if ignored:
            name, keys = ignored[0]
            raise VideoadaptError(
                f"{spec}: {name}'s options {list(keys)} set a default head, but the composition uses "
                f"{paradigms[0].name}'s; give them to {paradigms[0].name}"
            )
    return VideoEncoder(ilfm, head, context, paradigms, resource_names=tuple(sorted(resources)))
