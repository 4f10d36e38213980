"""The temporal modules a head can be built with, by name, and the options each one takes.

A head names its module (``temporal="transformer"``) and passes the rest of its options to that module's
constructor. The options a module takes are read from its constructor's signature, less the arguments the head
supplies itself (the feature width, the backbone's dims, the text tower), so that a misspelt option is refused
with the module's own list (:func:`module_options`) instead of a TypeError from deep inside a constructor.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ModelDims
from videoadapt.temporal.moment_detr import MomentDETR
from videoadapt.temporal.pooling import MeanPool
from videoadapt.temporal.qformer import QFormer
from videoadapt.temporal.seq_transf import SeqTransf
from videoadapt.temporal.spacetime import SpaceTimeTransformer
from videoadapt.temporal.transformer import TemporalTransformer

TemporalName = Literal["mean", "transformer", "seqtransf", "qformer", "spacetime", "moment_detr"]
TEMPORAL_MODULES: tuple[str, ...] = typing.get_args(TemporalName)


@dataclass(frozen=True)
class ModuleSpec:
    """A temporal module class and the leading constructor arguments the head supplies (not user options)."""

    cls: type[nn.Module]
    supplied: tuple[str, ...]


SPECS: dict[str, ModuleSpec] = {
    "mean": ModuleSpec(MeanPool, ()),
    "transformer": ModuleSpec(TemporalTransformer, ("width",)),
    "seqtransf": ModuleSpec(SeqTransf, ("text_blocks", "text_positions")),
    "qformer": ModuleSpec(QFormer, ("feature_width", "patch_width")),
    "spacetime": ModuleSpec(SpaceTimeTransformer, ("feature_width", "patch_width", "patch_grid")),
    "moment_detr": ModuleSpec(MomentDETR, ("feature_width", "text_width")),
}


@dataclass(frozen=True)
class ModuleOption:
    """One option of a temporal module: its type annotation and its default."""

    hint: Any
    default: Any


@cache
def module_options(name: str) -> dict[str, ModuleOption]:
    """The options temporal module ``name`` takes, in constructor order, with their types and defaults."""
    if name not in SPECS:
        raise VideoadaptError(f"unknown temporal module {name!r}; known: {', '.join(TEMPORAL_MODULES)}")
    spec = SPECS[name]
    hints = typing.get_type_hints(spec.cls.__init__)
    options = {}
    for parameter in list(inspect.signature(spec.cls.__init__).parameters.values())[1:]:
        if parameter.name in spec.supplied or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        options[parameter.name] = ModuleOption(hints.get(parameter.name, Any), parameter.default)
    return options


def temporal_module(
    name: str,
    width: int,
    dims: ModelDims | None = None,
    /,
    text_tower: tuple[Sequence[nn.Module], torch.Tensor] | None = None,
    **options: Any,
) -> nn.Module:
    """Temporal module ``name`` over features of ``width``.

    ``qformer``, ``spacetime`` and ``moment_detr`` also need the backbone's ``dims`` (patch-token width and grid,
    text-token width); they take the whole FrameFeatures (``takes_features``). ``seqtransf`` needs ``text_tower``:
    the text transformer's blocks and its position table, which it copies (CLIP4Clip's initialisation). The first
    three arguments are positional-only so that a module may have an option named ``width`` (the Q-Former's, the
    space-time transformer's)."""
    known = module_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise VideoadaptError(
            f"temporal module {name!r}: unknown options {unknown}; known: {', '.join(known) or 'none'}"
        )
    if name == "mean":
        return MeanPool()
    if name == "transformer":
        return TemporalTransformer(width, **options)
    if name == "seqtransf":
        if text_tower is None:
            raise VideoadaptError("temporal module 'seqtransf' is initialised from a text tower; none was given")
        return SeqTransf(*text_tower, **options)
    if dims is None:
        raise VideoadaptError(f"temporal module {name!r} needs the backbone's dims")
    if name == "qformer":
        return QFormer(width, dims.width, **options)
    if name == "spacetime":
        return SpaceTimeTransformer(width, dims.width, dims.patch_grid, **options)
    return MomentDETR(width, dims.text_width, **options)
