"""`dscoder demo`: the embedded end-to-end run behind `make demo`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run the recipe end to end on this machine's own Python code")
    demo.add_argument("--output", "-o", type=Path, default=Path("demo-out"), help="output folder")
    demo.add_argument("--workers", type=int, default=None, help="worker processes for the data stage")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dscoder.demo import run_demo

    return run_demo(args.output, args.workers)
