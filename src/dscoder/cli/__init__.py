"""The `dscoder` command. Each stage has one module here that only parses its arguments and
calls into the stage; this file collects them and turns user errors into one line + exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from dscoder.errors import UserError

# Modules under dscoder.cli, each with `register(subparsers)` adding its subcommands; a
# subcommand sets `func` (args -> int exit status) with set_defaults.
COMMAND_MODULES = ["data", "tokenizer", "train", "infer", "serve", "eval", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dscoder",
        description="DeepSeek-Coder end to end: data, tokenizer, model, training, inference, "
        "serving, evaluation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"dscoder.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"dscoder: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dscoder: interrupted", file=sys.stderr)
        return 130
