"""Typed paradigm options: the one way a paradigm's option dict becomes its config.

Every paradigm declares a frozen dataclass of its options (PEFT's per-method ``tuners/<method>/config.py``): a
small paradigm in its own file, a folder paradigm in ``config.py``. The field annotations are the types;
``validate`` holds the ranges. :meth:`ParadigmConfig.from_options` refuses an unknown or misspelt option naming
the paradigm, the option and the known ones (with difflib's closest match); building the dataclass refuses a wrong
type or an out-of-range value naming the option and the value.

A paradigm that brings a temporal head (or falls back on one) derives its config from :class:`TemporalHeadConfig`:
``temporal`` names the module, ``space`` the features it reads, and every further option is checked against the
chosen module's own constructor (:func:`videoadapt.temporal.modules.module_options`), so ``post_network
{temporal: transformer, layres: 2}`` lists the transformer's options rather than raising a TypeError.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, Literal, Self

from videoadapt.errors import VideoadaptError
from videoadapt.temporal.modules import TemporalName, module_options

# Fields a config fills itself (from other options); they are not options a user passes.
INTERNAL = {"internal": True}


def closest(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when ``name`` is close to one of ``known``, else an empty string."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list, each {describe(args[0])}"
        return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(fits, value)``: whether ``value`` is of type ``hint``, and the value as the config stores it (lists
    become tuples, integers floats where a float is asked for)."""
    if hint is Any:
        return True, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            fits, coerced = _coerce(value, arm)
            if fits:
                return True, coerced
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        return fits, float(value) if fits else value
    if hint is str:
        return isinstance(value, str), value
    if origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        if isinstance(value, str) and variadic and _coerce(value, args[0])[0]:
            value = (value,)  # one name where a list of names is asked for
        if not isinstance(value, list | tuple):
            return False, value
        kinds = [args[0]] * len(value) if variadic else list(args)
        if len(kinds) != len(value):
            return False, value
        items = [_coerce(item, kind) for item, kind in zip(value, kinds, strict=True)]
        return all(fits for fits, _ in items), tuple(item for _, item in items)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def check_type(owner: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` as option ``name`` of ``owner`` stores it, or a VideoadaptError naming both and what fits."""
    fits, coerced = _coerce(value, hint)
    if not fits:
        hint_args = typing.get_args(hint)
        choices = [a for a in hint_args if isinstance(a, str)] if typing.get_origin(hint) is Literal else []
        near = closest(value, choices) if isinstance(value, str) and choices else ""
        raise VideoadaptError(
            f"{owner}: option {name} must be {describe(hint)}, got {value!r} ({type(value).__name__}){near}"
        )
    return coerced


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unknown_options(
    owner: str, unknown: Sequence[str], known: Sequence[str], extra: str = "", near: Sequence[str] = ()
) -> VideoadaptError:
    """The error for options ``unknown`` to ``owner``, listing ``known`` (then ``extra``, already phrased); the
    closest match is looked for among ``known`` and ``near``."""
    names = ", ".join(repr(n) for n in unknown)
    hints = "".join(closest(n, [*known, *near]) for n in unknown)
    return VideoadaptError(
        f"{owner}: unknown option{'s' if len(unknown) > 1 else ''} {names}{hints}; known: {', '.join(known)}{extra}"
    )


@dataclass(frozen=True)
class ParadigmConfig:
    """Base of every paradigm's options. Subclasses set ``paradigm`` (for messages) and override ``validate``."""

    paradigm: ClassVar[str] = "paradigm"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            checked = check_type(self.paradigm, f.name, value, hints[f.name])
            if checked is not value:
                object.__setattr__(self, f.name, checked)  # the frozen dataclass stores the checked form
        self.validate()

    def validate(self) -> None:
        """Ranges and relations between options; raise through :meth:`require`."""

    def require(self, name: str, ok: bool, expectation: str) -> None:
        if not ok:
            raise VideoadaptError(f"{self.paradigm}: option {name} must be {expectation}, got {getattr(self, name)!r}")

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if not f.metadata.get("internal")]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """The config of ``options``; an option this paradigm does not know is an error that lists the known."""
        known = cls.option_names()
        unknown = [name for name in options if name not in known]
        if unknown:
            raise unknown_options(cls.paradigm, unknown, known)
        return cls(**options)


@dataclass(frozen=True)
class TemporalHeadConfig(ParadigmConfig):
    """Options of the temporal head a paradigm brings (post_network, distillation's student) or falls back on when
    no paradigm of its composition brings one (full_finetune, partial_tuning, adapter, lora, prompt_tuning).

    ``temporal``: the module (:data:`videoadapt.temporal.modules.TEMPORAL_MODULES`); ``space``: ``joint`` (frame
    embeddings, width E) or ``cls`` (pooled CLS tokens before the projection, width D); every other option not
    the paradigm's own goes to the module (``layers``, ``heads``, ``max_frames`` of the transformer, ...) and is
    checked against its constructor. ``temporal_layers`` is another name for the module's ``layers``. A paradigm's
    own option wins over a module option of the same name (``adapter``'s ``width`` is the adapter's); to set such a
    module option, compose with ``post_network``, whose options are the head's alone.
    """

    temporal: TemporalName = "mean"
    space: Literal["joint", "cls"] = "joint"
    module_options: dict[str, Any] = field(default_factory=dict, metadata=INTERNAL)
    # The head options the user gave (for the composition's check that they are not ignored).
    head_options_given: tuple[str, ...] = field(default=(), metadata=INTERNAL, compare=False)

    # Per module, the options this paradigm's head uses unless given (LoRA's default head: a 1-layer transformer).
    default_module_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    aliases: ClassVar[Mapping[str, str]] = {"temporal_layers": "layers"}

    @classmethod
    def option_names(cls) -> list[str]:
        # The paradigm's own options first, then the head's.
        names = super().option_names()
        return [n for n in names if n not in ("temporal", "space")] + ["temporal", "space"]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        options = dict(options)
        own = cls.option_names()
        # The head options as the user named them (an alias included), for the composition's check.
        given = tuple(n for n in options if n in ("temporal", "space") or n not in own)
        default_temporal = next(f.default for f in fields(cls) if f.name == "temporal")
        temporal = check_type(cls.paradigm, "temporal", options.get("temporal", default_temporal), TemporalName)
        accepted = module_options(temporal)
        for alias, target in cls.aliases.items():
            if alias not in options:
                continue
            if target in options:
                raise VideoadaptError(f"{cls.paradigm}: {alias} is another name for {target}; give one of them")
            if target not in accepted:
                raise VideoadaptError(
                    f"{cls.paradigm}: option {alias} sets the temporal module's {target}, which {temporal!r} has not"
                )
            options[target] = options.pop(alias)
        rest = [name for name in options if name not in own]
        unknown = [name for name in rest if name not in accepted]
        if unknown:
            extra = f"; and the {temporal!r} module's: {', '.join(accepted) or 'none'}"
            raise unknown_options(cls.paradigm, unknown, [*own, *cls.aliases], extra, near=[*accepted])
        owner = f"{cls.paradigm} (temporal {temporal!r})"
        module = {name: check_type(owner, name, options[name], accepted[name].hint) for name in rest}
        module = {**cls.default_module_options.get(temporal, {}), **module}
        values = {name: options[name] for name in own if name in options}
        return cls(**values, module_options=module, head_options_given=given)
