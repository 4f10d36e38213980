"""Fuzzing the parsers of untrusted files with hypothesis: every annotation reader, the prediction-file parsers of
`videoadapt score`, and the video decoder.

The property is the same everywhere: a broken file gives a result that is valid, or the project's error type
naming the file — never another exception type, never a hang (each call runs under a wall-clock alarm).

Bounded for the normal suite: ``FUZZ_EXAMPLES`` examples per test (default 40), derandomised so that a run is
reproducible. ``VIDEOADAPT_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py`` runs a longer, random campaign.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bad_inputs
from videoadapt.commands.score import score_files
from videoadapt.data.encode import write_video
from videoadapt.data.formats import load_task_data
from videoadapt.data.records import TaskData
from videoadapt.data.sampling import UniformSegments
from videoadapt.data.synthworld.disk import load_split, write_synthworld
from videoadapt.data.synthworld.world import SynthWorldConfig
from videoadapt.data.video import read_video
from videoadapt.errors import InputFileError, VideoadaptError, VideoDecodeError

FORMATS = Path(__file__).parent / "fixtures" / "formats"
SCORING = Path(__file__).parent / "fixtures" / "scoring"
ASL = Path(__file__).parent / "fixtures" / "asl"

FUZZ_EXAMPLES = int(os.environ.get("VIDEOADAPT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # the alarm below bounds each call; hypothesis' deadline would flake on a loaded machine
    derandomize="VIDEOADAPT_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_SECONDS = 10  # generous for 2 loaded cores; a hang is minutes, not seconds


def alarm(seconds: int = CALL_SECONDS) -> AbstractContextManager[None]:
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds`` of wall-clock time."""
    return bad_inputs.alarm(seconds)


# --- mutations ------------------------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0, 1, 2, 5]),  # past float64, past int64, indices
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "..", "/etc/passwd", "../x.mp4", "a/../../b", "\x00", "video0", "eat", "0", "-1"]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
# Cell text with what breaks csv parsing and the readers: quotes, delimiters, NULs, path tricks, numbers.
cell_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(['"', '"a,b', "\t", "\x00", "nan", "inf", "-5", "1e400", "../../x", "/abs", "", "  "]),
)


def mutate_json(document: Any, data: st.DataObject) -> Any:
    """``document`` with one node, found by a random walk from the root, replaced, removed or retyped."""
    if not isinstance(document, (dict, list)) or not document or data.draw(st.integers(0, 4)) == 0:
        return data.draw(json_values)
    keys = list(document) if isinstance(document, dict) else list(range(len(document)))
    key = data.draw(st.sampled_from(keys))
    copy = dict(document) if isinstance(document, dict) else list(document)
    action = data.draw(st.sampled_from(["descend", "descend", "descend", "delete", "duplicate"]))
    if action == "delete":
        del copy[key]
    elif action == "duplicate" and isinstance(copy, list):
        copy.append(copy[key])
    else:
        copy[key] = mutate_json(copy[key], data)
    return copy


def mutate_lines(text: str, data: st.DataObject) -> str:
    """A csv or text file with one line changed: a cell replaced, the line cut, dropped or repeated."""
    lines = text.splitlines() or [""]
    index = data.draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    delimiter = "\t" if line.count("\t") > line.count(",") else "," if "," in line else " "
    action = data.draw(st.sampled_from(["cell", "cell", "cell", "cut", "drop", "repeat", "add cells"]))
    if action == "cell":
        cells = line.split(delimiter)
        cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(cell_text)
        lines[index] = delimiter.join(cells)
    elif action == "cut":
        lines[index] = line[: data.draw(st.integers(0, len(line)))]
    elif action == "drop":
        del lines[index]
    elif action == "repeat":
        lines.insert(index, line)
    else:
        lines[index] = line + delimiter + delimiter.join(data.draw(st.lists(cell_text, min_size=1, max_size=3)))
    return "\n".join(lines) + "\n"


def mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    """Random bytes, the file cut short, a few bytes or a run of them overwritten (often not UTF-8 afterwards).

    Positions come from a hypothesis-controlled ``Random``: uniform over the file, where drawn integers would
    crowd at its first bytes (hypothesis favours small numbers), i.e. in the header.
    """
    action = data.draw(st.sampled_from(["random", "truncate", "overwrite", "overwrite", "run"]))
    if action == "random" or not raw:
        return data.draw(st.binary(max_size=2048))
    rng = data.draw(st.randoms(use_true_random=False))
    if action == "truncate":
        return raw[: rng.randrange(len(raw))]
    out = bytearray(raw)
    if action == "run":
        start = rng.randrange(len(out))
        out[start : start + 64] = rng.randbytes(64)
        return bytes(out)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def mutate_file(path: Path, data: st.DataObject) -> None:
    """Rewrite ``path`` broken: structurally (JSON nodes, csv/text lines) most of the time, else byte-wise."""
    raw = path.read_bytes()
    kind = data.draw(st.sampled_from(["structure", "structure", "structure", "bytes"]))
    if kind == "bytes":
        path.write_bytes(mutate_bytes(raw, data))
    elif path.suffix == ".json":
        path.write_text(json.dumps(mutate_json(json.loads(raw), data)), encoding="utf-8")
    else:
        path.write_text(mutate_lines(raw.decode("utf-8"), data), encoding="utf-8")


# --- annotation readers ---------------------------------------------------------------------------------------

# (format, split, task, options, files to break). Together they reach every reader and every file it parses.
READERS = [
    ("kinetics", "val", "recognition", {}, ["train.csv", "val.csv"]),
    ("ssv2", "train", "recognition", {}, ["something-something-v2-labels.json", "something-something-v2-train.json"]),
    ("msrvtt", "train", "retrieval", {}, ["MSRVTT_data.json", "MSRVTT_train.9k.csv"]),
    ("msrvtt", "test", "retrieval", {}, ["MSRVTT_JSFUSION_test.csv"]),
    ("msrvtt", "val", "captioning", {}, ["MSRVTT_data.json"]),
    ("msrvtt_mc", "test", "qa", {}, ["MSR_MC_test.csv"]),
    ("msrvtt_qa", "test", "qa", {}, ["train_qa.json", "test_qa.json"]),
    ("msvd_qa", "train", "qa", {}, ["train_qa.json", "youtube_mapping.txt"]),
    ("nextqa", "train", "qa", {}, ["train.csv", "map_vid_vidorID.json"]),
    ("msvd", "train", "captioning", {}, ["AllVideoDescriptions.txt", "train_list.txt"]),
    ("msvd", "train", "retrieval", {"captions": "captions.json"}, ["captions.json"]),
]


def check_reader_outcome(folder: Path, call: Callable[[], TaskData]) -> None:
    """The property: valid TaskData whose files stay inside ``folder``, or a VideoadaptError naming a file there."""
    try:
        with alarm():
            data = call()
    except VideoadaptError as error:
        where = error.path if isinstance(error, InputFileError) else str(error)
        assert str(folder) in where, f"error does not name the data set's file: {error}"
        return
    assert isinstance(data, TaskData) and len(data.items) > 0
    base = folder.resolve()
    for item in data.items:
        if item.video.path is not None:
            assert Path(item.video.path).resolve().is_relative_to(base), f"escaped: {item.video.path}"


