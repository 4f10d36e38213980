"""Issue 19, item 1: exact resume for every task with a frozen, an adapted and a composed paradigm.

Each cell trains a tiny run twice on SynthWorld generated in memory with the shipped TinyCLIP (its MiniLM text tower
is the one whose outputs once depended on their batch neighbours): once straight through, once killed at a seeded
random micro-batch and resumed with ``resume=True`` from its last checkpoint. The kill is simulated in process: the
model's forward raises ``SystemExit``, which nothing in the trainer catches, so no error checkpoint is written and
the resume starts from the last periodic one (every 2 steps), with every memo, cache and generator of the killed
trainer gone, as after a SIGKILL (``test_reliability_training`` kills a real process). The final weights, the last
checkpoint's weights and optimizer state, and the loss of every logged step must be equal byte for byte.

Frozen cells read the feature cache (``run.cache``) and validate every 3 steps (best weights); text heads use their
text adapters (retrieval's token-level one), so the memoised text features are refilled after the kill."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

from videoadapt.model.config import load_config
from videoadapt.model.task_model import TaskModel
from videoadapt.train.trainer import train

STEPS, CHECKPOINT_EVERY = 5, 2
TINY = [
    "model.backbone=tiny",
    "data.options.videos=24",
    "data.options.size=32",
    "data.options.frames=8",
    "data.frames=2",
    "run.batch_size=4",
    f"run.max_steps={STEPS}",
    "run.epochs=10",
    f"run.checkpoint_every={CHECKPOINT_EVERY}",
    "run.eval_every=0",
    "run.eval_every_steps=3",
    "run.eval_batch_size=3",
    "run.log_every=1",
    "run.progress=false",
]
FROZEN = ["run.cache=true"]  # frozen paradigms train from the feature cache, as their recipes do
HEADS = {
    "retrieval": ["model.head.text_adapter=tokens", "model.head.text_hidden=32"],
    "qa": ["data.options.qa=multiple_choice", "model.head.text_adapter=true", "model.head.text_hidden=32"],
    # Not validated: pycocoevalcap's Java scorers take seconds per call.
    "captioning": [
        "data.val_split=null",
        "model.head.layers=1",
        "model.head.width=32",
        "model.head.heads=2",
    ],
    "temporal_grounding": ["model.head.hidden=32", "model.head.layers=1"],
    "st_grounding": ["model.head.hidden=32", "model.head.layers=1"],
}
# task: (frozen, adapted, composed)
MATRIX = {
    "recognition": ("side_tuning", "adapter", "lora+post_network"),
    "retrieval": ("post_network", "lora", "adapter+post_network"),
    "qa": ("post_network", "adapter", "lora+post_network"),
    "captioning": ("side_tuning", "lora", "adapter+post_network"),
    "temporal_grounding": ("post_network", "lora", "lora+post_network"),
    "st_grounding": ("side_tuning", "adapter", "adapter+post_network"),
}
CELLS = [
    pytest.param(task, paradigm, kind, id=f"{task}-{kind}-{paradigm}")
    for task, paradigms in MATRIX.items()
    for kind, paradigm in zip(("frozen", "adapted", "composed"), paradigms, strict=True)
]


class Killed(SystemExit):
    """Raised from the model's forward: the trainer catches Exception and KeyboardInterrupt, never this."""


def settings(task: str, paradigm: str, kind: str) -> list[str]:
    return [
        f"run.task={task}",
        f"model.paradigm={paradigm}",
        *TINY,
        *HEADS.get(task, []),
        *(FROZEN if kind == "frozen" else []),
    ]


def one_thread(function, *args, **kwargs):
    """On one torch thread: CPU results are bitwise reproducible only for the same thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def killed_at(micro_batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``micro_batch``-th training forward (1-based) kill the run."""
    forward = TaskModel.forward
    calls = {"n": 0}

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] == micro_batch:
            raise Killed(f"killed at micro-batch {micro_batch}")
        return forward(self, batch)

    monkeypatch.setattr(TaskModel, "forward", dying)


def loss_rows(run: Path) -> list[tuple[str, str, str, str]]:
    with open(run / "log.csv", newline="") as handle:
        return [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in csv.DictReader(handle)]


@pytest.mark.parametrize(("task", "paradigm", "kind"), CELLS)
def test_a_run_killed_at_a_random_step_resumes_byte_for_byte(tmp_path, monkeypatch, task, paradigm, kind):
    overrides = settings(task, paradigm, kind)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    one_thread(train, load_config(None, overrides=overrides), straight)

    # One micro-batch per step: killed during step `kill`, after the checkpoint of step 2 or 4 was written.
    kill = random.Random(f"{task}/{paradigm}").randint(CHECKPOINT_EVERY + 1, STEPS)
    with monkeypatch.context() as patch:
        killed_at(kill, patch)
        with pytest.raises(Killed):
            one_thread(train, load_config(None, overrides=overrides), resumed)
    one_thread(train, load_config(None, overrides=overrides), resumed, resume=True)

    for name in ("model.safetensors", "checkpoints/last/model.safetensors", "checkpoints/last/optimizer.safetensors"):
        assert (straight / name).read_bytes() == (resumed / name).read_bytes(), f"{name} differs (killed at {kill})"
    assert loss_rows(resumed) == loss_rows(straight) and len(loss_rows(straight)) == STEPS
