"""Typed paradigm options (paradigms/options.py): every paradigm's options are a frozen dataclass; an unknown or
misspelt option, a wrong type or an out-of-range value is a clear error naming the paradigm, the option and the
value; head options are checked against the chosen temporal module; options that would change nothing are refused."""

from __future__ import annotations

import dataclasses

import pytest

from paradigm_helpers import make_backbone
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder, paradigm_class, paradigm_names
from videoadapt.paradigms.options import ParadigmConfig


def refuse(spec: str, options: dict, match: str, kind: str = "hf", text_tower=None) -> None:
    with pytest.raises(VideoadaptError, match=match):
        build_video_encoder(make_backbone(kind, text_tower), spec, options)


def test_the_three_reported_cases_are_clear_errors():
    # Issue 14: these were silently ignored (lora, prompt_tuning) or a raw TypeError (post_network).
    refuse("lora", {"lora": {"rank": 2}}, r"lora: unknown option 'rank'; known: r, alpha, dropout, targets")
    options = {"prompt_tuning": {"num_tokens": 2}}
    refuse("prompt_tuning", options, r"unknown option 'num_tokens' \(did you mean 'tokens'")
    refuse(
        "post_network",
        {"post_network": {"temporal": "transformer", "layres": 2}},
        r"post_network: unknown option 'layres' \(did you mean 'layers'\?\).*'transformer' module's: layers, heads",
    )


def test_head_options_are_checked_against_the_chosen_module():
    refuse(
        "post_network",
        {"post_network": {"temporal": "qformer", "querys": 4}},
        r"unknown option 'querys' \(did you mean 'queries'\?\).*'qformer' module's: queries, layers",
    )
    refuse("post_network", {"post_network": {"temporal": "mean", "layers": 2}}, "'mean' module's: none")
    refuse(
        "post_network",
        {"post_network": {"temporal": "qformer", "queries": "many"}},
        r"post_network \(temporal 'qformer'\): option queries must be an integer, got 'many' \(str\)",
    )
    refuse("post_network", {"post_network": {"temporal": "transfomer"}}, r"did you mean 'transformer'")
    refuse("post_network", {"post_network": {"layers": 0}}, "layers must be at least 1, got 0")
    refuse("post_network", {"post_network": {"space": "patch"}}, "option space must be one of joint, cls")


@pytest.mark.parametrize(
    "spec,options,match",
    [
        ("lora", {"r": 2.5}, r"lora: option r must be an integer, got 2.5 \(float\)"),
        ("lora", {"r": True}, r"option r must be an integer, got True \(bool\)"),
        ("lora", {"r": 0}, "lora: option r must be at least 1, got 0"),
        ("lora", {"dropout": 1.0}, r"option dropout must be in \[0, 1\), got 1.0"),
        ("lora", {"targets": ["q_proj", "qkv"]}, "option targets must be a list, each one of q_proj, k_proj"),
        ("lora", {"text": "yes"}, "option text must be true or false, got 'yes'"),
        ("prompt_tuning", {"tokens": 0}, "prompt_tuning: option tokens must be at least 1, got 0"),
        ("prompt_tuning", {"depth": "medium"}, "option depth must be one of shallow, deep, got 'medium'"),
        ("partial_tuning", {"subset": "biases"}, "option subset must be one of bias_norm, norm"),
        ("partial_tuning", {"subset": "norm", "blocks": 2}, "blocks applies to the subsets last_blocks"),
        ("adapter", {"variant": "lora"}, "adapter: option variant must be one of st_adapter, aim"),
        ("adapter", {"stdha": 1}, r"option stdha must be at least 2 \(ZeroI2V's shift_div\), got 1"),
        ("adapter", {"variant": "aim", "kernel": [3, 1, 1]}, "kernel is read by variant st_adapter only, not by aim"),
        ("adapter", {"kernel": [3, 1]}, r"option kernel must be a list of 3 items"),
        ("full_finetune", {"text": 1}, "full_finetune: option text must be true or false, got 1"),
        ("extra_models", {"heads": 0}, "extra_models: option heads must be at least 1, got 0"),
        ("side_tuning", {"dropout": 2}, r"side_tuning: option dropout must be in \[0, 1\), got 2.0"),
        ("distillation", {"temperature": 0}, "distillation: option temperature must be positive, got 0.0"),
    ],
)
def test_wrong_types_and_ranges_name_the_option_and_the_value(spec, options, match):
    refuse(spec, {spec: options}, match)


