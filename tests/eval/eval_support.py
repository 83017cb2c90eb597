"""Shared by the evaluation tests: where the benchmark data is, and how to call the CLI."""

from __future__ import annotations

import argparse
from dscoder.cli import eval as eval_cli

from benchmark_data import BENCHMARKS, require  # noqa: F401  (re-exported for the eval tests)


def run_eval_cli(argv: list[str]) -> int:
    """`dscoder eval ...` through the eval module's own parser (the CLI's registry is not ours)."""
    parser = argparse.ArgumentParser(prog="dscoder")
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.func(args)
