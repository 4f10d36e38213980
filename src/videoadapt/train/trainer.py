"""One training loop for every task x paradigm, on Accelerate.

AdamW with two learning-rate groups (the backbone and the head, videoadapt.train.optimizer), each on linear warm-up
and cosine decay, gradient accumulation, bf16 autocast (``run.precision``), checkpoints every N optimizer steps that
resume *exactly* (trainable weights, optimizer state, schedule, every RNG, the position in the data), validation
every N epochs and/or steps (learning curves) with early stopping, a progress bar, ``log.csv`` and ``metrics.json``.
With a frozen backbone and ``run.cache`` the frame features are extracted once and the backbone never runs during
training.

The same code runs on one CPU process, or under ``accelerate launch`` on several processes or GPUs: the global
batch (``run.batch_size``) is split across processes, so a run's result does not depend on how many there are
(up to floating-point summation order; retrieval gathers the in-batch negatives of every process).

Run folder::

    RUN/config.yaml            the resolved config (model / data / run)
    RUN/model.safetensors      trainable encoder weights (``encoder.*``) and the task head (``head.*``);
                               the best on validation when there is one, else the last
    RUN/vocabulary.json        the head's description: class names, answer vocabulary, caption words, mode
    RUN/metrics.json           training summary, validation history (with train_seconds, clips_seen), best metrics
    RUN/log.csv                step, epoch, loss, lr (head group), backbone_lr, clips_per_s, elapsed_s
    RUN/checkpoints/last/      model.safetensors, optimizer.safetensors, state.json (see utils/checkpoint.py)
    RUN/checkpoints/previous/  the checkpoint before, used when ``last`` is found damaged
    RUN/cache/<split>/         frame features of a frozen backbone (run.cache)
"""

from __future__ import annotations

import contextlib
import csv
import gc
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videoadapt.data.checks import find_bad_videos, skip_counts
from videoadapt.data.records import TaskData
from videoadapt.data.sampling import Dense, UniformSegments, sampler_from_spec
from videoadapt.errors import EmptySplitError, VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.build import CONFIG, LOG, METRICS, VOCABULARY, WEIGHTS, build_model, start_from_run
from videoadapt.model.config import absolute_data_paths, sampler_specs, save_config, to_plain
from videoadapt.model.data import load_checked_split, load_split, open_cache
from videoadapt.model.evaluation import evaluate_data
from videoadapt.model.precision import autocast, resolve_precision
from videoadapt.tasks import build_task
from videoadapt.train.data import EpochPlan, WorkerLoader, batch_loader, is_worker_failure
from videoadapt.train.optimizer import BACKBONE, HEAD, ROLES, build_optimizer, group_sizes, set_rates, split_trainable
from videoadapt.train.schedule import rates_at, schedule_state
from videoadapt.utils import checkpoint as ckpt
from videoadapt.utils.folder_lock import FolderLock
from videoadapt.utils.safe_io import save_json, save_tensors, writable_folder

LOG_COLUMNS = ("step", "epoch", "loss", "lr", "backbone_lr", "clips_per_s", "elapsed_s")


class TrainingInterrupted(VideoadaptError):
    """Training stopped on an error; the message says which step, which checkpoint holds the state, and why."""


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch: int = 0  # next micro-batch within the epoch


