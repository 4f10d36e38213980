"""One bench cell: train (or, for the zero-shot baseline, only build) and score it.

``python -m videoadapt.bench.cell CELL_DIR`` runs the cell described by ``CELL_DIR/cell.json`` (written by the
runner) in its own process, so that its peak memory is its own, and writes ``CELL_DIR/result.json`` then the
``CELL_DIR/done`` marker. The run folder of the trainer is ``CELL_DIR/run`` (config, weights, log, metrics).

A bench cell is scored on the test split and keeps, beside its metrics, the per-item statistics the report's
bootstrap resamples (``item_stats.safetensors``) and one record per test item (``predictions.jsonl``), so that the
analysis can be redone without the model. A sweep cell (``score_split: val``) is scored on the validation split
only: it never reads the test split.

Status: ``ok``; ``incompatible`` (the paradigm cannot serve this task: the model cannot be built for it, e.g. a
head that needs a text query on a task that has none; the reason is recorded and reported); ``failed`` (an error
while training or scoring; recorded, reported, and retried from scratch by the next run); ``interrupted`` (SIGTERM,
Ctrl-C or a full disk stopped it: training stops at its next step boundary with a checkpoint in ``run/``, and the
next run resumes the cell from there; work outside training, loading and scoring, stops at once and is redone).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.utils.safe_io import DiskFullError, atomic_write_bytes, load_json, save_json

CELL, RESULT, DONE, RUN, LOG = "cell.json", "result.json", "done", "run", "cell.log"
INTERRUPTED = "interrupted"
# A cell's process that could not even record its result because the disk is full exits with this (EX_TEMPFAIL).
DISK_FULL_EXIT = 75
ITEM_STATS, PREDICTIONS = "item_stats.safetensors", "predictions.jsonl"
RANK = int(os.environ.get("RANK", "0"))  # set by `accelerate launch` / torchrun in each process
# Above this size an every-layer feature cache (side networks) costs more than running the frozen backbone again
# (a forward without gradients) each step: the cell then runs it live.
MAX_ALL_LAYERS_CACHE_BYTES = 1 << 30


def config_for(spec: dict[str, Any]) -> Any:
    """The trainer config of a cell description (cell + budget + data + cache folder)."""
    from videoadapt.model.config import load_config

    cell, budget, data = spec["cell"], spec["budget"], spec["data"]
    curve = int(budget.get("curve_points") or 0)
    # Validation during training (learning curves, best weights); a sweep cell scores val after training instead.
    validate = bool(budget["validate"]) or curve > 0
    flags = {
        "run.task": cell["task"],
        "model.paradigm": cell["paradigm"],
        "model.backbone": cell["backbone"],
        "model.options": cell["options"],
        "model.head": cell["head"],
        "model.teacher_run": spec.get("teacher_run"),
        "data.source": data["source"],
        "data.options": data["options"],
        "data.frames": budget["frames"],
        "data.train_split": spec.get("train_split", "train"),
        "data.val_split": spec.get("val_split", "val") if validate else None,
        "data.skip_bad": bool(data.get("skip_bad", False)),
        "run.seed": cell["seed"],
        "run.epochs": 10**6,  # the step budget decides
        "run.max_steps": budget["steps"],
        "run.batch_size": budget["batch_size"],
        "run.eval_batch_size": budget["eval_batch_size"],
        "run.lr": cell.get("lr") or 1e-3,
        "run.backbone_lr": cell.get("backbone_lr"),
        "run.warmup_steps": budget["warmup_steps"],
        "run.eval_every": 0,  # validations come from eval_every_steps (the learning curve) and the end
        "run.eval_every_steps": max(1, int(budget["steps"]) // curve) if curve else None,
        "run.cache": spec.get("cache", True),
        "run.cache_dir": spec["cache_dir"],
        "run.checkpoint_every": 0,
        "run.progress": False,
        "run.log_every": max(1, int(budget["steps"]) // 50),
        "run.cpu": spec.get("device") == "cpu",
        "run.precision": spec.get("precision") or budget.get("precision", "no"),
    }
    # val_split=None must reach the config as null, which flags (None = not given) cannot say.
    overrides = [] if validate else ["data.val_split=null"]
    return load_config(None, {k: v for k, v in flags.items() if v is not None}, overrides)


def video_head_description(encoder: Any) -> str:
    """The head the composition ended up with, e.g. ``TemporalHead(TemporalTransformer)``."""
    head = encoder.head
    inner = getattr(head, "temporal", None)
    name = type(head).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def cache_folder(root: str | Path, needs_layers: bool) -> Path:
    """Frozen cells of a table share features: one folder for heads that read every layer, one for the rest."""
    return Path(root) / ("all_layers" if needs_layers else "last_layer")


def gflops_per_view(model: Any, frames: int) -> float | None:
    """GFLOPs (fvcore convention) of the video path on one view of ``frames`` frames; None if it cannot run alone
    (inputs beyond the video). A head that fuses the video with a query sentence is counted with a short stand-in
    one (its text tower runs outside the count, as for every other head)."""
    import torch

    from videoadapt.bench.cost import count_flops

    encoder = model.encoder
    size = encoder.ilfm.processor.image_size
    parameter = next(encoder.parameters())
    video = torch.zeros(1, frames, 3, size, size, device=parameter.device)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            text = encoder.ilfm.encode_text(["a video"]) if encoder.head.needs_text else None
        if getattr(encoder.head, "pixel_route", None) is not None:
            # A video MLLM: the tower, the projector and the LM's prefill of the visual tokens and a short prompt.
            return count_flops(lambda: encoder(video).generative.prefill("What happens in the video?"), [encoder]) / 1e9
        return count_flops(lambda: encoder(video, text=text), [encoder]) / 1e9
    except Exception:  # noqa: BLE001 - a cost the counter cannot follow is reported as missing, not fatal
        return None
    finally:
        encoder.train(was_training)


def training_gflops_per_step(trainer: Any) -> float | None:
    """GFLOPs (fvcore convention) of one optimizer step of ``trainer``: the forward and backward of its first
    batch, counted in eval mode (no dropout, no BatchNorm statistics touched) so that counting changes nothing the
    training then does; the gradients are dropped. None when the counter cannot follow the step."""
    from videoadapt.bench.cost import count_training_flops

    model = trainer.model
    batch = trainer.train_builder.build(trainer.plan.batch(0, 0, trainer.rank, trainer.world), 0)
    batch = batch.to(trainer.accelerator.device)
    was_training = model.training

    def step() -> None:
        with trainer.accelerator.autocast():
            loss = model(batch)
        loss.backward()

    model.eval()
    try:
        flops = count_training_flops(step) * int(trainer.world) * int(trainer.config.run.grad_accum)
        return flops / 1e9
    except Exception:  # noqa: BLE001 - a cost the counter cannot follow is reported as missing
        return None
    finally:
        model.train(was_training)
        for parameter in model.parameters():
            parameter.grad = None


def _trainable(model: Any) -> int:
    from videoadapt.bench.cost import count_parameters

    return count_parameters(model, trainable_only=True)


def parameter_split(model: Any, role: str) -> tuple[int, int]:
    """Trainable parameters of ``(the paradigm, the shared heads)``. The heads are the task head and, for an arm
    that adapts the backbone (role "backbone"), the shared temporal module that reads it (``post_network``'s, or a
    distilled student's); everything else is the paradigm's: what it inserts or tunes in the image model, a
    student's copy of it, a module after the backbone that is the paradigm itself (post-network, side network)."""
    from videoadapt.bench.cost import count_parameters

    task_head = count_parameters(model.head, trainable_only=True)
    total = _trainable(model)
    head = model.encoder.head
    # A TemporalHead's module, or the temporal head inside a distillation head.
    temporal = getattr(head, "temporal_head", None) or getattr(head, "temporal", None)
    shared = count_parameters(temporal, trainable_only=True) if role == "backbone" and temporal is not None else 0
    return total - task_head - shared, task_head + shared


class CellStopped(BaseException):
    """A stop signal outside training (loading, scoring): that work is redone on resume, so it stops at once. A
    BaseException like KeyboardInterrupt, so that the cell's ``except Exception`` does not record it as a failure."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.signal = name


class _StopOnSignals:
    """SIGTERM and Ctrl-C stop the cell: inside ``Trainer.fit`` the trainer's own handlers take over (the step in
    progress finishes and is checkpointed); elsewhere :class:`CellStopped` is raised at once. Only the first stop
    raises: a signal arriving once the cell is already stopping (a cell often gets SIGTERM twice, forwarded by the
    bench and from its dying fork server, milliseconds or, on a loaded machine, a training step apart) is only
    noted, as is any signal after :meth:`defer`; a noted signal is raised again (to the handlers from before) on
    exit, so that the process running the cell (the bench, in-process) learns of it too. Only the main thread
    takes signals; elsewhere nothing changes."""

    def __init__(self) -> None:
        self.deferred: int | None = None
        self.trainer: Any = None  # the cell's trainer, once built: whether it already stopped on a signal
        self._defer = False
        self._raised = False
        self._previous: dict[int, Any] = {}

    def _stopping(self) -> bool:
        return self._defer or self._raised or getattr(self.trainer, "_stop_signal", None) is not None

    def _handle(self, number: int, frame: Any) -> None:
        if self._stopping():
            self.deferred = self.deferred or number
            return
        self._raised = True
        raise CellStopped(signal.Signals(number).name)

    def defer(self) -> None:
        self._defer = True

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {n: signal.signal(n, self._handle) for n in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        if self.deferred is not None and self._previous:
            signal.raise_signal(self.deferred)


def _stop_on_signals() -> _StopOnSignals:
    return _StopOnSignals()


def _disk_full(error: BaseException) -> DiskFullError | None:
    """The full disk behind ``error`` (the trainer wraps it in TrainingInterrupted), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def resumable(directory: str | Path) -> bool:
    """Whether the unfinished cell in ``directory`` can continue where it stopped: it was interrupted (or killed
    without recording anything) after its trainer wrote a checkpoint. A failed cell starts again from scratch."""
    from videoadapt.utils import checkpoint as ckpt

    directory = Path(directory)
    checkpoints = directory / RUN / "checkpoints"
    if not ckpt.any_checkpoint(checkpoints / "last", checkpoints / "previous"):
        return False
    if not (directory / RESULT).is_file():
        return True
    try:
        return load_json(directory / RESULT).get("status") == INTERRUPTED
    except VideoadaptError:
        return True  # unreadable bookkeeping: the checkpoint is verified when the trainer resumes


