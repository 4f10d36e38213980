"""Feature cache: exact round trips, keys, resume after a crash, checksums, sharded extraction, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from launch_helpers import check_launch
from videoadapt.data.records import ClassificationItem, TaskData, VideoRef
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.data.transforms import preprocess
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.foundation.feature_cache import (
    CacheDims,
    FeatureCache,
    IncompleteCacheError,
    backbone_fingerprint,
    cache_key,
    extract_features,
)
from videoadapt.foundation.hf import from_architecture

SAMPLER = "uniform:4"


class FakeSource:
    """Seeded random uint8 clips of 20 frames at 10 fps; ids in ``bad`` fail to decode. Counts decodes."""

    def __init__(self, bad: tuple[str, ...] = ()) -> None:
        self.bad = set(bad)
        self.calls = 0

    def frames(self, ref: VideoRef, sampler=None) -> np.ndarray:
        self.calls += 1
        if ref.video_id in self.bad:
            raise VideoadaptError(f"{ref.video_id}.mp4: truncated stream")
        rng = np.random.default_rng(int(ref.video_id.removeprefix("v")))
        clip = rng.integers(0, 256, (20, 40, 48, 3), dtype=np.uint8)
        return clip if sampler is None else clip[sampler.indices(len(clip), 10.0)]


def make_data(videos: int = 10, bad: tuple[str, ...] = ()) -> TaskData:
    # Two items share a video, as several questions or captions do: the cache holds each video once.
    items = [ClassificationItem(VideoRef(f"v{i}"), i % 3) for i in range(videos)]
    items.append(ClassificationItem(VideoRef("v0"), 1))
    return TaskData("recognition", "train", items, FakeSource(bad), "fake")


@pytest.fixture(scope="module")
def ilfm():
    return from_architecture("clip-tiny").eval()


def live(ilfm, data: TaskData, ids: list[str], all_layers: bool = False) -> FrameFeatures:
    sampler = sampler_from_spec(SAMPLER)
    video = torch.stack([preprocess(data.source.frames(VideoRef(v), sampler), ilfm.processor) for v in ids])
    with torch.no_grad():
        return ilfm.encode_frames(video, all_layers=all_layers)


class CountingEncoder:
    """Wraps ``ilfm.encode_frames`` on the instance to count the videos it encodes."""

    def __init__(self, ilfm) -> None:
        self.ilfm, self.videos, self.original = ilfm, 0, ilfm.encode_frames
        ilfm.encode_frames = self

    def __call__(self, video, all_layers=False):
        if video.shape[1] > 1:  # not the one-frame shape probe
            self.videos += video.shape[0]
        return self.original(video, all_layers=all_layers)

    def restore(self) -> None:
        del self.ilfm.encode_frames


def test_round_trip_float32_is_exact(ilfm, tmp_path):
    data = make_data()
    cache = extract_features(ilfm, data, SAMPLER, tmp_path, batch_size=3, progress=False)
    ids = ["v7", "v2", "v9", "v0"]  # any order, across extraction batches
    got, want = cache.get(ids, verify=True), live(ilfm, data, ids)
    for name in ("cls", "patches", "embeds"):
        assert getattr(got, name).dtype == torch.float32
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.layers is None
    assert len(cache) == 10 and cache.video_ids == [f"v{i}" for i in range(10)] and "v3" in cache
    assert "v10" not in cache
    assert cache.meta["sampler"] == SAMPLER and cache.meta["data"]["origin"] == "fake"
    assert cache.run_stats == {"encoded": 10, "reused": 0, "skipped": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cls.npy", "embeds.npy", "layout.json", "manifest.json", "patches.npy", "rows",
    ]  # fmt: skip
    # A second run over a complete cache encodes nothing.
    counter = CountingEncoder(ilfm)
    try:
        again = extract_features(ilfm, data, SAMPLER, tmp_path, progress=False)
    finally:
        counter.restore()
    assert counter.videos == 0 and again.run_stats["reused"] == 10


def test_float16_halves_disk_within_tolerance(ilfm, tmp_path):
    data = make_data(6)
    cache = extract_features(ilfm, data, SAMPLER, tmp_path / "h", dtype="float16", progress=False)
    exact = extract_features(ilfm, data, SAMPLER, tmp_path / "f", progress=False)
    assert np.load(tmp_path / "h" / "patches.npy", mmap_mode="r").dtype == np.float16
    assert cache.nbytes * 2 == exact.nbytes
    got, want = cache.get(cache.video_ids), exact.get(exact.video_ids)
    for name in ("cls", "patches", "embeds"):
        assert getattr(got, name).dtype == torch.float32
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=2e-3, atol=2e-3)
    assert cache.key == exact.key  # the dtype is not part of the key: both hold the same features


def test_key_mismatch_is_refused_naming_both(ilfm, tmp_path):
    data = make_data(4)
    cache = extract_features(ilfm, data, SAMPLER, tmp_path, progress=False)
    other_sampling = cache_key(backbone_fingerprint(ilfm), "uniform:8", ilfm.processor, False)
    with pytest.raises(VideoadaptError, match="uniform:4.*uniform:8.*sampling"):
        FeatureCache.open(tmp_path, key=other_sampling)
    other = from_architecture("clip-tiny", seed=1)
    assert backbone_fingerprint(other) != backbone_fingerprint(ilfm)
    other_backbone = cache_key(backbone_fingerprint(other), SAMPLER, other.processor, False)
    with pytest.raises(VideoadaptError, match=f"{cache.key}.*{other_backbone}.*backbone weights"):
        FeatureCache.open(tmp_path, key=other_backbone)
    with pytest.raises(VideoadaptError, match="another backbone"):
        extract_features(other, data, SAMPLER, tmp_path, progress=False)
    # Spelling of the sampler does not matter; a single changed weight does.
    assert cache_key(backbone_fingerprint(ilfm), " UNIFORM:4", ilfm.processor, False) == cache.key
    FeatureCache.open(tmp_path, key=str(cache.key))  # a plain string key works too
    changed = from_architecture("clip-tiny")
    with torch.no_grad():
        next(changed.vision_modules()[0].parameters()).view(-1)[0] += 1e-3
    assert backbone_fingerprint(changed) != backbone_fingerprint(ilfm)


def test_incomplete_cache_is_refused_then_resumed(ilfm, tmp_path):
    data = make_data(10)
    ids = [r.video_id for r in data.videos()]
    key = cache_key(backbone_fingerprint(ilfm), SAMPLER, ilfm.processor, False)
    # A crashed extraction: half the rows written, one of them later damaged, a partial log line, no manifest.
    cache = FeatureCache.create(
        tmp_path, key=key, video_ids=ids, frames=4, dims=CacheDims.of(live(ilfm, data, ["v0"])), meta={}
    )
    cache.write(ids[:5], live(ilfm, data, ids[:5]))
    cache.flush()
    patches = np.load(tmp_path / "patches.npy", mmap_mode="r+")
    patches[4, 0, 0, :2] = 7.0
    patches.flush()
    del patches
    with open(tmp_path / "rows" / "writer-0.jsonl", "a") as handle:
        handle.write('{"id": "v5", "ro')
    with pytest.raises(IncompleteCacheError, match="5 of 10 rows.*rerun `videoadapt extract`.*resume"):
        FeatureCache.open(tmp_path)
    with pytest.raises(IncompleteCacheError, match="never written"):
        cache.finalize()

    counter = CountingEncoder(ilfm)
    try:
        resumed = extract_features(ilfm, data, SAMPLER, tmp_path, batch_size=4, progress=False)
    finally:
        counter.restore()
    assert counter.videos == 6  # v5..v9, and v4 whose bytes no longer matched its checksum
    assert resumed.run_stats == {"encoded": 6, "reused": 4, "skipped": 0}
    assert resumed.verify() == []
    got, want = resumed.get(ids), live(ilfm, data, ids)
    assert torch.equal(got.patches, want.patches) and torch.equal(got.embeds, want.embeds)


def test_corruption_is_detected_naming_the_row(ilfm, tmp_path):
    data = make_data(5)
    extract_features(ilfm, data, SAMPLER, tmp_path, progress=False)
    embeds = np.load(tmp_path / "embeds.npy", mmap_mode="r+")
    embeds[3, 1, 0] += 1.0
    embeds.flush()
    del embeds
    cache = FeatureCache.open(tmp_path)
    with pytest.raises(VideoadaptError, match="1 corrupt row.*'v3'"):
        cache.verify()
    assert cache.verify(raise_error=False) == ["v3"]
    with pytest.raises(VideoadaptError, match="'v3'"):
        cache.get(["v1", "v3"], verify=True)
    cache.get(["v1", "v3"])  # unchecked reads are not slowed down by hashing
    cache.get(["v1", "v2"], verify=True)


def test_unknown_and_skipped_ids(ilfm, tmp_path):
    with pytest.raises(VideoadaptError, match="'v2'.*truncated stream.*--skip-bad"):
        extract_features(ilfm, make_data(5, bad=("v2",)), SAMPLER, tmp_path / "a", progress=False)
    cache = extract_features(ilfm, make_data(5, bad=("v2",)), SAMPLER, tmp_path / "b", skip_bad=True, progress=False)
    assert len(cache) == 4 and "v2" not in cache and cache.video_ids == ["v0", "v1", "v3", "v4"]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "truncated stream" in manifest["skipped"]["v2"] and manifest["videos"] == 4
    with pytest.raises(VideoadaptError, match="'v2'.*truncated.*skipped during extraction"):
        cache.get(["v1", "v2"])
    with pytest.raises(VideoadaptError, match="'nope'.*not in the feature cache"):
        cache.get(["v1", "nope"])
    with pytest.raises(VideoadaptError, match="no feature cache here"):
        FeatureCache.open(tmp_path / "a" / "missing")


def test_samplers_that_cannot_fill_fixed_rows_are_refused(ilfm, tmp_path):
    for spec, reason in (("uniform:4:random", "random"), ("fps:2", "depends on the video"), ("all", "depends")):
        with pytest.raises(VideoadaptError, match=reason):
            extract_features(ilfm, make_data(2), spec, tmp_path, progress=False)


def test_post_network_encoder_reads_the_cache_as_the_backbone(ilfm, tmp_path):
    from videoadapt.paradigms import build_video_encoder, load_paradigms

    load_paradigms()
    data = make_data(6)
    backbone = from_architecture("clip-tiny")
    cache = extract_features(backbone, data, SAMPLER, tmp_path, batch_size=4, progress=False)
    encoder = build_video_encoder(backbone, "post_network").eval()
    assert encoder.cacheable
    ids = ["v5", "v1", "v3"]
    sampler = sampler_from_spec(SAMPLER)
    video = torch.stack([preprocess(data.source.frames(VideoRef(v), sampler), backbone.processor) for v in ids])
    with torch.no_grad():
        direct, cached = encoder(video), encoder(cached=cache.get(ids))
    assert torch.equal(direct.video, cached.video) and torch.equal(direct.frames, cached.frames)

    # Its temporal transformer never reads patch tokens, so the trainer reads rows without them: same answer.
    assert not encoder.head.needs_patches
    light = cache.get(ids, patches=False)
    assert light.patches.shape == (3, 4, 0, backbone.dims.width)
    assert torch.equal(light.embeds, cache.get(ids).embeds) and torch.equal(light.cls, cache.get(ids).cls)
    with torch.no_grad():
        assert torch.equal(encoder(cached=light).video, direct.video)
    # Heads that read patches declare it (and any head that does not say keeps getting them).
    reader = build_video_encoder(backbone, "post_network", {"post_network": {"temporal": "qformer", "heads": 2}})
    assert reader.head.needs_patches
    assert build_video_encoder(backbone, "side_tuning").head.needs_patches


def test_all_layers_cache_feeds_side_tuning(tmp_path):
    from videoadapt.paradigms import build_video_encoder, load_paradigms

    load_paradigms()
    data = make_data(4)
    backbone = from_architecture("clip-tiny")
    cache = extract_features(backbone, data, SAMPLER, tmp_path, all_layers=True, progress=False)
    dims = backbone.dims
    assert cache.all_layers and cache.dims.layers == (dims.layers, dims.num_patches + 1, dims.width)
    assert np.load(tmp_path / "layers.npy", mmap_mode="r").shape == (4, dims.layers, 4, dims.num_patches + 1, 32)
    got = cache.get(["v2", "v0"])
    want = live(backbone, data, ["v2", "v0"], all_layers=True)
    assert len(got.layers) == dims.layers
    for mine, theirs in zip(got.layers, want.layers, strict=True):
        assert mine.is_contiguous() and torch.equal(mine, theirs)
    encoder = build_video_encoder(backbone, "side_tuning").eval()
    sampler = sampler_from_spec(SAMPLER)
    video = torch.stack(
        [preprocess(data.source.frames(VideoRef(v), sampler), backbone.processor) for v in ["v2", "v0"]]
    )
    with torch.no_grad():
        torch.testing.assert_close(encoder(video).video, encoder(cached=got).video, rtol=0, atol=0)
    assert cache.key != cache_key(backbone_fingerprint(backbone), SAMPLER, backbone.processor, False)


def test_pickled_cache_reopens_instead_of_copying_rows(ilfm, tmp_path):
    cache = extract_features(ilfm, make_data(4), SAMPLER, tmp_path, progress=False)
    blob = pickle.dumps(cache)
    assert len(blob) < 2000  # a DataLoader worker gets the directory, not the rows
    clone = pickle.loads(blob)
    assert torch.equal(clone.get(["v1"]).patches, cache.get(["v1"]).patches)


def test_existing_different_cache_needs_overwrite(ilfm, tmp_path):
    extract_features(ilfm, make_data(4), SAMPLER, tmp_path, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(VideoadaptError, match="differs.*video ids.*--overwrite"):
        extract_features(ilfm, make_data(6), SAMPLER, tmp_path, progress=False)
    cache = extract_features(ilfm, make_data(6), SAMPLER, tmp_path, overwrite=True, progress=False)
    assert len(cache) == 6 and (tmp_path / "notes.txt").read_text() == "mine"


SYNTH = ["--data", "synth", "--data-option", "videos=20", "--data-option", "size=32", "--data-option", "frames=8"]


def test_cli_extract_single_process(tmp_path, capsys, monkeypatch):
    from videoadapt import cli
    from videoadapt.commands import extract

    # In-process, no Accelerator: its process-wide state would outlive this test.
    monkeypatch.setattr(extract, "_accelerator", lambda: None)
    argv = ["extract", "--backbone", "hf-config:clip-tiny", *SYNTH, "--sampler", SAMPLER, "--out", str(tmp_path)]
    assert cli.main([*argv, "--batch-size", "5", "--verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == 16 and report["encoded"] == 16 and report["verified"] and report["processes"] == 1
    assert cli.main([*argv, "--sampler", "uniform:2:random"]) == 2
    assert "random" in capsys.readouterr().err


def test_sharded_extraction_matches_single_process(tmp_path):
    """Two processes under `accelerate launch` (about 15 s here) write the same cache as one process."""
    from videoadapt.data.formats import load_task_data
    from videoadapt.foundation import load_backbone

    # `accelerate launch --cpu` starts a single process (its multi-CPU path needs mpirun); torchrun through
    # --multi_gpu with ACCELERATE_USE_CPU gives two CPU processes joined by gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    # accelerate is a dependency: its launcher sits next to this interpreter, on PATH or not.
    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists(), f"no accelerate launcher next to {sys.executable}"
    launch = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "videoadapt", "extract"]
    args = ["--backbone", "hf-config:clip-tiny", *SYNTH, "--sampler", SAMPLER, "--batch-size", "3", "--json"]
    done = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "mp")], env=env, capture_output=True, text=True, timeout=120
    )
    check_launch(done, tmp_path / "mp" / "manifest.json")
    report = json.loads(done.stdout)
    assert report["processes"] == 2 and report["encoded"] == 16
    logs = sorted(p.name for p in (tmp_path / "mp" / "rows").iterdir())
    assert logs == ["writer-0.jsonl", "writer-1.jsonl"]

    data = load_task_data("synth", "train", "recognition", videos=20, size=32, frames=8)
    single = extract_features(load_backbone("hf-config:clip-tiny"), data, SAMPLER, tmp_path / "sp", progress=False)
    sharded = FeatureCache.open(tmp_path / "mp", key=single.key)
    assert sharded.video_ids == single.video_ids
    assert sharded.verify() == []
    a, b = sharded.get(single.video_ids), single.get(single.video_ids)
    for name in ("cls", "patches", "embeds"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6)


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "videoadapt", "extract", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--all-layers" in done.stdout
