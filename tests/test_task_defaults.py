"""The task defaults (issue 16, item 5): `videoadapt train --task T --paradigm P --backbone B --data synth` with no
config trains the task's recipe; --config and KEY=VALUE overrides always win; `train --help` lists every setting
with its default. No training here: the CLI tests stop where the trainer would start."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from videoadapt.cli import main
from videoadapt.model.config import (
    DEFAULTS,
    SETTINGS,
    SYNTH_DEFAULTS,
    TASK_DEFAULTS,
    _shown,
    load_config,
    task_defaults,
)
from videoadapt.tasks import build_task, task_names

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def plain(task: str, tmp_path: Path, trained: dict, *extra: str):
    argv = ["train", "--task", task, "--paradigm", "post_network", "--backbone", "tiny", "--data", "synth"]
    assert main([*argv, "--out", str(tmp_path / task), *extra]) == 0
    return trained["config"]


def test_every_task_has_a_recipe_and_synthworld_size():
    assert set(TASK_DEFAULTS) == set(SYNTH_DEFAULTS) == set(task_names())


@pytest.mark.parametrize("task", sorted(TASK_DEFAULTS))
def test_the_plain_command_trains_the_tasks_recipe(task, tmp_path, trained):
    config = plain(task, tmp_path, trained)
    recipe = TASK_DEFAULTS[task]
    for section in ("data", "run"):
        for key, value in recipe.get(section, {}).items():
            assert config[section][key] == value, f"{section}.{key}"
    assert OmegaConf.to_container(config.model.head) == recipe.get("model", {}).get("head", {})
    assert OmegaConf.to_container(config.data.options) == SYNTH_DEFAULTS[task]
    # Early stopping on validation: every recipe validates, and all but captioning (3 validations) stop early.
    assert config.data.val_split == "val" and int(config.run.eval_every) > 0
    assert config.run.patience is not None or task == "captioning"
    # The recipe names no paradigm: the user's paradigm and its (default) options are untouched.
    assert config.model.paradigm == "post_network" and OmegaConf.to_container(config.model.options) == {}
    # The head options are ones the task knows (an unknown option would be refused here).
    build_task(task, **OmegaConf.to_container(config.model.head))


def test_a_recipe_knows_no_paradigm():
    for recipe in TASK_DEFAULTS.values():
        assert set(recipe) <= {"model", "data", "run"} and set(recipe.get("model", {})) <= {"head"}


def test_user_values_win_over_the_recipe(tmp_path, trained):
    overrides = ["run.epochs=2", "data.options.videos=300", "model.head.classifier=text", "run.patience=null"]
    config = plain("recognition", tmp_path, trained, *overrides, "--data-option", "size=32")
    assert config.run.epochs == 2 and config.run.patience is None and config.model.head.classifier == "text"
    # The rest of the recipe stays under the user's values.
    assert OmegaConf.to_container(config.data.options) == {"videos": 300, "size": 32, "frames": 16}
    assert config.run.cache is True and config.run.lr == pytest.approx(1e-3)


def test_a_config_file_wins_over_the_recipe_and_the_recipe_fills_the_rest(tmp_path, trained):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("model:\n  head: {temperature: ilfm}\ndata:\n  options: {videos: 600}\nrun:\n  task: retrieval\n")
    assert main(["train", "--config", str(yaml), "--out", str(tmp_path / "r"), "run.lr=3e-4"]) == 0
    config = trained["config"]
    assert config.run.task == "retrieval" and config.model.head.temperature == "ilfm"
    assert config.data.options.videos == 600 and config.data.options.size == 64
    assert config.model.head.text_adapter == "tokens" and config.run.epochs == 25  # from retrieval's recipe
    assert config.run.lr == pytest.approx(3e-4)


def test_synthworld_sizes_apply_to_synthworld_only(tmp_path, trained):
    assert main(["train", "--task", "recognition", "--data", "kinetics:/x", "--out", str(tmp_path / "k")]) == 0
    config = trained["config"]
    assert OmegaConf.to_container(config.data.options) == {} and config.run.epochs == 25
    assert task_defaults("qa", "synth:/some/dir")["data"]["options"]["qa"] == "multiple_choice"


def test_load_config_keeps_the_plain_defaults_unless_asked():
    """The bench and the library build controlled configs: no recipe unless `recipe=True` (what train passes)."""
    config = load_config(None, {"run.task": "retrieval"})
    assert config.run.epochs == DEFAULTS["run"]["epochs"] and OmegaConf.to_container(config.model.head) == {}
    assert load_config(None, {"run.task": "retrieval"}, recipe=True).run.epochs == 25


def test_a_resumed_run_keeps_its_own_config(tmp_path, trained):
    run = tmp_path / "run"
    run.mkdir()
    saved = load_config(None, {"run.task": "recognition"}, ["run.epochs=3"])
    OmegaConf.save(saved, run / "config.yaml")
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert trained["config"].run.epochs == 3 and trained["config"].run.cache is False


def test_help_lists_every_setting_with_its_default_and_the_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    for dotted, default, meaning in SETTINGS:
        assert f"{dotted}={_shown(default)}: " in text, dotted
        assert " ".join(meaning.split()[:3]) in text, dotted
    assert "run.epochs=1:" in text and "run.patience=null:" in text and "run.cache=false:" in text
    for task in TASK_DEFAULTS:
        assert f"{task}: " in text
    assert "run.epochs=25" in text  # recognition's recipe
    assert "data.options.KEY=VALUE" in text and "--data-option KEY=VALUE" in text


def test_settings_table_and_defaults_agree():
    rows = {dotted for dotted, _, _ in SETTINGS}
    assert len(rows) == len(SETTINGS)
    assert rows == {f"{section}.{key}" for section, keys in DEFAULTS.items() for key in keys}


def test_shipped_post_network_configs_are_the_recipe_plus_paradigm_options():
    """configs/<task>-post_network.yaml train what the plain command trains, plus the paradigm's options."""
    for task in TASK_DEFAULTS:
        path = CONFIGS / f"{task}-post_network.yaml"
        if task == "qa":
            path = CONFIGS / "qa-multiple_choice.yaml"
        shipped = OmegaConf.to_container(load_config(path))
        plain = OmegaConf.to_container(load_config(None, {"run.task": task, "data.source": "synth"}, recipe=True))
        shipped["model"]["options"] = {}
        shipped["model"]["backbone"] = plain["model"]["backbone"]  # the grounding configs name tiny-owl
        assert shipped == plain, task


def test_a_head_that_reads_pixels_ignores_the_cache_sampler(tmp_path, capsys):
    """Recognition's defaults set data.cache_sampler for every paradigm; a head that reads pixels beside the cache
    (extra_models' motion stream) cannot follow frames drawn from it, so it trains on the eval frames with a
    notice instead of refusing the plain command."""
    from videoadapt.train.trainer import train

    settings = ["model.backbone=hf-config:clip-tiny", "data.options.videos=20", "data.options.size=32"]
    settings += ["data.options.frames=8", "data.frames=4", "run.batch_size=4", "run.progress=false"]
    settings += ["model.paradigm=extra_models", "data.val_split=null", "run.max_steps=1", f"run.cache_dir={tmp_path}/c"]
    config = load_config(None, {"run.task": "recognition", "data.source": "synth"}, settings, recipe=True)
    assert config.run.cache is True and config.data.cache_sampler == "uniform:16"
    metrics = train(config, tmp_path / "run")
    assert metrics["cache"]["used"] and metrics["steps"] == 1
    assert "data.cache_sampler ignored" in capsys.readouterr().err
