"""`videoadapt demo`: a web page where a trained run answers on an uploaded video or a SynthWorld sample."""

from __future__ import annotations

import argparse

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by `videoadapt train`")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from videoadapt.inference.demo_app import build_app, import_gradio
    from videoadapt.inference.predictor import Predictor

    import_gradio()  # before the model loads: a missing extra is said at once
    predictor = Predictor(args.run, device="cpu" if args.cpu else None)
    with tempfile.TemporaryDirectory(prefix="videoadapt-demo-") as samples:  # the SynthWorld clips, removed at exit
        app = build_app(predictor, sample_folder=samples)
        print(f"videoadapt demo: {predictor.task_name} run {args.run} on http://{args.host}:{args.port} (Ctrl-C stops)")
        app.queue().launch(server_name=args.host, server_port=args.port, share=False)
    return 0


registry.register("command", "demo")(
    Command(
        help="serve a web page where a trained run predicts on uploaded videos (needs videoadapt[demo])",
        add_arguments=add_arguments,
        run=run,
        description="Load run folder RUN and serve a Gradio page: upload a video or pick a SynthWorld sample, give "
        "the texts, question or choices the run's task needs, and see its answer (top classes, ranked texts, "
        "answer, caption, moments or boxes) with the frames it sampled. Install the page's dependency with "
        "`pip install 'videoadapt[demo]'`.",
    )
)
