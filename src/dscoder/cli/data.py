"""`dscoder data build`: repositories -> filtered, ordered, deduplicated samples + report."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="the repository-level code data pipeline")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    build = commands.add_parser(
        "build",
        help="build training samples from repositories",
        description="Read repositories (folders, a list of paths or git URLs, Parquet/JSONL tables of "
        "files with columns repo, path, content), filter, order by dependencies, deduplicate, "
        "decontaminate, and write Parquet shards with a report.",
    )
    build.add_argument("inputs", nargs="*", metavar="INPUT", help="repository folder, list file, or table")
    build.add_argument("--repos-under", action="append", default=[], metavar="DIR", help="a folder of repository clones")
    build.add_argument("--python-env", action="store_true", help="add this Python's standard library and site-packages (one repository per top-level package)")
    build.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    build.add_argument("--executor", choices=["local", "ray"], default="local")
    build.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
    build.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    build.add_argument("--decontaminate", metavar="DIR", default=None, help="folder of benchmark files to remove overlaps with")
    build.add_argument("--seed", type=int, default=0, help="seed for dependency-order tie-breaks")
    build.add_argument("--max-file-bytes", type=int, default=1 << 20)
    build.add_argument("--no-quality", action="store_true", help="skip syntax and readability screening")
    build.add_argument("--dedup-threshold", type=float, default=0.7, help="MinHash Jaccard threshold")
    build.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    build.add_argument("--ngram", type=int, default=5, help="word shingle size")
    build.add_argument("--task-bytes", type=int, default=8 << 20, help="group small repositories into tasks of about this many bytes")
    build.add_argument("--overwrite", action="store_true", help="discard an earlier run in the output folder")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from dscoder.data.api import build_from_args

    result = build_from_args(args)
    report = result.report
    print(f"samples: {report['samples']:,} in {len(result.shards)} shard(s) under {result.output}")
    print(f"files: seen {report['files_seen']:,}, kept {report['files_kept']:,}, dropped {sum(report['files_dropped'].values()):,}")
    print(f"report: {result.output / 'report.md'} (and report.json, languages.png)")
    return 0
