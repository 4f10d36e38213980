"""Builders of the bad-input corpus (tests/test_bad_input_corpus.py): broken files made in a temporary folder, and
a wall-clock alarm so that a hang fails a test instead of stopping the suite.

Every builder takes the folder to build in and returns what the test runs: for videos the file itself, for
annotation files and score inputs a ``run(skip_bad) -> (skipped count, skip reasons as one string)`` that raises
without ``skip_bad``.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np

from videoadapt.data.encode import write_video

FORMATS = Path(__file__).parent / "fixtures" / "formats"
SCORING = Path(__file__).parent / "fixtures" / "scoring"
ASL = Path(__file__).parent / "fixtures" / "asl"

Run = Callable[[bool], tuple[int, str]]


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the body after ``seconds`` of wall-clock time (SIGALRM: Unix, main thread)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- videos -----------------------------------------------------------------------------------------------------


def frames(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def moving_bar(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Compressible frames (a bar moving over flat colour): small packets, so a cut falls between frames."""
    out = np.zeros((count, height, width, 3), np.uint8)
    t = np.arange(count)
    out[..., 0] = (t * 3 % 256)[:, None, None]
    out[..., 1] = (t * 7 % 256)[:, None, None]
    out[t, (t // 2) % height, :, 2] = 255
    return out


def truncated_mp4(folder: Path) -> Path:
    """Cut in half; the index (moov) is written last, so it is gone."""
    write_video(folder / "whole.mp4", frames(30), 10)
    data = (folder / "whole.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return folder / "truncated.mp4"


def truncated_indexed_mp4(folder: Path) -> Path:
    """Cut at 60% with the index first (faststart): the container still declares every frame."""
    path = folder / "indexed.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264rgb", rate=30)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "rgb24"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in moving_bar(60, 48, 64):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    return folder / "cut.mp4"


def text_as_mp4(folder: Path) -> Path:
    (folder / "notes.mp4").write_text("this is not a video\n" * 20)
    return folder / "notes.mp4"


def png_as_mp4(folder: Path) -> Path:
    with av.open(str(folder / "still.png"), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(frames(1)[0], format="rgb24")), *stream.encode()]:
            container.mux(packet)
    (folder / "still.png").rename(folder / "photo.mp4")
    return folder / "photo.mp4"


def mkv_as_mp4(folder: Path) -> Path:
    shutil.copy(ASL / "eat.mkv", folder / "eat.mp4")
    return folder / "eat.mp4"


def avi_as_mkv(folder: Path) -> Path:
    write_video(folder / "clip.avi", frames(6), 10)
    (folder / "clip.avi").rename(folder / "clip.mkv")
    return folder / "clip.mkv"


def zero_frame_y4m(folder: Path) -> Path:
    (folder / "zero.y4m").write_bytes(b"YUV4MPEG2 W48 H32 F30:1 Ip A1:1 C420jpeg\n")
    return folder / "zero.y4m"


def zero_frame_mp4(folder: Path) -> Path:
    with av.open(str(folder / "empty.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = 64
        container.start_encoding()
    return folder / "empty.mp4"


def one_frame_mp4(folder: Path) -> Path:
    write_video(folder / "one.mp4", frames(1), 25)
    return folder / "one.mp4"


def huge_declared_size(folder: Path) -> Path:
    (folder / "huge.y4m").write_bytes(b"YUV4MPEG2 W16000 H16000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    return folder / "huge.y4m"


def absurd_declared_size(folder: Path) -> Path:
    (folder / "absurd.y4m").write_bytes(b"YUV4MPEG2 W100000 H100000 F30:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    return folder / "absurd.y4m"


# --- annotation files ------------------------------------------------------------------------------------------


def copy_format(name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copytree(FORMATS / name, target)
    return target


def reader(
    name: str, split: str, task: str, edit: Callable[[Path], None], **options: Any
) -> Callable[[Path], tuple[Run, Path]]:
    """A builder: copy format ``name``'s fixture, break it with ``edit(folder)``, and load it."""

    def build(folder: Path) -> tuple[Run, Path]:
        from videoadapt.data.formats import load_task_data

        root = copy_format(name, folder) if name != "synthworld" else synth_copy(folder)
        edit(root)

        def run(skip_bad: bool) -> tuple[int, str]:
            data = load_task_data(f"{name}:{root}", split, task, skip_bad=skip_bad, **options)
            return data.extra["skipped"]["count"], " | ".join(data.extra["skipped"]["reasons"])

        return run, root

    return build


SYNTH_SOURCE: Path | None = None


def synth_copy(folder: Path) -> Path:
    """A copy of a small SynthWorld set (5 videos, 32x32, 8 frames; written once per session)."""
    global SYNTH_SOURCE
    from videoadapt.data.synthworld.disk import write_synthworld
    from videoadapt.data.synthworld.world import SynthWorldConfig

    if SYNTH_SOURCE is None or not SYNTH_SOURCE.is_dir():
        import tempfile

        SYNTH_SOURCE = Path(tempfile.mkdtemp(prefix="synth-corpus-"))
        write_synthworld(SYNTH_SOURCE, SynthWorldConfig(seed=2, size=32, frames=8), 5)
    target = folder / "synthworld"
    shutil.copytree(SYNTH_SOURCE, target)
    return target


def write_bytes(relative: str, data: bytes) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / relative).write_bytes(data)

    return edit


def non_utf8(relative: str) -> Callable[[Path], None]:
    """The file with a Latin-1 byte in it: valid text in another encoding, not UTF-8."""

    def edit(root: Path) -> None:
        path = root / relative
        text = path.read_bytes()
        path.write_bytes(text[:10] + b"caf\xe9" + text[10:])

    return edit


def malformed_json(relative: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        path.write_bytes(path.read_bytes()[:-7])  # cut inside the last object

    return edit


def edit_json(relative: str, change: Callable[[Any], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))

    return edit


def append_line(relative: str, line: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        path.write_text(path.read_text().rstrip("\n") + "\n" + line + "\n")

    return edit


def replace_text(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    return edit


def synth_video(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Change the first train video's annotation of a SynthWorld copy."""
    return edit_json("annotations/train.json", lambda document: change(document["videos"][0]))


def set_box(box: list[float]) -> Callable[[dict[str, Any]], None]:
    def change(video: dict[str, Any]) -> None:
        boxes = video["tracks"][0]["boxes"]
        frame = next(i for i, b in enumerate(boxes) if b is not None)
        boxes[frame] = box

    return change


def set_event(**values: float) -> Callable[[dict[str, Any]], None]:
    def change(video: dict[str, Any]) -> None:
        video["events"][0].update(values)

    return change


def symlink_out(root: Path) -> None:
    """The first train video replaced by a symlink to a file outside the data set."""
    outside = root.parent / "outside.mp4"
    video = root / "videos" / "train" / "train_000000.mp4"
    shutil.copy(video, outside)
    video.unlink()
    video.symlink_to(outside)


# --- score inputs ----------------------------------------------------------------------------------------------


def scoring(task: str, edit: Callable[[Path, Path], None]) -> Callable[[Path], tuple[Run, Path]]:
    """A builder: the scoring fixtures of ``task`` copied, broken with ``edit(pred, gt)``, then scored."""

    def build(folder: Path) -> tuple[Run, Path]:
        from videoadapt.commands.score import score_files

        for path in SCORING.glob(f"{task}_*"):
            shutil.copy(path, folder / path.name)
        pred, gt = folder / f"{task}_pred.json", folder / f"{task}_gt.json"
        edit(pred, gt)

        def run(skip_bad: bool) -> tuple[int, str]:
            result = score_files(task.split("_")[0], pred, gt, skip_bad=skip_bad)
            examples = " | ".join(f"{s['item']}: {s['reason']}" for s in result["skipped_examples"])
            return result["skipped"], examples

        return run, folder

    return build


def unknown_prediction_ids(pred: Path, gt: Path) -> None:
    document = json.loads(pred.read_text())
    document["scores"]["vid_zz"] = [0.0, 1.0, 0.0]
    pred.write_text(json.dumps(document))


def prediction_bytes(data: bytes) -> Callable[[Path, Path], None]:
    def edit(pred: Path, gt: Path) -> None:
        pred.write_bytes(data)

    return edit
