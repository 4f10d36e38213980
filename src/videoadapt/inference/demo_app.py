"""The page behind `videoadapt demo`: a trained run answers on an uploaded video or a SynthWorld sample.

``build_app(predictor)`` returns a Gradio ``Blocks`` (not served, so a test can launch it where it wants). The page
shows the run (task, backbone, paradigm), asks only for what the run's task uses (texts to rank or to ground, a
question and its choices), and answers in the task's terms: top-k bars (recognition), a ranking table
(retrieval), the answer (QA), the caption, moments or a span with boxes (grounding), and the frames the run looked
at (``Predictor.sample``, the same frames ``Predictor.predict`` scores). A file that is not a readable video gives a
message naming it in the status box, never a stack trace. Gradio is imported only here and only when the page is
built: it is the optional extra ``videoadapt[demo]``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.errors import VideoadaptError
from videoadapt.inference.predictor import ARRAY_FPS, Predictor

INSTALL = "pip install 'videoadapt[demo]'"
TEXT_TASKS = ("retrieval", "temporal_grounding", "st_grounding")  # tasks that take texts (to rank or to ground)
TOP_K_TASKS = ("recognition", "temporal_grounding")  # tasks whose answer is a top-k list
BOX_COLOUR = np.array([255, 64, 64], np.uint8)


def import_gradio() -> Any:
    """Gradio, or a one-line error that says how to install it."""
    try:
        import gradio
    except ImportError:
        raise VideoadaptError(f"the demo needs Gradio, which is not installed: {INSTALL}") from None
    return gradio


@dataclass
class Sample:
    """A SynthWorld test clip written to an mp4, with inputs that fit it (its captions, question, queries)."""

    name: str
    path: Path
    texts: list[str] = field(default_factory=list)
    question: str = ""
    choices: list[str] = field(default_factory=list)


def synth_samples(predictor: Predictor, folder: str | Path, count: int = 4) -> list[Sample]:
    """The first ``count`` videos of a SynthWorld test split as H.264 mp4 files in ``folder``: the run's own
    SynthWorld when it was trained on one (its class names then mean something), else a small default world."""
    from videoadapt.data.encode import write_video
    from videoadapt.data.formats import load_task_data
    from videoadapt.model.data import load_split

    config, task = predictor.config, predictor.task_name
    if str(config.data.source).startswith("synth"):
        data = load_split(config, "test")
    else:
        data = load_task_data("synth", "test", task, videos=40, size=64, frames=16)
    fps = float(getattr(getattr(data.source, "config", None), "fps", ARRAY_FPS))
    by_video: dict[str, list[Any]] = {}
    for item in data.items:
        if not getattr(item, "time_reversed", False):
            by_video.setdefault(item.video.video_id, []).append(item)
    captions = [c for items in by_video.values() for c in getattr(items[0], "captions", ())[:1]]
    folder = Path(folder)
    samples = []
    for video_id, items in list(by_video.items())[:count]:
        first = items[0]
        path = folder / f"{video_id}.mp4"
        if not path.is_file():
            frames = data.source.frames(first.video, None)
            write_video(path, _even(frames), fps, lossless=False)  # yuv420p H.264: plays in a browser
        sample = Sample(f"SynthWorld {video_id}", path)
        if hasattr(first, "label") and data.classes:
            sample.name += f" ({data.classes[first.label]})"
        if hasattr(first, "captions"):
            sample.texts = captions[:count]  # its own caption among the others': a ranking to check by eye
        if hasattr(first, "query"):
            sample.texts = [item.query for item in items]
        if hasattr(first, "question"):
            sample.question, sample.choices = first.question, list(first.candidates or ())
        samples.append(sample)
    return samples


def _even(frames: np.ndarray) -> np.ndarray:
    """Frames cropped to even sides (yuv420p needs them)."""
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    return np.ascontiguousarray(frames[:, :h, :w])


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def answer(
    predictor: Predictor, video: str | None, texts: str = "", question: str = "", choices: str = "", top_k: int = 5
) -> dict[str, Any]:
    """Everything the page shows for one request: ``status`` (Markdown), ``result`` (Predictor.predict's output,
    or None after an error) and ``frames`` (the sampled frames, with the predicted boxes drawn on them, each with a
    caption). Errors become a status naming the file and the reason."""
    if not video:
        return {"status": "Upload a video or pick a SynthWorld sample first.", "result": None, "frames": []}
    path = Path(video)
    name = path.name
    task = predictor.task_name
    try:
        clip = predictor.sample(path)
        result = predictor.predict(
            path,
            clip=clip,
            texts=_lines(texts) if task in TEXT_TASKS else (),
            question=(question or "").strip() or None if task == "qa" else None,
            choices=(_lines(choices) or None) if task == "qa" else None,
            top_k=int(top_k),
        )
    except VideoadaptError as error:
        reason = str(error).replace(str(path), name)
        if reason.startswith(f"{name}: "):
            reason = reason[len(name) + 2 :]
        return {"status": f"**Could not use `{name}`**: {reason}", "result": None, "frames": []}
    result["video"] = name
    frames = _with_boxes(clip.frames, clip.indices, result["predictions"])
    gallery = [(frame, f"frame {int(i)}") for frame, i in zip(frames, clip.indices, strict=True)]
    seconds = result["seconds"]
    status = f"`{name}`: {clip.info.width}x{clip.info.height}, {clip.info.duration:.2f} s; answered in {seconds:.2f} s"
    return {"status": status, "result": result, "frames": gallery}


def _with_boxes(frames: np.ndarray, indices: np.ndarray, predictions: list[dict[str, Any]]) -> np.ndarray:
    """The frames with each predicted box (spatio-temporal grounding) drawn as a two-pixel outline."""
    boxes = [p["boxes_xyxy"] for p in predictions if "boxes_xyxy" in p]
    if not boxes:
        return frames
    frames = frames.copy()
    height, width = frames.shape[1:3]
    for row, index in enumerate(indices):
        for per_frame in boxes:
            box = per_frame.get(int(index), per_frame.get(str(int(index))))
            if box is None:
                continue
            x1, y1 = (int(np.clip(v, 0, s - 1)) for v, s in zip(box[:2], (width, height), strict=True))
            x2, y2 = (int(np.clip(np.ceil(v), 1, s)) for v, s in zip(box[2:], (width, height), strict=True))
            for y in (slice(y1, min(y1 + 2, y2)), slice(max(y2 - 2, y1), y2)):
                frames[row, y, x1:x2] = BOX_COLOUR
            for x in (slice(x1, min(x1 + 2, x2)), slice(max(x2 - 2, x1), x2)):
                frames[row, y1:y2, x] = BOX_COLOUR
    return frames


def outputs(task: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """The values of the page's answer components for ``result``: ``label`` (gr.Label's {class: probability}),
    ``table`` (rows), ``text`` (the answer or caption)."""
    out: dict[str, Any] = {"label": None, "table": [], "text": ""}
    if result is None:
        return out
    predictions = result["predictions"]
    if task == "recognition":
        out["label"] = {p["label"]: p["probability"] for p in predictions[0]["top_k"]}
    elif task == "retrieval":
        out["table"] = [[t["text"], round(t["similarity"], 4)] for t in predictions[0]["texts"]]
    elif task == "qa":
        out["text"] = predictions[0]["answer"]
    elif task == "captioning":
        out["text"] = predictions[0]["caption"]
    elif task == "temporal_grounding":
        out["table"] = [
            [p["query"], round(m["start_s"], 2), round(m["end_s"], 2), round(m["score"], 4)]
            for p in predictions
            for m in p["moments"]
        ]
    elif task == "st_grounding":
        out["table"] = [
            [p["query"], round(p["start_s"], 2), round(p["end_s"], 2), len(p["boxes_xyxy"])] for p in predictions
        ]
    return out


TABLE_HEADERS = {
    "retrieval": ["text", "similarity"],
    "temporal_grounding": ["query", "start (s)", "end (s)", "score"],
    "st_grounding": ["query", "start (s)", "end (s)", "frames with a box"],
}


def build_app(
    predictor: Predictor, samples: list[Sample] | None = None, sample_folder: str | Path | None = None
) -> Any:
    """The demo page for ``predictor``'s run, a ``gr.Blocks`` to ``launch()``. ``samples``: the SynthWorld clips
    offered (default: :func:`synth_samples` written to ``sample_folder``, a new temporary folder if None)."""
    gr = import_gradio()
    task = predictor.task_name
    if samples is None:
        folder = Path(sample_folder or tempfile.mkdtemp(prefix="videoadapt-demo-"))
        samples = synth_samples(predictor, folder)
    if samples:
        gr.set_static_paths(paths=sorted({str(s.path.parent) for s in samples}))  # the page may serve them
    by_name = {s.name: s for s in samples}
    config = predictor.config
    header = (
        f"# videoadapt demo\n**task** `{task}` · **backbone** `{config.model.backbone}` · "
        f"**paradigm** `{config.model.paradigm}` · **run** `{predictor.run}`"
    )
    spec = predictor.spec
    if task == "recognition" and spec.get("classes"):
        header += f"\n\n{len(spec['classes'])} classes"
    if task == "qa":
        header += f"\n\nQA mode: {spec.get('mode', '?')}"

    with gr.Blocks(title="videoadapt demo") as app:
        gr.Markdown(header, elem_id="run-info")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                sample = gr.Dropdown(
                    choices=list(by_name), value=None, label="or a SynthWorld sample", elem_id="sample"
                )
                texts = gr.Textbox(
                    label="Texts to rank, one a line" if task == "retrieval" else "Sentences to locate, one a line",
                    lines=4,
                    visible=task in TEXT_TASKS,
                    elem_id="texts",
                )
                question = gr.Textbox(label="Question", visible=task == "qa", elem_id="question")
                choices = gr.Textbox(
                    label="Choices, one a line (empty: open answer)"
                    if spec.get("mode") != "multiple_choice"
                    else "Choices, one a line",
                    lines=5,
                    visible=task == "qa",
                    elem_id="choices",
                )
                top_k = gr.Slider(1, 10, value=5, step=1, label="Top k", visible=task in TOP_K_TASKS, elem_id="top-k")
                button = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column():
                status = gr.Markdown("Upload a video or pick a SynthWorld sample, then Predict.", elem_id="status")
                label = gr.Label(label="Top classes", visible=task == "recognition", elem_id="top-classes")
                table = gr.Dataframe(
                    headers=TABLE_HEADERS.get(task, ["value"]),
                    label="Ranking" if task == "retrieval" else "Moments",
                    visible=task in TABLE_HEADERS,
                    interactive=False,
                    elem_id="table",
                )
                text = gr.Textbox(
                    label="Answer" if task == "qa" else "Caption",
                    visible=task in ("qa", "captioning"),
                    interactive=False,
                    elem_id="answer",
                )
                gallery = gr.Gallery(label="Frames the run looked at", columns=4, height="auto", elem_id="frames")
                with gr.Accordion("Raw prediction (JSON)", open=False):
                    raw = gr.JSON(elem_id="raw")

        def pick(name: str | None) -> tuple[Any, ...]:
            chosen = by_name.get(name or "")
            if chosen is None:
                return gr.update(), gr.update(), gr.update(), gr.update()
            return str(chosen.path), "\n".join(chosen.texts), chosen.question, "\n".join(chosen.choices)

        def run(video_path: str | None, texts_: str, question_: str, choices_: str, k: float) -> tuple[Any, ...]:
            got = answer(predictor, video_path, texts_, question_, choices_, int(k))
            shown = outputs(task, got["result"])
            return got["status"], shown["label"], shown["table"], shown["text"], got["frames"], got["result"]

        sample.change(pick, inputs=sample, outputs=[video, texts, question, choices])
        button.click(
            run,
            inputs=[video, texts, question, choices, top_k],
            outputs=[status, label, table, text, gallery, raw],
        )
    return app
