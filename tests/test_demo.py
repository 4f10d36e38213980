"""`videoadapt demo` (issue 16, item 6): the Gradio page, driven in a real headless Chromium through Playwright.

A tiny recognition run and a tiny retrieval run are trained (seconds), their pages are launched on free local ports
(``prevent_thread_lock``), and the browser uploads an ASL clip or picks a SynthWorld sample, clicks Predict and
reads the answer off the page, which must equal ``Predictor.predict`` on the same file. A file that is not a video
must give a message naming it. Without Gradio, Playwright or Chromium the browser tests skip with the install line.

``VIDEOADAPT_DEMO_SCREENSHOT=docs/img/demo.png`` saves a screenshot of the page answering on the first SynthWorld
sample (docs/predict.md), for the run ``VIDEOADAPT_DEMO_RUN`` (default: the tiny recognition run).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from test_trainer import TINY
from videoadapt.cli import main
from videoadapt.errors import VideoadaptError
from videoadapt.inference import demo_app
from videoadapt.inference.predictor import Predictor

ASL = Path(__file__).resolve().parent / "fixtures" / "asl"
CLIP = ASL / "eat.mkv"
INSTALL = "apt-get install -y chromium && pip install 'videoadapt[demo]' playwright"
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
TIMEOUT_MS = 30_000

# Gradio's own queue trips pandas 3's deprecations; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
needs_gradio = pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason=f"no gradio: {INSTALL}")


def _train(root: Path, task: str) -> Path:
    run = root / task
    assert main(["train", "--task", task, "--out", str(run), *TINY, "run.max_steps=2"]) == 0
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {task: _train(root, task) for task in ("recognition", "retrieval")}


@pytest.fixture(scope="module")
def predictors(runs):
    return {task: Predictor(run, device="cpu") for task, run in runs.items()}


# --- without a browser ---------------------------------------------------------------------------------------------


def test_a_missing_gradio_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    with pytest.raises(VideoadaptError, match=r"pip install 'videoadapt\[demo\]'"):
        demo_app.import_gradio()


def test_answers_name_the_file_that_is_not_a_video(predictors, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    got = demo_app.answer(predictors["recognition"], str(notes))
    assert got["result"] is None and got["frames"] == []
    assert "`notes.txt`" in got["status"] and "Invalid data" in got["status"] and str(tmp_path) not in got["status"]
    assert "Upload a video" in demo_app.answer(predictors["recognition"], None)["status"]
    # A retrieval run without texts: the task's own message, not a stack trace.
    assert "give the texts" in demo_app.answer(predictors["retrieval"], str(CLIP))["status"]


def test_answer_shows_the_frames_predict_scored(predictors):
    predictor = predictors["recognition"]
    got = demo_app.answer(predictor, str(CLIP), top_k=3)
    expected = predictor.predict(CLIP, top_k=3)
    assert got["result"]["predictions"] == expected["predictions"]
    assert [caption for _, caption in got["frames"]] == [f"frame {i}" for i in expected["frames"]]
    assert all(frame.shape == (480, 640, 3) for frame, _ in got["frames"])
    shown = demo_app.outputs("recognition", got["result"])
    assert list(shown["label"]) == [p["label"] for p in expected["predictions"][0]["top_k"]]


def test_boxes_are_drawn_on_the_frames_that_have_one():
    frames = np.zeros((2, 20, 30, 3), np.uint8)
    drawn = demo_app._with_boxes(frames, np.array([3, 7]), [{"boxes_xyxy": {7: [5.0, 4.0, 15.0, 12.0]}}])
    assert not drawn[0].any() and (drawn[1, 4, 5:15] == demo_app.BOX_COLOUR).all()
    assert not drawn[1, 8, 8].any()  # an outline, not a filled box
    assert not frames.any()  # the input is left alone


def test_synth_samples_are_playable_mp4s_with_fitting_inputs(predictors, tmp_path):
    samples = demo_app.synth_samples(predictors["retrieval"], tmp_path, count=3)
    assert len(samples) == 3 and all(s.path.suffix == ".mp4" and s.path.is_file() for s in samples)
    assert len(samples[0].texts) == 3  # one caption per sample: the sample's own among the others
    result = predictors["retrieval"].predict(samples[0].path, texts=samples[0].texts)
    assert sorted(t["text"] for t in result["predictions"][0]["texts"]) == sorted(samples[0].texts)
    # A recognition sample says its class; written once, reused after.
    named = demo_app.synth_samples(predictors["recognition"], tmp_path / "rec", count=2)
    assert all("(" in s.name for s in named)
    before = named[0].path.stat().st_mtime_ns
    assert (
        demo_app.synth_samples(predictors["recognition"], tmp_path / "rec", count=2)[0].path.stat().st_mtime_ns
        == before
    )


@needs_gradio
def test_build_app_hides_what_the_task_does_not_use(predictors, tmp_path):
    app = demo_app.build_app(predictors["recognition"], samples=[])
    config = app.get_config_file()
    visible = {c["props"].get("elem_id"): c["props"].get("visible", True) for c in config["components"] if "props" in c}
    assert visible["top-classes"] and visible["top-k"]
    assert not visible["texts"] and not visible["question"] and not visible["table"] and not visible["answer"]
    header = next(c["props"]["value"] for c in config["components"] if c["props"].get("elem_id") == "run-info")
    assert "recognition" in header and "clip-tiny" in header and "post_network" in header


def test_demo_command_is_registered():
    from videoadapt.cli import build_parser

    args = build_parser().parse_args(["demo", "--run", "RUN", "--port", "7999"])
    assert args.command == "demo" and args.port == 7999 and args.host == "127.0.0.1"


# --- in a browser --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("playwright") is None:
        pytest.skip(f"the browser test needs gradio and playwright: {INSTALL}")
    if CHROMIUM is None:
        pytest.skip(f"the browser test needs Chromium: {INSTALL}")
    from playwright.sync_api import sync_playwright

    # Debian's Chromium, not Playwright's own download (which needs the network).
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(predictors, tmp_path_factory):
    """Each run's page, launched on a free local port; closed at the end."""
    apps, urls = [], {}
    try:
        for task, predictor in predictors.items():
            folder = tmp_path_factory.mktemp(f"samples-{task}")
            app = demo_app.build_app(predictor, sample_folder=folder)
            port = _free_port()
            app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            apps.append(app)
            urls[task] = f"http://127.0.0.1:{port}/"
            urls[f"{task}-samples"] = folder
        yield urls
    finally:
        for app in apps:
            app.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#predict")
    return page


