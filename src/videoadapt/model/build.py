"""A run's model from its config (``build_model``) or back from its run folder (``load_run``): backbone, paradigm(s),
task head and trained weights.

Run folder files read here: ``config.yaml`` (model / data / run), ``model.safetensors`` (``encoder.*`` trainable
weights and ``head.*``), ``vocabulary.json`` (the head's description)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoadapt.data.records import TaskData
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.model.config import to_plain
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms.base import VideoEncoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths
from videoadapt.utils.safe_io import load_json, load_tensors

CONFIG, WEIGHTS, VOCABULARY, METRICS, LOG = (
    "config.yaml",
    "model.safetensors",
    "vocabulary.json",
    "metrics.json",
    "log.csv",
)


def build_encoder(config: Any, ilfm: ImageLanguageModel | None = None) -> VideoEncoder:
    """The ILFM named by ``model.backbone`` adapted by ``model.preset`` or ``model.paradigm``."""
    from videoadapt.foundation.loading import load_backbone
    from videoadapt.paradigms import build_video_encoder, load_paradigms
    from videoadapt.registry import registry

    ilfm = ilfm if ilfm is not None else load_backbone(str(config.model.backbone))
    mllm = config.model.get("mllm")
    mllm = to_plain(mllm) if mllm is not None else {}
    if mllm:
        if not hasattr(ilfm, "reconfigure"):
            raise VideoadaptError(f"model.mllm is set but {ilfm.name} is not the embedded video MLLM (--backbone mllm)")
        ilfm.reconfigure(**mllm)
    if config.model.preset:
        load_paradigms()
        return registry.get("preset", str(config.model.preset)).build(ilfm)
    resources = {}
    if config.model.get("teacher_run"):
        resources["teacher"] = load_teacher(config.model.teacher_run)
    return build_video_encoder(ilfm, str(config.model.paradigm), to_plain(config.model.options), resources=resources)


def load_teacher(run: str | Path) -> VideoEncoder:
    """The video encoder of a trained run, frozen and in eval mode: a distillation teacher (``model.teacher_run``)."""
    teacher = load_run(run).model.encoder
    teacher.requires_grad_(False)
    return teacher.eval()


def build_model(
    config: Any, data: TaskData, spec: dict[str, Any] | None = None, ilfm: ImageLanguageModel | None = None
) -> TaskModel:
    """Encoder, task and head for ``config``; ``spec`` (a saved ``vocabulary.json``) rebuilds a trained head."""
    encoder = build_encoder(config, ilfm)
    feature_widths(encoder, int(config.data.frames))
    task = build_task(str(config.run.task), **to_plain(config.model.head))
    head = task.build_head(encoder.ilfm, encoder, data, spec)
    return TaskModel(encoder, head, task, TextEncoder(encoder.ilfm))


def start_from_run(model: TaskModel, config: Any, run: str | Path) -> tuple[int, int]:
    """Copy the trained weights of ``run`` (``model.init_run``) onto ``model`` (:meth:`TaskModel.start_from`), after
    checking that it is a finished run on the same backbone; returns ``(copied, fresh)``."""
    from videoadapt.model.config import load_config

    run = Path(run)
    for name in (CONFIG, WEIGHTS):
        if not (run / name).is_file():
            raise VideoadaptError(f"model.init_run {run}: not a finished training run (no {name})")
    theirs, ours = str(load_config(run / CONFIG).model.backbone), str(config.model.backbone)
    if theirs != ours:
        raise VideoadaptError(f"model.init_run {run}: trained on backbone {theirs!r}, this run uses {ours!r}")
    return model.start_from(load_tensors(run / WEIGHTS), str(run / WEIGHTS))


@dataclass
class LoadedRun:
    config: Any
    model: TaskModel


def load_run(run: str | Path, ilfm: ImageLanguageModel | None = None) -> LoadedRun:
    """A trained run folder back as a model: config, backbone, encoder, head (from ``vocabulary.json``) and the
    trained weights (``model.safetensors``)."""
    from videoadapt.model.config import load_config

    run = Path(run)
    for name in (CONFIG, WEIGHTS, VOCABULARY):
        if not (run / name).is_file():
            raise VideoadaptError(f"{run}: not a finished training run (no {name})")
    # Over today's defaults: a run written before a setting existed gets its default; a setting this version no
    # longer knows is an error naming the file.
    try:
        config = load_config(run / CONFIG)
    except VideoadaptError as error:
        raise VideoadaptError(f"{error} (a run folder written by another videoadapt version?)") from None
    spec = load_json(run / VOCABULARY)
    if not isinstance(spec, dict):
        raise VideoadaptError(f"{run / VOCABULARY}: not a JSON object describing the task head")
    placeholder = _SpecOnly(str(config.run.task))
    try:
        model = build_model(config, placeholder, spec=spec, ilfm=ilfm)  # type: ignore[arg-type]
    except (VideoadaptError, KeyError, TypeError, ValueError) as error:
        raise VideoadaptError(f"{run / VOCABULARY}: cannot rebuild the task head from it: {error}") from None
    try:
        model.load_trainable_state(load_tensors(run / WEIGHTS))
    except VideoadaptError as error:
        raise VideoadaptError(
            f"{run / WEIGHTS}: {error} (weights of another run or version, or a changed config.yaml?)"
        ) from None
    return LoadedRun(config, model)


class _SpecOnly:
    """Stands for the training data when a head is rebuilt from its saved description (which has everything)."""

    def __init__(self, task: str) -> None:
        self.task, self.items, self.classes, self.answers, self.origin = task, [], None, None, "saved run"
