"""`videoadapt check-data`: read a data set's annotations and open every video they name, before any training.

Training meets a missing or unreadable video only when a batch asks for it, one at a time and possibly an hour in.
This command reads every split's annotation file (bad rows are listed, not raised, as with ``--skip-bad``) and opens
each referenced video's header in parallel threads (PyAV releases the GIL while it reads), then lists every problem
at once: the file and the reason. Exit status 0 when everything can be read, 1 when something cannot.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from videoadapt.commands import Command
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
_SHOWN = 20  # problems printed per split (JSON has them all)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="data spec: folder:DIR (your own videos and a table), synth:DIR, kinetics:PATH, charades_sta:DIR, ...",
    )
    parser.add_argument(
        "--task", default="recognition", help="the task whose annotations to read (default recognition)"
    )
    parser.add_argument(
        "--split", action="append", help="a split to check (repeatable; default: train, val and test, those it has)"
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option (as data.options.KEY in a config), e.g. video_dir=/videos; repeatable",
    )
    parser.add_argument("--workers", type=int, default=8, help="threads opening videos (default 8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check_data(
    data: str, task: str, splits: list[str] | None = None, options: dict[str, Any] | None = None, workers: int = 8
) -> dict[str, Any]:
    """Per split: items, videos, the annotation rows a reader left out, and every video that cannot be opened."""
    from videoadapt.data.checks import find_bad_videos
    from videoadapt.data.formats import load_task_data
    from videoadapt.errors import VideoadaptError

    if workers < 1:
        raise VideoadaptError(f"--workers must be at least 1, got {workers}")
    report: dict[str, Any] = {"data": data, "task": task, "splits": {}}
    for split in splits or list(SPLITS):
        try:
            loaded = load_task_data(data, split, task, **{**(options or {}), "skip_bad": True})
        except VideoadaptError as error:
            if splits is None and "split" in str(error):
                # A data set without this split (Charades-STA has no val) is fine unless asked for by name.
                report["splits"][split] = {"unavailable": str(error)}
            else:
                report["splits"][split] = {"error": str(error)}
            continue
        problems = find_bad_videos(loaded, workers)
        skipped = loaded.extra.get("skipped", {})
        report["splits"][split] = {
            "items": len(loaded),
            "videos": len(loaded.videos()),
            "videos_on_disk": problems.checked,
            "bad_annotation_rows": int(skipped.get("count", 0)),
            "bad_annotation_examples": list(skipped.get("reasons", [])),
            "missing_videos": max(
                int((loaded.extra.get("missing_videos") or {}).get("count", 0)), len(problems.missing)
            ),
            "missing_examples": [str(ref.path) for ref in problems.missing]
            or list((loaded.extra.get("missing_videos") or {}).get("examples", [])),
            "unreadable_videos": [
                {"video": ref.video_id, "file": str(ref.path), "reason": reason} for ref, reason in problems.unreadable
            ],
        }
    checked = [s for s in report["splits"].values() if "unavailable" not in s]
    report["ok"] = bool(checked) and all(
        "error" not in s and not s["bad_annotation_rows"] and not s["unreadable_videos"] and not s["missing_videos"]
        for s in checked
    )
    return report


def parse_options(values: list[str]) -> dict[str, str]:
    from videoadapt.errors import VideoadaptError

    out = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise VideoadaptError(f"--data-option {value!r}: expected KEY=VALUE, e.g. video_dir=/videos")
        out[key.strip()] = item
    return out


def run(args: argparse.Namespace) -> int:
    result = check_data(args.data, args.task, args.split, parse_options(args.data_option), args.workers)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    for split, s in result["splits"].items():
        if "error" in s or "unavailable" in s:
            print(f"{split}: {s.get('error') or 'not in this data set: ' + s['unavailable']}")
            continue
        print(
            f"{split}: {s['items']} items, {s['videos']} videos ({s['videos_on_disk']} files); "
            f"{s['bad_annotation_rows']} bad annotation rows, {s['missing_videos']} missing and "
            f"{len(s['unreadable_videos'])} unreadable videos"
        )
        for reason in s["bad_annotation_examples"][:_SHOWN]:
            print(f"  bad row: {reason}")
        for name in s["missing_examples"][:_SHOWN]:
            print(f"  missing: {name}")
        for bad in s["unreadable_videos"][:_SHOWN]:
            print(f"  unreadable: {bad['file']}: {bad['reason']}")
        if len(s["unreadable_videos"]) > _SHOWN:
            print(f"  ... and {len(s['unreadable_videos']) - _SHOWN} more (--json lists them all)")
    print("every video can be opened" if result["ok"] else "problems found: see above")
    return 0 if result["ok"] else 1


registry.register("command", "check-data")(
    Command(
        help="read a data set's annotations and open every video they name; list every problem at once",
        add_arguments=add_arguments,
        run=run,
        description="Before training: reads each split's annotations (bad rows listed, as --skip-bad would count "
        "them) and opens every referenced video's header in parallel, then lists every missing or unreadable file "
        "with its reason. Exit status 0 when everything can be read, 1 otherwise.",
    )
)