def _estimated_all_layers_bytes(spec: dict[str, Any], ilfm: Any, videos: int) -> int:
    dims = ilfm.dims
    tokens = dims.num_patches + (1 if dims.has_cls else 0)
    return int(videos * int(spec["budget"]["frames"]) * dims.layers * tokens * dims.width * 4)


def run_cell(directory: str | Path) -> dict[str, Any]:
    """Run the cell in ``directory`` in this process; returns (and writes) its result. SIGTERM and Ctrl-C stop it
    as ``interrupted`` (see the module's docstring); one arriving while the result is written is passed on after."""
    directory = Path(directory)
    with _stop_on_signals() as stops:
        result = _run_cell(directory, stops)
        stops.defer()  # the bookkeeping is written whole: a signal now waits until it is done
        return _finish(directory, result)


def _run_cell(directory: Path, stops: _StopOnSignals) -> dict[str, Any]:
    import torch

    from videoadapt.bench.memory import PeakMemory
    from videoadapt.foundation.loading import load_backbone
    from videoadapt.model.build import WEIGHTS, build_model
    from videoadapt.model.config import sampler_specs
    from videoadapt.model.data import check_items, load_split, open_cache
    from videoadapt.model.evaluation import evaluate_data
    from videoadapt.train.trainer import Trainer, TrainingInterrupted
    from videoadapt.utils.safe_io import load_tensors

    spec = load_json(directory / CELL)
    cell, budget = spec["cell"], spec["budget"]
    # An interrupted cell continues from its trainer's last checkpoint (exact: the trainer resumes exactly).
    resume = cell["role"] != "none" and resumable(directory)
    # Which split scores the cell: the bench's test split, or (a sweep cell) its validation split; names as given.
    sweeping = cell.get("score_split") == "val"
    score_split = str(spec.get("val_split", "val") if sweeping else spec.get("test_split", "test"))
    result: dict[str, Any] = {"cell": cell, "status": "ok", "reason": "", "started": time.time()}
    phase = "config"
    trainer = None
    try:
        if spec.get("teacher_run") and not (Path(spec["teacher_run"]) / WEIGHTS).is_file():
            raise VideoadaptError(f"the teacher's run {spec['teacher_run']} did not finish (its cell failed)")
        config = config_for(spec)
        phase = "data"
        # Read once here so that a data problem is a failure, not an incompatibility (readers cache in-process).
        train_items = load_split(config, str(config.data.train_split))
        phase = "backbone"
        ilfm = load_backbone(cell["backbone"])
        phase = "build"
        device = "cuda" if torch.cuda.is_available() and spec.get("device") != "cpu" else "cpu"
        memory = PeakMemory(device)
        accelerator = None
        history: list[dict[str, Any]] = []
        if cell["role"] == "none":
            if RANK != 0:
                return result  # under a multi-process launch one process scores the untrained model
            # Nothing trains: the head built on the training split's vocabulary, scored as it is.
            from videoadapt.model.config import to_plain
            from videoadapt.tasks import build_task

            task = build_task(cell["task"], **to_plain(config.model.head))
            train_data = check_items(task, train_items, bool(config.data.skip_bad))
            model = build_model(config, train_data, ilfm=ilfm).to(device)
            trained, train_s, setup_s, peak, measure = 0, None, None, None, "no training"
            # Scored from the shared feature cache like the frozen rows: the same frame features as
            # post_network:mean (not a second, differently-rounded pass of the backbone over the test videos).
            use_cache = bool(config.run.cache) and model.encoder.cacheable
            step_gflops = None
            result["steps"] = 0
        else:
            if cell["paradigm"].startswith("side_tuning"):
                # Side networks read every block's tokens: cache them only while that stays small.
                videos = len({item.video.video_id for item in train_items.items})
                spec["cache"] = _estimated_all_layers_bytes(spec, ilfm, videos) <= MAX_ALL_LAYERS_CACHE_BYTES
                config = config_for(spec)

            class MeasuredTrainer(Trainer):
                """Counts one step's FLOPs, then starts the peak-memory window, once the model is built and the
                feature cache extracted."""

                setup_seconds: float | None = None
                step_gflops: float | None = None

                def setup(self) -> None:
                    began = time.perf_counter()
                    super().setup()
                    self.setup_seconds = time.perf_counter() - began
                    self.step_gflops = training_gflops_per_step(self)
                    memory.start()

                def _cache(self, data: Any, sampler: str) -> Any:
                    # The model is built by now: pick the shared folder that matches what its head reads.
                    self.cache_root = cache_folder(spec["cache_dir"], self.model.encoder.head.needs_layers)
                    return super()._cache(data, sampler)

            trainer = MeasuredTrainer(config, directory / RUN, ilfm=ilfm, resume=resume)
            stops.trainer = trainer
            if resume:
                result["resumed"] = True
            try:
                summary = trainer.fit()
            except VideoadaptError as error:
                # Refused while building (before any step): this paradigm cannot serve this task. Unreadable data
                # (InputFileError) and errors during training are failures instead.
                if trainer.setup_seconds is not None or isinstance(error, (InputFileError, TrainingInterrupted)):
                    phase = "train" if trainer.setup_seconds is not None else "data"
                    raise
                result.update(status="incompatible", reason=str(error).splitlines()[0])
                return result
            peak, measure = memory.stop()
            model = trainer.model
            accelerator = trainer.accelerator if trainer.world > 1 else None
            if budget["validate"] and (directory / RUN / WEIGHTS).is_file():
                model.load_trainable_state(load_tensors(directory / RUN / WEIGHTS))
            trained = _trainable(model)
            train = summary["train"]
            train_s = float(train.get("train_seconds", train["seconds"]))
            setup_s = float(trainer.setup_seconds)
            use_cache = trainer.use_cache
            step_gflops = trainer.step_gflops
            history = list(summary.get("validation", []))
            result["steps"] = int(summary["steps"])
            result["final_loss"] = train["final_loss"]
            result["train_items"] = len(trainer.train_data)
            result["cache_videos_encoded"] = trainer.cache_extractions
        phase = "validation" if sweeping else "test"
        began = time.perf_counter()
        test_data = check_items(model.task, load_split(config, score_split), bool(config.data.skip_bad))
        _, eval_spec = sampler_specs(config)
        cache = None
        if use_cache:
            cache = open_cache(
                model.encoder.ilfm,
                test_data,
                eval_spec,
                cache_folder(spec["cache_dir"], model.encoder.head.needs_layers) / score_split,
                all_layers=model.encoder.head.needs_layers,
                accelerator=accelerator,
                skip_bad=bool(config.data.skip_bad),
            )
        from videoadapt.model.precision import resolve_precision

        predictions: list[Any] = []
        metrics = evaluate_data(
            model,
            test_data,
            eval_spec,
            accelerator,
            int(budget["eval_batch_size"]),
            cache=cache,
            skip_bad=bool(config.data.skip_bad),
            precision=resolve_precision(str(config.run.precision), device == "cuda"),
            keep=predictions,
        )
        scored = _scored_data(test_data, predictions)
        units = len(scored.items)
        if RANK == 0 and not sweeping:
            units = _keep_items(directory, model.task, [p for _, p in predictions], scored)
        paradigm_params, head_params = parameter_split(model, cell["role"]) if trained else (0, 0)
        result.update(
            metrics=metrics,
            score_split=score_split,
            test_split=score_split,
            test_items=units,  # the bootstrap's units (a clip and its time-reversed copy are one)
            test_clips=len(scored.items),
            eval_s=time.perf_counter() - began,
            trainable_parameters=trained,
            paradigm_parameters=paradigm_params,
            head_parameters=head_params,
            gflops_per_view=gflops_per_view(model, int(budget["frames"])),
            train_gflops_per_step=step_gflops,
            train_s=train_s,
            setup_s=setup_s,
            peak_memory_mb=peak,
            memory_measure=measure,
            video_head=video_head_description(model.encoder),
            cached_features=use_cache,
            device=device,
            curve=[_curve_point(h, step_gflops) for h in history],
            lr=cell.get("lr"),
            backbone_lr=cell.get("backbone_lr"),
        )
    except (CellStopped, KeyboardInterrupt) as stop:
        # Outside training, or a second Ctrl-C inside it (the trainer then checkpointed the last finished step).
        name = stop.signal if isinstance(stop, CellStopped) else "SIGINT"
        _interrupted(result, name, phase, trainer)
    except Exception as error:  # noqa: BLE001 - any failure of one cell is recorded, the bench goes on
        full = _disk_full(error)
        stop_signal = getattr(trainer, "_stop_signal", None)  # what the trainer stopped on (Trainer.fit sets it)
        if isinstance(error, TrainingInterrupted) and stop_signal is not None and full is None:
            _interrupted(result, str(stop_signal), phase, trainer)
        elif full is not None:
            # Every later cell would hit the same wall: the bench stops, naming the file and the space needed.
            _interrupted(result, "a full disk", phase, trainer, reason=str(full))
        elif phase == "build" and isinstance(error, VideoadaptError) and not isinstance(error, InputFileError):
            result.update(status="incompatible", reason=str(error).splitlines()[0])
        else:
            last = str(error).strip().splitlines()
            result.update(status="failed", reason=f"{phase}: {type(error).__name__}: {last[0] if last else ''}")
            result["traceback"] = traceback.format_exc()[-4000:]
    finally:
        if trainer is not None and trainer.world > 1:
            _teardown(trainer)
    return result