class TrainClock:
    """Wall time spent training (steps, batch building, logging), the x axis of a learning curve: validation and
    checkpoint writing are paused out, and the feature cache is extracted before it starts. ``seconds`` carries over
    a resume (checkpointed)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self._done = seconds
        self._since: float | None = None
        self._pauses = 0

    def start(self) -> None:
        self._since = time.perf_counter()

    def seconds(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None and not self._pauses else 0.0
        return self._done + running

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        if self._since is not None and not self._pauses:
            self._done += time.perf_counter() - self._since
        self._pauses += 1
        try:
            yield
        finally:
            self._pauses -= 1
            if self._since is not None and not self._pauses:
                self._since = time.perf_counter()


class Trainer:
    """Train ``config`` into the run folder ``out``. ``fit()`` returns (and writes) the run's metrics."""

    def __init__(
        self,
        config: Any,
        out: str | Path,
        *,
        resume: bool = False,
        ilfm: ImageLanguageModel | None = None,
        accelerator: Any = None,
        check_test_split: bool = False,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config = config
        self.out = writable_folder(out, "run folder")  # before any work: never hours of training, then "cannot write"
        # `videoadapt train` opens the test split's videos up front too; the bench and its sweep never touch it.
        self.check_test_split = check_test_split
        self.resume = resume
        self._ilfm = ilfm
        run = config.run
        cpu = bool(run.cpu) or not torch.cuda.is_available()
        self.precision = resolve_precision(str(run.precision), cuda=not cpu)  # "auto" decided on this machine
        self.accelerator = accelerator or Accelerator(
            # Without a GPU, say so: Accelerate otherwise ignores a torchrun / `accelerate launch --multi_gpu`
            # environment on a CPU-only machine and every process trains alone (measured with accelerate 1.15).
            cpu=cpu,
            # The trainer autocasts itself (autocast is all Accelerate's bf16 mode does under DDP): Accelerate keeps
            # one state per process, and a second run in the same process with another precision would be refused.
            mixed_precision="no",
            # Some heads leave part of the encoder unused for a task (frame tokens of a recognition run).
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        if int(run.batch_size) % self.world:
            raise VideoadaptError(f"run.batch_size {run.batch_size} must be a multiple of the {self.world} processes")
        self.checkpoint_dir = self.out / "checkpoints" / "last"
        self.previous_dir = self.out / "checkpoints" / "previous"
        self._keep_last = True  # False after resuming from ``previous`` because ``last`` was damaged
        self._checkpoint_step: int | None = None
        self._checkpoint_due = False
        self._loader: Any = None
        self.cache_extractions = 0
        self.checkpoint_seconds = 0.0  # inside train.seconds; reported apart, since it is disk I/O, not training
        # What metrics.json counts, kept in checkpoints so that a resumed run reports what an uninterrupted one does.
        self.counters = {"skipped_clips": 0, "nonfinite_steps": 0, "nonfinite_streak": 0, "clips_seen": 0}
        self.clock = TrainClock()
        self.window = {"loss": 0.0, "micro": 0}  # finite micro-batch losses since the last log row
        self.last_loss = math.nan

    # --- setup ---

    def _fit_batch_to_data(self) -> None:
        """A training split smaller than one optimizer step's worth of clips (a task's recipe on a folder of twenty
        clips) trains with the whole split as its batch, saying so, rather than taking no step at all; config.yaml
        records the batch size used."""
        run = self.config.run
        items, accumulate = len(self.train_data), int(run.grad_accum)
        if items >= int(run.batch_size) * accumulate or items < accumulate:
            return
        fitted = items // accumulate
        if self.accelerator.is_main_process:
            print(
                f"videoadapt train: notice: run.batch_size={run.batch_size} is more than the {items} training items "
                f"hold; training with run.batch_size={fitted}",
                file=sys.stderr,
            )
        run.batch_size = fitted

    def _check_test_split(self) -> dict[str, Any] | None:
        """The test split's videos opened now too (warned about, not raised: training does not read them), so that
        a missing test video is found before hours of training rather than at ``eval``; None: no test split."""
        config = self.config
        test = "test"  # eval's default split
        if test in (str(config.data.train_split), str(config.data.val_split)) or not bool(config.data.check_videos):
            return None
        try:
            data = load_split(config, test)
        except VideoadaptError:
            return None  # a data set without a test split
        problems = find_bad_videos(data)
        if problems and self.accelerator.is_main_process:
            lines = problems.lines()
            print(
                f"videoadapt train: warning: {len(lines)} videos of the test split cannot be read (eval will need "
                f"data.skip_bad=true): " + "; ".join(lines[:5]) + (" ..." if len(lines) > 5 else ""),
                file=sys.stderr,
            )
        return {
            "items": len(data),
            **skip_counts(data),
            "missing_videos": len(problems.missing),
            "unreadable_videos": len(problems.unreadable),
        }

    def _data_counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"train": {"items": len(self.train_data), **skip_counts(self.train_data)}}
        counts["train"]["unreadable_clips"] = self.counters["skipped_clips"]
        if self.val_data is not None:
            counts["val"] = {"items": len(self.val_data), **skip_counts(self.val_data)}
        if self.test_check is not None:
            counts["test"] = self.test_check
        return counts

    def setup(self) -> None:
        from accelerate.utils import set_seed

        config, run = self.config, self.config.run
        exists = ckpt.any_checkpoint(self.checkpoint_dir, self.previous_dir)
        if exists and not self.resume:
            raise VideoadaptError(f"{self.out} already holds a training checkpoint; pass --resume or use a new --out")
        if self.resume and not exists:
            raise VideoadaptError(f"{self.out}: no checkpoint to resume from in {self.checkpoint_dir.parent}")
        found = None
        if self.resume:
            main = self.accelerator.is_main_process
            warn = (lambda m: print(f"videoadapt train: {m}", file=sys.stderr, flush=True)) if main else None
            try:
                # Verified (sizes, checksums) before anything is built: a damaged last checkpoint falls back to the
                # previous one with a message; none usable is an error naming what is wrong with each.
                found = ckpt.find_checkpoint(self.checkpoint_dir, self.previous_dir, warn=warn)
            except ckpt.CheckpointError as error:
                raise VideoadaptError(f"{self.out}: cannot resume: {error}") from None
            self._keep_last = found == self.checkpoint_dir
        set_seed(int(run.seed))
        self.task = build_task(str(run.task), **to_plain(config.model.head))
        self.train_data = load_checked_split(config, self.task, str(config.data.train_split))
        self._fit_batch_to_data()
        self.val_data = None
        if config.data.val_split and (int(run.eval_every) > 0 or run.eval_every_steps):
            try:
                self.val_data = load_checked_split(config, self.task, str(config.data.val_split))
            except EmptySplitError as error:
                # A handful of one's own clips (every class under 3 videos) leaves nothing to validate on: train
                # all the same, saying so, rather than refuse.
                if self.accelerator.is_main_process:
                    print(
                        f"videoadapt train: warning: {error}; training without validation (no early stopping, "
                        "the last weights are kept; set data.val_split=null to silence this)",
                        file=sys.stderr,
                    )
        self.test_check = self._check_test_split() if self.check_test_split else None
        self.model = build_model(config, self.train_data, ilfm=self._ilfm)
        if config.model.get("init_run") and found is None:
            # A fresh run only: a resumed one has its own weights in the checkpoint and no longer needs the first.
            copied, fresh = start_from_run(self.model, config, config.model.init_run)
            if self.accelerator.is_main_process:
                print(
                    f"videoadapt train: starting from {config.model.init_run}: {copied} trained tensors copied, "
                    f"{fresh} start from their initialisation",
                    file=sys.stderr,
                )
        self.task = self.model.task
        train_spec, eval_spec = sampler_specs(config)
        encoder = self.model.encoder
        # A frozen backbone's features come from the cache; a head that also reads pixels (a pixel student beside
        # its frozen teacher) gets both, decoded with the same sampler as the cached features.
        self.use_cache = bool(run.cache) and (encoder.cacheable or encoder.cache_with_pixels)
        # The task head may read pixels too (segmentation's pixel stem): then batches carry both as well.
        with_pixels = self.model.cache_with_pixels
        if bool(run.cache) and not self.use_cache and self.accelerator.is_main_process:
            print(
                f"videoadapt train: run.cache ignored: {'+'.join(encoder.paradigm_names)} trains the backbone",
                file=sys.stderr,
            )
        self.cache_root = Path(run.cache_dir) if run.cache_dir else self.out / "cache"
        processor = encoder.ilfm.processor
        cache_spec, cache_sampler = eval_spec, None
        if self.use_cache and config.data.cache_sampler and with_pixels:
            # A task's defaults set it for every paradigm; decoded clips cannot follow frames drawn from the cache.
            if self.accelerator.is_main_process:
                print("videoadapt train: data.cache_sampler ignored: the head reads pixels beside it", file=sys.stderr)
        elif self.use_cache and config.data.cache_sampler:
            # Denser cached clips; each step applies the random train sampler to their rows instead of to video.
            cache_spec, cache_sampler = str(config.data.cache_sampler), sampler_from_spec(train_spec)
            if not isinstance(cache_sampler, UniformSegments | Dense):
                raise VideoadaptError(
                    f"data.cache_sampler: the train sampler {train_spec!r} counts seconds, not frames, so it "
                    "cannot pick among cached frames; use uniform:N[:random] or dense:N[xS][:random]"
                )
        self.train_builder = BatchBuilder(
            self.train_data,
            self.task,
            processor,
            # Cached features were sampled once, deterministically; a random training sampler cannot apply to
            # the video (it applies to the cached rows with data.cache_sampler).
            sampler_from_spec(cache_spec if self.use_cache else train_spec),
            train=True,
            seed=int(run.seed),
            cache=self._cache(self.train_data, cache_spec) if self.use_cache else None,
            pixels=not self.use_cache or with_pixels,
            skip_bad=bool(config.data.skip_bad),
            cache_sampler=cache_sampler,
            cache_patches=bool(getattr(encoder.head, "needs_patches", True)) or self.task.needs_patches,
        )
        self.eval_spec = eval_spec
        # Validation features too are extracted now, so that no epoch, and no validation, runs the backbone.
        self.val_cache = self._cache(self.val_data, eval_spec) if self.use_cache and self.val_data is not None else None
        self.plan = EpochPlan(len(self.train_data), int(run.batch_size), int(run.seed))
        if len(self.plan) < int(run.grad_accum):
            raise VideoadaptError(
                f"{self.train_data.origin}: {len(self.train_data)} training items make {len(self.plan)} batches of "
                f"{run.batch_size}, fewer than one optimizer step of {run.grad_accum} batches; lower run.batch_size"
            )
        self.steps_per_epoch = len(self.plan) // int(run.grad_accum)
        total = int(run.epochs) * self.steps_per_epoch
        self.total_steps = min(total, int(run.max_steps)) if run.max_steps else total
        if self.total_steps < 1:
            raise VideoadaptError("nothing to train: run.epochs and run.max_steps give 0 optimizer steps")

        # Two learning rates (videoadapt.train.optimizer): the backbone's and the head's.
        self.base_lrs = {HEAD: float(run.lr), BACKBONE: float(run.backbone_lr if run.backbone_lr else run.lr)}
        groups = split_trainable(self.model)
        self.group_sizes = group_sizes(groups)
        self.optimizer = build_optimizer(groups, self.base_lrs, float(run.weight_decay), run.betas)

        self.position = Position()
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"value": None, "step": None, "metrics": None, "bad_evals": 0}
        state = None
        if found is not None:
            try:
                state = ckpt.load_checkpoint(found, verify=False)
            except ckpt.CheckpointError as error:
                raise VideoadaptError(f"{self.out}: cannot resume: {error}") from None
            self._checkpoint_step = state.step
            self.model.load_trainable_state(state.model)
            extra = state.extra
            self._check_schedule(extra.get("schedule", {}))
            self.position = Position(**extra["position"])
            self.history = list(extra.get("history", []))
            self.best = dict(extra.get("best", self.best))
            self.counters.update(extra.get("counters", {}))
            self.clock = TrainClock(float(extra.get("train_seconds", 0.0)))
            self.window.update(extra.get("window", {}))
            self.last_loss = float(extra.get("last_loss", math.nan))
        self.ddp_model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if state is not None:
            if state.optimizer is not None:
                self.optimizer.load_state_dict(state.optimizer)
            rngs = state.extra.get("rng", [])
            if rngs:
                ckpt.restore_rng(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        if self.accelerator.is_main_process:
            # Data paths as absolute ones (where they are relative paths that exist), so that `videoadapt eval
            # --run RUN` and --resume work from another working directory.
            save_config(absolute_data_paths(config), self.out / CONFIG)
            save_json(self.out / VOCABULARY, self.model.head.spec)
            self._start_log()

    def _cache(self, data: TaskData, spec: str) -> Any:
        encoder = self.model.encoder
        cache = open_cache(
            encoder.ilfm,
            data,
            spec,
            self.cache_root / data.split,
            all_layers=encoder.head.needs_layers,
            accelerator=self.accelerator if self.world > 1 else None,
            skip_bad=bool(self.config.data.skip_bad),
            progress=bool(self.config.run.progress) and self.accelerator.is_main_process,
        )
        self.cache_extractions += int(getattr(cache, "run_stats", {}).get("encoded", 0))
        return cache

    # --- logging ---

    def _start_log(self) -> None:
        path = self.out / LOG
        rows = []
        if path.is_file():
            # Rows past the checkpoint were logged by a run that then died; the resumed run logs those steps again.
            # A kill mid-append can leave a partial last row (even "1" of "12,..."): only whole rows, in order.
            with open(path, newline="", encoding="utf-8", errors="replace") as handle:
                for row in csv.DictReader(handle):
                    if "backbone_lr" not in row and row.get("lr"):
                        row["backbone_lr"] = row["lr"]  # a log from before the backbone group: one rate for all
                    if any(not row.get(c) for c in LOG_COLUMNS) or None in row:
                        continue
                    try:
                        step = int(row["step"])
                    except ValueError:
                        continue
                    if step <= self.position.step and (not rows or step > int(rows[-1]["step"])):
                        rows.append({c: row[c] for c in LOG_COLUMNS})
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def _log(self, row: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(self.out / LOG, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=LOG_COLUMNS).writerow(row)

    # --- checkpoints ---

    def save_checkpoint(self, collective: bool = True) -> None:
        """Write ``checkpoints/last`` atomically; ``collective`` gathers every process's RNG state (False on the
        error path, where another process may no longer answer). Not training time (``train_seconds``)."""
        with self.clock.paused():
            self._save_checkpoint(collective)

    def _save_checkpoint(self, collective: bool) -> None:
        from accelerate.utils import gather_object

        # On the error path the generators have moved on through the failed micro-batches: use their state at the
        # last completed step, so that even a resume after an error repeats the uninterrupted run.
        rng = ckpt.capture_rng() if collective else getattr(self, "_step_rng", None) or ckpt.capture_rng()
        rngs = gather_object([rng]) if collective and self.world > 1 else [rng]
        if not self.accelerator.is_main_process:
            return
        run = self.config.run
        extra = {
            "position": vars(self.position).copy(),
            "schedule": schedule_state(
                self.position.step,
                self.base_lrs,
                self.total_steps,
                int(run.warmup_steps),
                float(run.min_lr_ratio),
            ),
            "rng": rngs,
            "history": self.history,
            "best": self.best,
            "world_size": self.world,
            "counters": dict(self.counters),
            "window": dict(self.window),
            "last_loss": self.last_loss,
            "train_seconds": self.clock.seconds(),
        }
        optimizer = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
        began = time.perf_counter()
        ckpt.save_checkpoint(
            self.checkpoint_dir,
            self.position.step,
            self.model.trainable_state(),
            optimizer,
            extra,
            previous=self.previous_dir,
            keep_last=self._keep_last,
        )
        self.checkpoint_seconds += time.perf_counter() - began
        self._keep_last = True
        self._checkpoint_step = self.position.step

    def _checkpoint_when_good(self) -> None:
        """Checkpoint now, or, during a run of non-finite steps, at the next good step: the last checkpoint then
        always holds a state from before the trouble."""
        if self.counters["nonfinite_streak"]:
            self._checkpoint_due = True
        else:
            self.save_checkpoint()
            self._checkpoint_due = False

    def save_weights(self) -> None:
        if self.accelerator.is_main_process:
            with self.clock.paused():
                save_tensors(self.out / WEIGHTS, self.model.trainable_state())

    def _check_schedule(self, saved: dict[str, Any]) -> None:
        """Resuming with another length or other rates is legitimate (training longer, a gentler backbone), but
        the schedule then continues on another curve: say so."""
        if not self.accelerator.is_main_process:
            return
        notes = []
        saved_total = saved.get("total_steps")
        if saved_total is not None and saved_total != self.total_steps:
            notes.append(f"a run planned for {saved_total} steps resumes with {self.total_steps}")
        saved_rates = saved.get("base_lr")
        if isinstance(saved_rates, float | int):  # a checkpoint from before the backbone group: one rate
            saved_rates = {HEAD: saved_rates, BACKBONE: saved_rates}
        if isinstance(saved_rates, dict) and saved_rates != self.base_lrs:
            notes.append(f"base rates {saved_rates} are now {self.base_lrs}")
        if notes:
            print(
                f"videoadapt train: {'; '.join(notes)}: the learning-rate schedule follows the new settings",
                file=sys.stderr,
            )

    # --- evaluation ---

    def validate(self) -> dict[str, float]:
        assert self.val_data is not None
        with self.clock.paused():
            return evaluate_data(
                self.model,
                self.val_data,
                self.eval_spec,
                self.accelerator,
                int(self.config.run.eval_batch_size or self.config.run.batch_size),
                cache=self.val_cache,
                skip_bad=bool(self.config.data.skip_bad),
                precision=self.precision,
            )

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Record a validation; keep the best weights; True when early stopping says stop."""
        run = self.config.run
        monitor = str(run.monitor or self.task.monitor)
        if monitor not in metrics:
            raise VideoadaptError(f"run.monitor {monitor!r} is not among the validation metrics {sorted(metrics)}")
        # Where on the learning curve: training time (validation and checkpoints excluded) and clips trained on.
        self.history.append(
            {
                "step": self.position.step,
                "epoch": self.position.epoch,
                "train_seconds": self.clock.seconds(),
                "clips_seen": self.counters["clips_seen"],
                **metrics,
            }
        )
        value = metrics[monitor]
        if self.best["value"] is None or value > self.best["value"]:
            self.best = {"value": value, "step": self.position.step, "metrics": metrics, "bad_evals": 0}
            self.save_weights()
        else:
            self.best["bad_evals"] += 1
        return run.patience is not None and self.best["bad_evals"] >= int(run.patience)

    def _validation_info(self) -> str:
        """The last validation and the best one for the progress bar, e.g. `` · val CIDEr 22.8 (best 23.7 @ 300)``:
        a long run shows how it is going without opening metrics.json."""
        if not self.history:
            return ""
        monitor = str(self.config.run.monitor or self.task.monitor)
        last = self.history[-1].get(monitor)
        if not isinstance(last, (int, float)) or self.best["value"] is None:
            return ""
        return f" · val {monitor} {last:.4g} (best {self.best['value']:.4g} @ {self.best['step']})"

    # --- the loop ---

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the end (or until early stopping); ``stop_at`` stops after that optimizer step with a
        checkpoint, as if interrupted there (tests of exact resume)."""
        # One writer per run folder (the main process holds it for all of a launch's processes).
        lock = FolderLock(self.out, "run folder") if self.accelerator.is_main_process else None
        if lock is not None:
            lock.acquire()
        try:
            with self._stop_on_signals():
                self.setup()
                return self._fit_or_checkpoint(stop_at)
        finally:
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGTERM (a cluster's preemption) and a first Ctrl-C ask training to stop at the next optimizer step with a
        checkpoint and the resume command; a second Ctrl-C interrupts at once (the last completed step is still
        checkpointed). Only the main thread can take signals; elsewhere (a thread of a larger program) nothing
        changes."""
        self._stop_signal: str | None = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(number: int, frame: Any) -> None:
            if number == signal.SIGINT and self._stop_signal == "SIGINT":
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(number).name
            if self.accelerator.is_main_process:
                print(
                    f"videoadapt train: {self._stop_signal}: stopping after this step with a checkpoint "
                    "(Ctrl-C again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )

        previous = {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop_requested(self) -> str | None:
        """The signal that asked to stop, agreed by every process (any one of them got it: all stop at this step)."""
        local = getattr(self, "_stop_signal", None)
        if self.world == 1:
            return local
        flag = torch.tensor([0 if local is None else (2 if local == "SIGTERM" else 1)], device=self.accelerator.device)
        agreed = int(self.accelerator.reduce(flag, reduction="sum").item())
        return None if agreed == 0 else (local or "SIGTERM")

    def _fit_or_checkpoint(self, stop_at: int | None) -> dict[str, Any]:
        """:meth:`_fit`; an error on the way checkpoints the steps done and says how to resume."""
        try:
            return self._fit(stop_at)
        except (Exception, KeyboardInterrupt) as error:
            if isinstance(error, TrainingInterrupted):
                raise
            saved = ""
            if self.position.step > 0:
                with contextlib.suppress(Exception):
                    self.save_checkpoint(collective=False)
                    saved = (
                        f"; checkpoint {self.checkpoint_dir} holds step {self.position.step}, continue with --resume"
                    )
            where = f"epoch {self.position.epoch}, batch {self.position.batch}"
            reason = str(error)
            if is_worker_failure(error) and isinstance(self._loader, WorkerLoader):
                reason = self._loader.explain(error)[1]  # torch's message names a pid; this names the video
            message = f"training stopped at step {self.position.step} ({where}): {reason}{saved}"
            if isinstance(error, KeyboardInterrupt):
                print(f"videoadapt train: {message}", file=sys.stderr)
                raise
            raise TrainingInterrupted(message) from error

    def _fit(self, stop_at: int | None) -> dict[str, Any]:
        from videoadapt.utils.progress import make_progress

        run, accelerator = self.config.run, self.accelerator
        accum, log_every = int(run.grad_accum), max(1, int(run.log_every))
        checkpoint_every, eval_every = int(run.checkpoint_every), int(run.eval_every)
        eval_every_steps = int(run.eval_every_steps or 0)
        batches_per_epoch = self.steps_per_epoch * accum
        self.ddp_model.train()
        start = time.perf_counter()
        self.clock.start()
        rate = {"clips": 0, "t": start}  # clips/s since the last log row (wall clock: not checkpointed)
        clips_total = 0
        # A run resumed after it stopped early stays stopped.
        stopped_early = run.patience is not None and self.best["bad_evals"] >= int(run.patience)
        max_bad = int(run.max_nonfinite_steps or 0)
        step_losses: list[float] = []  # the micro-batches of the optimizer step in progress
        step_skipped = step_clips = 0
        progress = make_progress(disable=not (bool(run.progress) and accelerator.is_main_process))
        train_info = ""  # the bar's loss and speed; the last validation follows them (_validation_info)
        with progress:
            bar = progress.add_task(
                f"train {run.task}", total=self.total_steps, completed=self.position.step, info=self._validation_info()
            )
            while self.position.step < self.total_steps and not stopped_early:
                epoch, first = self.position.epoch, self.position.batch
                batches = [self.plan.batch(epoch, k, self.rank, self.world) for k in range(first, batches_per_epoch)]
                loader = batch_loader(
                    self.train_builder,
                    batches,
                    epoch,
                    int(run.num_workers),
                    float(run.worker_timeout or 0),
                    str(run.worker_start),
                )
                self._loader = loader
                for k, batch in enumerate(loader, start=first):
                    step_skipped += len(batch.skipped)
                    batch = batch.to(accelerator.device)
                    boundary = (k + 1) % accum == 0
                    sync = (
                        contextlib.nullcontext() if boundary or self.world == 1 else accelerator.no_sync(self.ddp_model)
                    )
                    with sync:
                        with autocast(accelerator.device, self.precision):
                            loss = self.ddp_model(batch)
                        # Backward even for a non-finite loss: under DDP every process must join the gradient
                        # all-reduce of every step; the step is dropped below.
                        accelerator.backward(loss / accum)
                    step_losses.append(float(loss.detach()))
                    rate["clips"] += len(batch) * self.world
                    clips_total += len(batch) * self.world
                    step_clips += len(batch) * self.world
                    if not boundary:
                        continue
                    bad = not all(math.isfinite(v) for v in step_losses)
                    if self.world > 1:
                        # Every process must take the same decision, or their optimizers (and DDP) diverge.
                        flag = torch.tensor(float(bad), device=accelerator.device)
                        bad = float(accelerator.reduce(flag, "sum")) > 0
                    rates = rates_at(
                        self.position.step,
                        self.base_lrs,
                        self.total_steps,
                        int(run.warmup_steps),
                        float(run.min_lr_ratio),
                    )
                    set_rates(self.optimizer, rates)
                    if run.clip_grad and not bad:
                        norm = accelerator.clip_grad_norm_(self.model.parameters(), float(run.clip_grad))
                        # A finite loss can still overflow in backward; DDP averaged the gradients, so every
                        # process sees the same norm.
                        bad = norm is not None and not math.isfinite(float(norm))
                    if not bad:
                        self.optimizer.step()
                    # A skipped step leaves weights and optimizer state as they were; its gradients are dropped.
                    self.optimizer.zero_grad(set_to_none=True)
                    self.position = Position(self.position.step + 1, epoch, k + 1)
                    step = self.position.step
                    self.counters["skipped_clips"] += step_skipped
                    self.counters["clips_seen"] += step_clips
                    if bad:
                        self.counters["nonfinite_steps"] += 1
                        self.counters["nonfinite_streak"] += 1
                    else:
                        self.counters["nonfinite_streak"] = 0
                        self.window["loss"] += sum(step_losses)
                        self.window["micro"] += len(step_losses)
                    step_losses, step_skipped, step_clips = [], 0, 0
                    self._step_rng = ckpt.capture_rng()  # ~0.2 ms; what an error checkpoint records
                    if step % log_every == 0 or step == self.total_steps:
                        now = time.perf_counter()
                        loss_value = self.window["loss"] / self.window["micro"] if self.window["micro"] else math.nan
                        if self.world > 1:
                            loss_value = float(
                                accelerator.reduce(torch.tensor(loss_value, device=accelerator.device), "mean")
                            )
                        clips_per_s = rate["clips"] / max(now - rate["t"], 1e-9)
                        self.last_loss = loss_value
                        self._log(
                            {
                                "step": step,
                                "epoch": epoch,
                                "loss": f"{loss_value:.6f}",
                                "lr": f"{rates[HEAD]:.6g}",
                                "backbone_lr": f"{rates[BACKBONE]:.6g}",
                                "clips_per_s": f"{clips_per_s:.2f}",
                                "elapsed_s": f"{now - start:.2f}",
                            }
                        )
                        train_info = f"loss {loss_value:.4f} · {clips_per_s:.1f} clips/s"
                        progress.update(bar, info=train_info + self._validation_info())
                        self.window = {"loss": 0.0, "micro": 0}
                        rate = {"clips": 0, "t": now}
                    progress.update(bar, completed=step)
                    streak = self.counters["nonfinite_streak"]
                    if max_bad and streak >= max_bad:
                        kept = (
                            f"{self.checkpoint_dir} holds step {self._checkpoint_step}, the last good state"
                            if self._checkpoint_step is not None
                            else "no checkpoint was written before"
                        )
                        # Some bf16 CPU kernels of torch 2.13 return NaN gradients (docs/training.md#precision).
                        bf16 = ", train in fp32 (run.precision=no)" if self.precision == "bf16" else ""
                        raise TrainingInterrupted(
                            f"training stopped at step {step}: the loss was not finite (NaN or inf) for {streak} "
                            f"consecutive steps (run.max_nonfinite_steps={max_bad}); those steps were skipped "
                            f"without updating the weights. {kept}; lower run.lr, set run.clip_grad{bf16} or check "
                            "the data, then continue with --resume"
                        )
                    if self.val_data is not None and eval_every_steps and step % eval_every_steps == 0:
                        # A point of the learning curve; early stopping and the best weights follow it too.
                        stopped_early = self._after_validation(self.validate())
                        progress.update(bar, info=train_info + self._validation_info())
                        self.ddp_model.train()
                        if stopped_early:
                            break
                    if (checkpoint_every and step % checkpoint_every == 0) or self._checkpoint_due:
                        self._checkpoint_when_good()
                    if stop_at is not None and step >= stop_at:
                        if self._checkpoint_step != step:
                            self.save_checkpoint()
                        return {"stopped_at": step}
                    stop = self._stop_requested()
                    if stop is not None:
                        if self._checkpoint_step != step:
                            self.save_checkpoint()
                        raise TrainingInterrupted(
                            f"training stopped by {stop} after step {step}: checkpoint {self.checkpoint_dir} holds "
                            f"it; continue with: videoadapt train --out {self.out} --resume"
                        )
                    if step >= self.total_steps:
                        break
                if self.position.batch >= batches_per_epoch or self.position.step >= self.total_steps:
                    finished_epoch = self.position.batch >= batches_per_epoch
                    validate = self.val_data is not None and (
                        (finished_epoch and eval_every > 0 and (epoch + 1) % eval_every == 0)
                        or self.position.step >= self.total_steps
                    )
                    if validate and not any(h["step"] == self.position.step for h in self.history):
                        stopped_early = self._after_validation(self.validate())
                        progress.update(bar, info=train_info + self._validation_info())
                        self.ddp_model.train()
                    if finished_epoch:
                        self.position = Position(self.position.step, epoch + 1, 0)
                    self._checkpoint_when_good()
                elif stopped_early:
                    self._checkpoint_when_good()  # a step validation stopped the run mid-epoch
            if self._checkpoint_due:
                self.save_checkpoint()  # the run is over: its final state, even in a run of skipped steps
        self._loader = None
        seconds = time.perf_counter() - start
        if self.val_data is None:
            self.save_weights()
        summary = {
            "task": str(run.task),
            "paradigm": str(self.config.model.preset or self.config.model.paradigm),
            "backbone": str(self.config.model.backbone),
            "steps": self.position.step,
            "total_steps": self.total_steps,
            "epochs": self.position.epoch,
            "world_size": self.world,
            "trainable_parameters": sum(p.numel() for _, p in self.model.trainable_parameters()),
            # The two learning-rate groups (videoadapt.train.optimizer): parameters and base rate of each.
            "param_groups": {
                role: {"parameters": self.group_sizes[role], "base_lr": self.base_lrs[role]} for role in ROLES
            },
            "precision": self.precision,
            "train": {
                "final_loss": self.last_loss,
                "seconds": seconds,
                "checkpoint_seconds": self.checkpoint_seconds,
                # Training steps only (validation and checkpoints excluded), over the whole run if it was resumed.
                "train_seconds": self.clock.seconds(),
                "clips_seen": self.counters["clips_seen"],
                "clips_per_s": clips_total / max(seconds, 1e-9),
                "skipped_clips": self.counters["skipped_clips"],
                "nonfinite_steps": self.counters["nonfinite_steps"],
                "skipped_items": self.train_data.extra.get("skipped_by_task", {}).get("count", 0),
            },
            # What each split left out before any batch (skip_bad), and the test split's unreadable videos.
            "data": self._data_counts(),
            "cache": {"used": self.use_cache, "videos_encoded": self.cache_extractions},
            "weights": "best" if self.val_data is not None else "last",
            "best": self.best,
            "validation": self.history,
            "stopped_early": stopped_early,
        }
        if accelerator.is_main_process:
            save_json(self.out / METRICS, summary)
        accelerator.wait_for_everyone()
        return summary


def train(
    config: Any,
    out: str | Path,
    *,
    resume: bool = False,
    ilfm: ImageLanguageModel | None = None,
    check_test_split: bool = False,
) -> dict[str, Any]:
    """Train ``config`` into the run folder ``out`` and return its metrics (also in ``out/metrics.json``).
    ``check_test_split``: open the test split's videos before training too (warned about and counted, not raised)."""
    trainer = Trainer(config, out, resume=resume, ilfm=ilfm, check_test_split=check_test_split)
    try:
        return trainer.fit()
    finally:
        if trainer.world > 1:
            # Tear down in order before the interpreter exits (every rank done, DDP wrapper and its reducer gone,
            # then the process group): left to destructors at exit, a finished rank can abort with "terminate
            # called without an active exception".
            trainer.accelerator.wait_for_everyone()
            trainer.accelerator.free_memory()
            trainer.ddp_model = None
            gc.collect()
            trainer.accelerator.end_training()


__all__: Sequence[str] = ("Trainer", "TrainingInterrupted", "train")
