"""A trained run, ready to answer on new videos: ``Predictor(run).predict("clip.mkv")``.

The run folder is read once (config, backbone, adapted encoder, head, weights); each call decodes the frames the
run's evaluation sampler picks, runs the model in eval mode, and answers in the run's own terms: class names with
probabilities, ranked texts, an answer, a caption, moments in seconds, boxes in pixels
(:meth:`~videoadapt.tasks.base.Task.describe`). Input: a video file (any container PyAV opens), a folder of them,
or frames already decoded (a uint8 ``[T,H,W,3]`` array). Never imports the training loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoadapt.data.formats.common import VIDEO_EXTENSIONS
from videoadapt.data.records import TaskData, VideoRef
from videoadapt.data.sampling import Sampler, sampler_from_spec
from videoadapt.data.transforms import decode_short_side
from videoadapt.data.video import VideoInfo, read_video
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.build import load_run
from videoadapt.model.config import sampler_specs
from videoadapt.tasks import Request

ARRAY_FPS = 8.0  # frame rate assumed for a frame array given without one (SynthWorld's)


@dataclass
class Clip:
    """The frames a run looks at: uint8 ``[T,H,W,3]``, their indices in the source video and its properties."""

    frames: np.ndarray
    indices: np.ndarray
    info: VideoInfo


class _ClipSource:
    """A video source holding one clip already decoded (so that the batch builder does not decode it again)."""

    def __init__(self, clip: Clip) -> None:
        self.clip = clip

    def frames(self, ref: VideoRef, sampler: Sampler | None = None) -> np.ndarray:
        return self.clip.frames


class Predictor:
    """Load the run folder ``run`` (``videoadapt train``'s output) and predict on new videos.

    ``device`` defaults to the GPU when there is one (and the run did not ask for the CPU); ``ilfm`` reuses a
    backbone already in memory instead of loading the run's."""

    def __init__(
        self, run: str | Path, *, device: str | torch.device | None = None, ilfm: ImageLanguageModel | None = None
    ) -> None:
        self.run = Path(run)
        loaded = load_run(self.run, ilfm)
        self.config, self.model = loaded.config, loaded.model
        self.task = self.model.task
        if device is None:
            device = "cuda" if torch.cuda.is_available() and not bool(self.config.run.cpu) else "cpu"
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        _, self.sampler_spec = sampler_specs(self.config)
        self.sampler = sampler_from_spec(self.sampler_spec)

    @property
    def spec(self) -> dict[str, Any]:
        """The trained head's description (class names, answer vocabulary, mode, ...)."""
        return self.model.head.spec

    @property
    def task_name(self) -> str:
        return str(self.config.run.task)

    # --- frames ---------------------------------------------------------------------------------------------------

    def sample(self, video: str | Path | np.ndarray, fps: float | None = None) -> Clip:
        """The frames of ``video`` the run's evaluation sampler picks (what :meth:`predict` looks at)."""
        if isinstance(video, np.ndarray):
            return self._sample_array(video, fps)
        path = Path(video)
        if not path.is_file():
            raise VideoadaptError(f"{path}: no such video file")
        # Shrunk while decoding to what the model's preprocessing needs: a 4K upload is never held at full size.
        clip = read_video(path, self.sampler, max_short_side=decode_short_side(self.model.encoder.ilfm.processor))
        if clip.frames.ndim != 4 or not len(clip.frames):
            raise VideoadaptError(f"{path}: decoded no frames")
        return Clip(clip.frames, clip.indices, clip.info)

    def _sample_array(self, frames: np.ndarray, fps: float | None) -> Clip:
        if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
            raise VideoadaptError(f"frames must be a uint8 array [T,H,W,3] with T >= 1, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise VideoadaptError(f"frames must be uint8 (0-255), got {frames.dtype}")
        rate = float(fps or ARRAY_FPS)
        indices = np.asarray(self.sampler.indices(len(frames), rate), dtype=np.int64)
        t, h, w = frames.shape[:3]
        info = VideoInfo("<array>", t, rate, t / rate, w, h, "raw")
        return Clip(np.ascontiguousarray(frames[indices]), indices, info)

    # --- predictions ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        video: str | Path | np.ndarray,
        *,
        texts: Sequence[str] = (),
        question: str | None = None,
        choices: Sequence[str] | None = None,
        top_k: int = 5,
        fps: float | None = None,
        clip: Clip | None = None,
    ) -> dict[str, Any]:
        """The run's answer on one video: ``{"video", "task", "frames" (sampled indices), "predictions": [...],
        "seconds"}``, one prediction per item (one, or one per query sentence for grounding). ``texts``: texts to
        rank (retrieval) or sentences to ground; ``question`` and ``choices``: QA; ``fps``: the frame rate of a
        frame array. ``clip``: frames already sampled by :meth:`sample` (not decoded again)."""
        start = time.perf_counter()
        name = "<array>" if isinstance(video, np.ndarray) else str(video)
        clip = clip if clip is not None else self.sample(video, fps)
        info = clip.info
        request = Request(
            texts=tuple(texts),
            question=question,
            choices=None if choices is None else tuple(choices),
            duration=float(info.duration),
            fps=float(info.fps),
            width=int(info.width),
            height=int(info.height),
        )
        ref = VideoRef(Path(name).name if not isinstance(video, np.ndarray) else name)
        items = self.task.user_items(ref, request, self.spec)
        data = TaskData(self.task_name, "predict", items, _ClipSource(clip), name)
        builder = BatchBuilder(data, self.task, self.model.encoder.ilfm.processor, self.sampler, train=False)
        batch = builder.build(range(len(items))).to(self.device)
        predictions = self.model.predict(batch)
        described = [self.task.describe(p, item, self.spec, top_k) for p, item in zip(predictions, items, strict=True)]
        return {
            "video": name,
            "task": self.task_name,
            "frames": [int(i) for i in clip.indices],
            "predictions": described,
            "seconds": round(time.perf_counter() - start, 3),
        }

    @torch.no_grad()
    def chat(
        self,
        video: str | Path | np.ndarray,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        fps: float | None = None,
        clip: Clip | None = None,
    ) -> dict[str, Any]:
        """Ask a run on a video MLLM (task head ``mllm``, any task) anything about one video: ``{"video", "task",
        "frames", "prompt", "answer", "frames_seen", "cut_at_length_bound", "seconds"}``. The run's prompt template
        and beam size apply; ``max_new_tokens`` defaults to the run's (and bounds the answer whatever the model
        does)."""
        from videoadapt.data.transforms import preprocess

        spec = self.spec
        if spec.get("head") != "mllm":
            raise VideoadaptError(
                f"{self.run}: a free prompt needs a run on a video MLLM with head 'mllm' (this {self.task_name} run "
                "answers in its own terms; drop --prompt)"
            )
        if not prompt.strip():
            raise VideoadaptError("give the prompt to answer (--prompt)")
        start = time.perf_counter()
        name = "<array>" if isinstance(video, np.ndarray) else str(video)
        clip = clip if clip is not None else self.sample(video, fps)
        frames = preprocess(clip.frames, self.model.encoder.ilfm.processor).unsqueeze(0).to(self.device)
        features = self.model.encoder(frames)
        bound = int(max_new_tokens if max_new_tokens is not None else spec["max_new_tokens"])
        seen = features.generative if spec.get("video", True) else features.generative.blind()
        out = seen.generate(prompt, bound, int(spec["beam_size"]), template=spec.get("template"))
        return {
            "video": name,
            "task": self.task_name,
            "frames": [int(i) for i in clip.indices],
            "prompt": prompt,
            "answer": out.texts[0],
            "frames_seen": out.frames_used,
            "cut_at_length_bound": bool(out.hit_length_bound[0]),
            "seconds": round(time.perf_counter() - start, 3),
        }

    def predict_many(self, videos: Iterable[str | Path], **request: Any) -> list[dict[str, Any]]:
        """:meth:`predict` on each video of ``videos`` (files, or folders whose video files are taken in name
        order). A video that cannot be read gives ``{"video", "error"}`` in its place and the others go on."""
        results = []
        prompt = request.pop("prompt", None)
        for path in video_files(videos):
            try:
                if prompt is not None:
                    results.append(self.chat(path, prompt, max_new_tokens=request.get("max_new_tokens")))
                    continue
                request.pop("max_new_tokens", None)
                results.append(self.predict(path, **request))
            except (VideoadaptError, OSError, ValueError) as error:
                results.append({"video": str(path), "error": str(error)})
        return results


def video_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the video files of folders (by extension, sorted by name); a missing path is an error
    naming it, and so is a folder without a video file."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not inside:
                known = ", ".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
                raise VideoadaptError(f"{path}: no video file in this folder (looked for {known})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise VideoadaptError(f"{path}: no such file or folder")
    return found