def _interrupted(result: dict[str, Any], cause: str, phase: str, trainer: Any, reason: str = "") -> None:
    """Mark ``result`` interrupted: no ``done`` marker, and the next run resumes the cell from its checkpoint."""
    step = None if trainer is None else getattr(getattr(trainer, "position", None), "step", None)
    if phase == "build" and getattr(trainer, "setup_seconds", None) is not None:
        phase = "train"  # the model was built: the trainer was training
    kept = (
        f"after step {step} of training (checkpoint kept)"
        if phase == "train" and step
        else ("after training" if phase in ("test", "validation") else f"while {phase}")
    )
    if phase == "train" and not step:
        kept = "before its first step"
    result.update(status=INTERRUPTED, reason=reason or f"stopped by {cause} {kept}", stopped_by=cause, step=step)


def _curve_point(entry: dict[str, Any], step_gflops: float | None) -> dict[str, Any]:
    """One validation of the learning curve: step, training seconds so far, training GFLOPs so far, metrics."""
    point = {k: v for k, v in entry.items() if isinstance(v, int | float)}
    if step_gflops is not None and "step" in entry:
        point["train_gflops"] = float(step_gflops) * int(entry["step"])
    return point


def _scored_data(data: Any, predictions: list[tuple[int, Any]]) -> Any:
    """The items that were scored (all, unless unreadable clips were skipped), as the task's evaluate saw them."""
    if len(predictions) == len(data.items):
        return data
    return data.subset(sorted(i for i, _ in predictions))