@pytest.mark.parametrize(("name", "split", "task", "options", "files"), READERS, ids=lambda v: str(v)[:30])
@FUZZ
@given(data=st.data())
def test_annotation_readers_survive_broken_files(name, split, task, options, files, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        shutil.copytree(FORMATS / name, folder)
        if "captions" in options:  # the json form of MSVD's captions
            (folder / "captions.json").write_text(json.dumps({"eat": ["a woman signs eat"], "milk": ["milk"]}))
            options = {"captions": str(folder / "captions.json")}
        mutate_file(folder / data.draw(st.sampled_from(files)), data)
        skip_bad = data.draw(st.booleans())
        check_reader_outcome(
            folder, lambda: load_task_data(f"{name}:{folder}", split, task, skip_bad=skip_bad, **options)
        )


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth-fuzz")
    write_synthworld(root, SynthWorldConfig(seed=1, size=32, frames=8), 5)
    return root


@FUZZ
@given(data=st.data())
def test_synthworld_reader_and_load_split_survive_broken_annotations(synth_set: Path, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sw"
        shutil.copytree(synth_set, root)
        mutate_file(root / "annotations" / "train.json", data)
        task = data.draw(st.sampled_from(["recognition", "retrieval", "captioning", "qa"]))
        skip_bad = data.draw(st.booleans())
        check_reader_outcome(root, lambda: load_task_data(f"synth:{root}", "train", task, skip_bad=skip_bad))
        try:
            with alarm():
                videos = list(load_split(root, "train"))
        except VideoadaptError as error:
            assert str(root) in (error.path if isinstance(error, InputFileError) else str(error))
        else:
            assert all(v.frames.dtype == np.uint8 and v.frames.ndim == 4 for v in videos)


# --- prediction files of `videoadapt score` -------------------------------------------------------------------


def checked_caption_metrics(predictions: Any, references: Any, **_: Any) -> dict[str, float]:
    """Stands in for the Java captioning metrics (seconds per call): the parser is what is fuzzed here, so this
    checks what the parser hands on instead of scoring it."""
    assert predictions and set(predictions) == set(references)
    assert all(isinstance(p, str) for p in predictions.values())
    assert all(r and all(isinstance(x, str) for x in r) for r in references.values())
    return {"CIDEr": 0.0}


@pytest.mark.parametrize("task", ["recognition", "retrieval", "qa_choice", "qa_open", "captioning"])
@FUZZ
@given(data=st.data())
def test_score_parsers_survive_broken_prediction_files(task: str, data) -> None:
    from videoadapt.metrics import captioning

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(captioning, "caption_metrics", checked_caption_metrics)
        folder = Path(tmp)
        for path in SCORING.glob(f"{task}_*"):
            shutil.copy(path, folder / path.name)
        pred, gt = folder / f"{task}_pred.json", folder / f"{task}_gt.json"
        mutate_file(data.draw(st.sampled_from([pred, pred, pred, gt])), data)
        skip_bad = data.draw(st.booleans())
        try:
            with alarm():
                result = score_files(task.split("_")[0], pred, gt, skip_bad=skip_bad)
        except VideoadaptError as error:
            named = error.path if isinstance(error, InputFileError) else str(error)
            assert str(folder) in named, f"error does not name a file: {error}"
            return
        json.dumps(result)  # the command prints it: it must be JSON-serialisable
        assert all(isinstance(v, (int, float)) for v in result["metrics"].values())
        assert result["skipped"] == 0 or skip_bad


# --- the video decoder ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bytes of a real camera clip (Matroska, H.264) and of a small lossy MP4 written here."""
    folder = tmp_path_factory.mktemp("videos")
    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 48, 3), dtype=np.uint8)
    write_video(folder / "small.mp4", frames, 10, lossless=False)
    return {".mkv": (ASL / "eat.mkv").read_bytes(), ".mp4": (folder / "small.mp4").read_bytes()}


@FUZZ
@given(data=st.data())
def test_decoder_gives_frames_or_a_decode_error(real_videos: dict[str, bytes], data) -> None:
    suffix = data.draw(st.sampled_from(sorted(real_videos)))
    raw = mutate_bytes(real_videos[suffix], data)
    sampler = data.draw(st.sampled_from([None, UniformSegments(4)]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip{suffix}"
        path.write_bytes(raw)
        try:
            with alarm():
                clip = read_video(path, sampler, max_seconds=5.0)
        except VideoDecodeError as error:
            assert error.path == str(path) and error.reason
            return
        assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and clip.frames.shape[-1] == 3
        assert clip.frames.shape[1:3] == (clip.info.height, clip.info.width)
        assert len(clip.frames) == (clip.info.frames if sampler is None else 4)
