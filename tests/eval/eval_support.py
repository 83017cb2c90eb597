"""Shared by the evaluation tests: where the benchmark data is, and how to call the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

from dscoder.cli import eval as eval_cli

BENCHMARKS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def run_eval_cli(argv: list[str]) -> int:
    """`dscoder eval ...` through the eval module's own parser (the CLI's registry is not ours)."""
    parser = argparse.ArgumentParser(prog="dscoder")
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.func(args)
