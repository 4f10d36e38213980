"""An adapted encoder saves and loads itself (VideoEncoder.save_pretrained, load_encoder), and LoRA and linear
adapters merge into the backbone (VideoEncoder.merge). Issue 16, item 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paradigm_helpers import make_backbone, perturb, video_for
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.paradigms import build_video_encoder, load_encoder
from videoadapt.paradigms.base import ENCODER_CONFIG, ENCODER_WEIGHTS

BACKBONE = "hf-config:clip-tiny"  # seeded random weights: load_backbone rebuilds the same model
ZEROI2V = {"variant": "linear", "stdha": 4, "temporal_embedding": 4, "train_post_norm": True}

ROUND_TRIPS = [
    ("post_network", {"post_network": {"layers": 1}}),
    ("lora", {"lora": {"r": 4, "targets": ["q_proj", "v_proj", "out_proj"]}}),
    ("adapter", {"adapter": {"variant": "st_adapter", "before": ["attention", "mlp"]}}),
    ("adapter", {"adapter": ZEROI2V}),
    ("prompt_tuning", {"prompt_tuning": {"depth": "deep", "tokens": 4}}),
    ("lora+post_network", {}),
]


def adapted(spec: str, options: dict, seed: int = 3):
    encoder = build_video_encoder(load_backbone(BACKBONE), spec, options).eval()
    perturb(encoder, scale=0.05, seed=seed)  # stand-in for training
    return encoder


def outputs(encoder, video):
    with torch.no_grad():
        return encoder(video)


@pytest.mark.parametrize("spec,options", ROUND_TRIPS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(ROUND_TRIPS)])
def test_save_then_load_gives_identical_outputs(spec, options, tmp_path):
    encoder = adapted(spec, options)
    video = video_for(encoder.ilfm, frames=4)
    before = outputs(encoder, video)
    encoder.save_pretrained(tmp_path / "enc")
    record = json.loads((tmp_path / "enc" / ENCODER_CONFIG).read_text())
    assert record["backbone"] == BACKBONE and record["paradigms"] == spec and record["merged"] is False
    assert record["format"] == 1 and record["weights"] == "trainable" and record["videoadapt_version"]
    assert record["options"] == json.loads(json.dumps({n: options.get(n, {}) for n in spec.split("+")}))
    loaded = load_encoder(tmp_path / "enc")
    assert not loaded.training and loaded.paradigm_names == spec.split("+")
    after = outputs(loaded, video)
    assert torch.equal(after.frames, before.frames) and torch.equal(after.video, before.video)


def test_a_backbone_not_loaded_by_load_backbone_is_named_explicitly(text_tower, tmp_path):
    # A TinyCLIP built by hand has no spec: saving asks for one, and loading may take the model itself.
    encoder = build_video_encoder(make_backbone("tiny", text_tower), "lora+post_network")
    perturb(encoder, scale=0.05, seed=4)
    encoder.eval()
    with pytest.raises(VideoadaptError, match="not loaded by load_backbone.*backbone=SPEC"):
        encoder.save_pretrained(tmp_path / "enc")
    assert not (tmp_path / "enc").exists()
    encoder.save_pretrained(tmp_path / "enc", backbone="tiny")
    assert json.loads((tmp_path / "enc" / ENCODER_CONFIG).read_text())["backbone"] == "tiny"
    loaded = load_encoder(tmp_path / "enc", ilfm=make_backbone("tiny", text_tower))
    video = video_for(encoder.ilfm)
    assert torch.equal(outputs(loaded, video).video, outputs(encoder, video).video)


def test_frozen_weights_other_than_the_saved_ones_are_refused(tmp_path):
    from videoadapt.foundation.hf import from_architecture

    adapted("lora", {}).save_pretrained(tmp_path / "enc")
    other = from_architecture("clip-tiny", seed=1)  # same architecture, other weights: the LoRA would sit wrong
    with pytest.raises(InputFileError, match=f"{ENCODER_WEIGHTS}.*frozen ones under them differ.*ilfm="):
        load_encoder(tmp_path / "enc", ilfm=other)


def test_an_encoder_built_with_a_teacher_is_not_saved(text_tower, tmp_path):
    teacher = build_video_encoder(make_backbone("hf", text_tower), "post_network")
    encoder = build_video_encoder(
        load_backbone(BACKBONE), "distillation", {"distillation": {"teacher": "run"}}, resources={"teacher": teacher}
    )
    with pytest.raises(VideoadaptError, match=r"resources \['teacher'\].*cannot be rebuilt"):
        encoder.save_pretrained(tmp_path / "enc")


# --- merge -----------------------------------------------------------------------------------------------------


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


MERGES = [
    ("lora", {"lora": {"r": 4, "targets": ["q_proj", "k_proj", "v_proj", "out_proj"], "text": True}}, 0),
    ("lora+post_network", {}, 0),
    # ZeroI2V keeps its T x D temporal embedding (T = 4 here), as the official reparameterisation does.
    ("adapter", {"adapter": ZEROI2V}, 4),
]


@pytest.mark.parametrize("spec,options,kept_frames", MERGES, ids=[m[0] for m in MERGES])
def test_merge_keeps_the_outputs_and_restores_the_backbone_size(spec, options, kept_frames, tmp_path):
    plain = count(load_backbone(BACKBONE))
    encoder = adapted(spec, options)
    video = video_for(encoder.ilfm, frames=4)
    before = outputs(encoder, video)
    assert count(encoder.ilfm) > plain + kept_frames * encoder.ilfm.dims.width
    assert encoder.merge() is encoder and encoder.merged
    after = outputs(encoder, video)
    torch.testing.assert_close(after.video, before.video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after.frames, before.frames, rtol=1e-5, atol=1e-5)
    assert count(encoder.ilfm) == plain + kept_frames * encoder.ilfm.dims.width
    assert not any("lora" in name for name, _ in encoder.named_parameters())
    # A merged encoder saves its whole state and loads back to the same function, exactly.
    encoder.save_pretrained(tmp_path / "merged")
    record = json.loads((tmp_path / "merged" / ENCODER_CONFIG).read_text())
    assert record["merged"] is True and record["weights"] == "full"
    loaded = load_encoder(tmp_path / "merged")
    assert loaded.merged and count(loaded.ilfm) == count(encoder.ilfm)
    again = outputs(loaded, video)
    assert torch.equal(again.video, after.video) and torch.equal(again.frames, after.frames)


def test_merging_twice_is_an_error():
    encoder = adapted("lora", {}).merge()
    with pytest.raises(VideoadaptError, match="already merged"):
        encoder.merge()


@pytest.mark.parametrize(
    "spec,options,named",
    [
        ("adapter", {"adapter": {"variant": "st_adapter"}}, "not variant 'st_adapter'"),
        ("prompt_tuning", {}, "prompt_tuning cannot merge.*only LoRA and linear"),
        ("lora+prompt_tuning", {}, "prompt_tuning cannot merge"),
    ],
)
def test_what_cannot_merge_is_refused_before_anything_changes(spec, options, named):
    encoder = adapted(spec, options)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(VideoadaptError, match=named):
        encoder.merge()
    assert not encoder.merged
    after = encoder.state_dict()
    assert set(after) == set(state) and all(torch.equal(after[k], state[k]) for k in state)


def test_a_head_only_encoder_merges_as_itself():
    encoder = adapted("post_network", {})
    video = video_for(encoder.ilfm)
    before = outputs(encoder, video).video
    assert torch.equal(outputs(encoder.merge(), video).video, before)


# --- bad saved directories ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_lora(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("saved") / "lora"
    adapted("lora", {"lora": {"r": 2}}).save_pretrained(directory)
    return directory


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for name in (ENCODER_CONFIG, ENCODER_WEIGHTS):
        (target / name).write_bytes((directory / name).read_bytes())
    return target


def edit_record(directory: Path, **changes) -> None:
    path = directory / ENCODER_CONFIG
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_a_missing_config_names_the_file(tmp_path):
    with pytest.raises(InputFileError, match=f"{ENCODER_CONFIG}: not found.*save_pretrained"):
        load_encoder(tmp_path)


def test_missing_weights_name_the_file(saved_lora, tmp_path):
    directory = copy_of(saved_lora, tmp_path)
    (directory / ENCODER_WEIGHTS).unlink()
    with pytest.raises(InputFileError, match=f"{ENCODER_WEIGHTS}: not found"):
        load_encoder(directory)


def test_a_newer_format_is_refused(saved_lora, tmp_path):
    directory = copy_of(saved_lora, tmp_path)
    edit_record(directory, format=2)
    with pytest.raises(InputFileError, match=f"{ENCODER_CONFIG}: format version 2 is newer.*upgrade"):
        load_encoder(directory)


@pytest.mark.parametrize("text", ["[1, 2]", '"lora"', "{not json"])
def test_json_that_is_not_an_object_is_refused(saved_lora, tmp_path, text):
    directory = copy_of(saved_lora, tmp_path)
    (directory / ENCODER_CONFIG).write_text(text)
    with pytest.raises(InputFileError, match=f"{ENCODER_CONFIG}: (expected a JSON object|not valid UTF-8 JSON)"):
        load_encoder(directory)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"paradigms": 3}, "'paradigms' must be a paradigm spec"),
        ({"merged": "no"}, "'merged' must be true or false"),
        ({"weights": "half"}, "'weights' must be one of trainable, full"),
    ],
)
def test_wrongly_typed_fields_are_refused(saved_lora, tmp_path, changes, message):
    directory = copy_of(saved_lora, tmp_path)
    edit_record(directory, **changes)
    with pytest.raises(InputFileError, match=f"{ENCODER_CONFIG}: {message}"):
        load_encoder(directory)


def test_weights_that_do_not_fit_name_missing_and_unexpected_keys(saved_lora, tmp_path):
    directory = copy_of(saved_lora, tmp_path)
    edit_record(directory, options={"lora": {"r": 2, "targets": ["q_proj", "k_proj"]}})
    fit = rf"{ENCODER_WEIGHTS}: weights do not fit.*missing.*k_proj.*unexpected.*v_proj"
    with pytest.raises(InputFileError, match=fit):
        load_encoder(directory)


def test_weights_of_the_wrong_shape_are_refused(saved_lora, tmp_path):
    directory = copy_of(saved_lora, tmp_path)
    edit_record(directory, options={"lora": {"r": 3}})
    with pytest.raises(InputFileError, match=f"{ENCODER_WEIGHTS}: .*wrong shape.*lora_A"):
        load_encoder(directory)


def test_loading_does_not_import_the_training_code(saved_lora):
    # The library a user predicts with does not depend on train/ (DESIGN.md, Lighthouse). Accelerate itself comes
    # in through PEFT, which imports it.
    script = (
        "import sys; from videoadapt.paradigms import load_encoder; "
        f"load_encoder({str(saved_lora)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith(('videoadapt.train', 'videoadapt.bench'))))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