@pytest.mark.parametrize("name", ["distillation", "post_network", "side_tuning", "full_finetune", "partial_tuning",
                                  "extra_models", "adapter", "lora", "prompt_tuning"])  # fmt: skip
def test_every_paradigm_has_a_frozen_config_that_refuses_unknown_options(name):
    assert name in paradigm_names()
    config = paradigm_class(name).config_class
    assert issubclass(config, ParadigmConfig) and config is not ParadigmConfig
    assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        config().paradigm_option = 1  # type: ignore[attr-defined]
    refuse(name, {name: {"bogus_option": 1}}, f"{name}: unknown option 'bogus_option'; known: ")


# What each paradigm's module docstring documents; these must stay accepted.
DOCUMENTED = {
    "lora": ["r", "alpha", "dropout", "targets", "text", "temporal", "temporal_layers"],
    "prompt_tuning": ["tokens", "depth", "propagation", "text_context", "temporal"],
    "partial_tuning": ["subset", "blocks"],
    "full_finetune": ["text", "temporal"],
    "adapter": ["variant", "width", "kernel", "before", "scale", "blocks", "stdha", "temporal_embedding"]
    + ["train_post_norm", "dropout", "temporal", "space"],
    "post_network": ["temporal", "space"],
    "side_tuning": ["design", "layers", "heads", "mlp_factor", "dropout", "frames", "temporal_conv"]
    + ["temporal_pos_embed", "temporal_cross_attention", "width", "queries", "text", "tef", "output"],
    "extra_models": ["stream", "temporal", "temporal_layers", "fusion_layers", "heads", "max_frames", "channels"]
    + ["grid", "floor", "inputs", "num_labels", "mask_grid"],
    "distillation": ["student", "student_layers", "temporal", "temporal_layers", "frame_weight", "video_weight"]
    + ["frame_loss", "video_loss", "temperature", "teacher"],
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_options_stay_accepted(name):
    config = paradigm_class(name).config_class
    known = set(config.option_names()) | set(getattr(config, "aliases", {}))
    assert set(DOCUMENTED[name]) <= known, set(DOCUMENTED[name]) - known


def test_configs_store_the_checked_form():
    from videoadapt.paradigms.lora import LoRAConfig

    config = LoRAConfig.from_options({"r": 4, "alpha": 8, "targets": ["q_proj"], "temporal_layers": 2})
    assert config.targets == ("q_proj",) and isinstance(config.alpha, float) and config.alpha == 8.0
    assert config.module_options == {"layers": 2} and config.temporal == "transformer"
    # LoRA's default head: a one-layer transformer unless told otherwise.
    assert LoRAConfig.from_options({}).module_options == {"layers": 1}
    with pytest.raises(VideoadaptError, match="temporal_layers is another name for layers; give one of them"):
        LoRAConfig.from_options({"temporal_layers": 2, "layers": 2})


def test_head_options_of_a_replaced_default_head_are_refused():
    # lora+post_network: post_network brings the head, so lora's head options would change nothing.
    refuse(
        "lora+post_network",
        {"lora": {"temporal": "mean"}},
        r"lora's options \['temporal'\] set its default head, which post_network's head replaces",
    )
    refuse(
        "partial_tuning+lora",
        {"lora": {"temporal_layers": 2}},
        r"lora's options \['temporal_layers'\] set a default head, but the composition uses partial_tuning's",
    )
    # The head's own options, given to the paradigm that brings it, are fine.
    encoder = build_video_encoder(
        make_backbone("hf", None), "lora+post_network", {"lora": {"r": 2}, "post_network": {"layers": 2}}
    )
    assert len(encoder.head.temporal.layers) == 2


def test_unused_resources_are_refused():
    with pytest.raises(VideoadaptError, match=r"resources \['tokenizer'\] are used by no paradigm"):
        build_video_encoder(make_backbone("hf", None), "lora", resources={"tokenizer": object()})
