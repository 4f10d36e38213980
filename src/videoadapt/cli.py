"""`videoadapt` command line. Each subcommand lives in `videoadapt/commands/<name>.py` and registers itself."""

from __future__ import annotations

import argparse
import sys

from videoadapt import __version__
from videoadapt.commands import Command, load_commands
from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry


def build_parser() -> argparse.ArgumentParser:
    load_commands()
    parser = argparse.ArgumentParser(
        prog="videoadapt",
        description="Adapt image-language foundation models to video-text tasks.",
    )
    parser.add_argument("--version", action="version", version=f"videoadapt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in registry.items("command"):
        command_parser = sub.add_parser(name, help=command.help, description=command.description or command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_command=command)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` that also takes a command's KEY=VALUE overrides anywhere among its flags.

    argparse fills a ``nargs="*"`` positional from the first run of positionals only, so overrides written before
    a flag *and* after it (``train run.lr=1e-3 --out X data.frames=4``) left the later ones "unrecognized";
    ``parse_intermixed_args`` does not work with subcommands. The leftover words that are not options join the
    command's ``overrides`` list in command-line order (later ones still win); anything else stays an error.
    """
    args, extras = parser.parse_known_args(argv)
    if extras:
        overrides = getattr(args, "overrides", None)
        stray = [word for word in extras if overrides is None or word.startswith("-")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*overrides, *extras]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(parser, argv)
    command: Command = args._command
    try:
        return int(command.run(args) or 0)
    except VideoadaptError as error:
        print(f"videoadapt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videoadapt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