def _keep_items(directory: Path, task: Any, predictions: list[Any], data: Any) -> int:
    """``item_stats.safetensors`` (what the bootstrap resamples) and ``predictions.jsonl`` (one record per item);
    returns how many items (resampling units) there are."""
    import numpy as np
    import torch

    from videoadapt.utils.safe_io import save_tensors

    stats = task.item_statistics(predictions, data)
    save_tensors(directory / ITEM_STATS, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in stats.items()})
    records = task.item_records(predictions, data)
    lines = "".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in records)
    atomic_write_bytes(directory / PREDICTIONS, lines.encode())
    return len(next(iter(stats.values())))


def _teardown(trainer: Any) -> None:
    """As ``videoadapt.train.trainer.train`` ends a multi-process run: every rank done, the DDP wrapper freed,
    then the process group (left to destructors, a finished rank can abort at exit)."""
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.free_memory()
    trainer.ddp_model = None
    gc.collect()
    trainer.accelerator.end_training()


def _finish(directory: Path, result: dict[str, Any]) -> dict[str, Any]:
    if RANK != 0:
        return result  # under a multi-process launch, process 0 writes the result
    result["finished"] = time.time()
    save_json(directory / RESULT, result)  # atomic: on a full disk the previous result stays as it was
    if result["status"] in ("ok", "incompatible"):
        # The marker comes last, whole or not at all: a cell stopped before it is run again (or resumed).
        atomic_write_bytes(directory / DONE, (json.dumps({"status": result["status"]}) + "\n").encode())
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m videoadapt.bench.cell CELL_DIR", file=sys.stderr)
        return 2
    try:
        result = run_cell(args[0])
    except DiskFullError as error:  # the cell's own bookkeeping did not fit: the runner stops the bench
        print(f"videoadapt bench cell: {error}", file=sys.stderr)
        return DISK_FULL_EXIT
    print(json.dumps({"status": result["status"], "reason": result["reason"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