def _upload(page, path: Path) -> None:
    page.set_input_files("#video input[type=file]", str(path))
    page.wait_for_selector("#video video")  # the upload reached the server and the player shows it


def _predict(page, name: str) -> str:
    page.click("#predict")
    page.wait_for_function(
        "name => document.querySelector('#status').innerText.includes(name)", arg=name, timeout=TIMEOUT_MS
    )
    return page.inner_text("#status")


def test_browser_recognition_shows_the_predictors_top_k(browser, served, predictors, tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    page = _open(browser, served["recognition"])
    assert "recognition" in page.inner_text("#run-info")
    assert not page.is_visible("#texts") and not page.is_visible("#question")
    _upload(page, CLIP)
    status = _predict(page, CLIP.name)
    assert "640x480" in status
    page.wait_for_selector("#top-classes dt")
    labels = page.locator("#top-classes dt").all_inner_texts()
    values = [float(v) for v in page.locator("#top-classes meter").evaluate_all("ms => ms.map(m => m.value)")]
    expected = predictors["recognition"].predict(CLIP)["predictions"][0]["top_k"]
    assert labels == [p["label"] for p in expected]
    assert set(labels) <= set(predictors["recognition"].spec["classes"])
    assert values == pytest.approx([p["probability"] for p in expected], abs=1e-6)
    assert page.locator("#frames img").count() == 4  # data.frames=4: the frames it sampled

    # A file named like a video that is not one: the page names it and says why, and no stale answer stays.
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    page.click("#video button[aria-label='Clear']")
    page.set_input_files("#video input[type=file]", str(broken))
    page.wait_for_selector("#video video", state="attached")
    status = _predict(page, "broken.mp4")
    assert "Could not use" in status and "Invalid data" in status and "Traceback" not in page.content()
    assert page.locator("#top-classes dt").count() == 0
    # Not even named like a video: Gradio's upload refuses it, naming the file.
    page.click("#video button[aria-label='Clear']")
    page.set_input_files("#video input[type=file]", str(tmp_path / "notes.txt"))
    page.get_by_text("Invalid file type: notes.txt").wait_for()
    page.close()


def test_browser_retrieval_sample_ranks_its_texts(browser, served, predictors):
    page = _open(browser, served["retrieval"])
    assert page.is_visible("#texts") and not page.is_visible("#top-classes")
    page.click("#sample input")
    page.locator("[role=option]").first.click()
    page.wait_for_selector("#video video")
    page.wait_for_function("() => document.querySelector('#texts textarea').value.length > 0")
    texts = page.input_value("#texts textarea").splitlines()
    name = page.input_value("#sample input")
    video_id = name.split()[1]
    status = _predict(page, f"{video_id}.mp4")
    shown = page.locator("#table [role=gridcell][data-col='0']").all_inner_texts()
    similarities = [float(v) for v in page.locator("#table [role=gridcell][data-col='1']").all_inner_texts()]
    samples = demo_app.synth_samples(predictors["retrieval"], served["retrieval-samples"])
    sample = next(s for s in samples if s.name == name)
    expected = predictors["retrieval"].predict(sample.path, texts=texts)["predictions"][0]["texts"]
    assert [t.strip() for t in shown] == [t["text"] for t in expected], status
    assert similarities == pytest.approx([t["similarity"] for t in expected], abs=1e-4)
    page.close()


@pytest.mark.skipif(not os.environ.get("VIDEOADAPT_DEMO_SCREENSHOT"), reason="VIDEOADAPT_DEMO_SCREENSHOT=PNG not set")
def test_screenshot_for_the_docs(browser, runs, tmp_path):
    run = os.environ.get("VIDEOADAPT_DEMO_RUN") or runs["recognition"]
    app = demo_app.build_app(Predictor(run, device="cpu"), sample_folder=tmp_path)
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        page = _open(browser, f"http://127.0.0.1:{port}/")
        page.click("#sample input")
        page.locator("[role=option]").first.click()
        page.wait_for_selector("#video video")
        _predict(page, page.input_value("#sample input").split()[1])
        page.wait_for_selector("#frames img")
        page.wait_for_timeout(500)  # let the bars and the gallery finish drawing
        page.screenshot(path=os.environ["VIDEOADAPT_DEMO_SCREENSHOT"], full_page=True)
        page.close()
    finally:
        app.close()
