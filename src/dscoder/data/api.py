"""Entry points that turn command-line settings into a pipeline run."""

from __future__ import annotations

import argparse
import os

from dscoder.data.dedup import DedupConfig
from dscoder.data.executors import make_executor
from dscoder.data.pipeline import BuildResult, build
from dscoder.data.sources import plan_repositories, python_installation_repos
from dscoder.data.steps import PipelineConfig
from dscoder.errors import UserError


def build_from_args(args: argparse.Namespace) -> BuildResult:
    if args.decontaminate:
        from dscoder.data.decontam import load_decontaminator

        load_decontaminator(args.decontaminate)  # a bad folder fails here, before any work
    if not 0.0 < args.dedup_threshold <= 1.0:
        raise UserError("--dedup-threshold must be in (0, 1]")
    refs = python_installation_repos() if args.python_env else []
    if args.inputs or args.repos_under or not refs:
        refs += plan_repositories(list(args.inputs), list(args.repos_under))
    config = PipelineConfig(
        seed=args.seed,
        max_file_bytes=args.max_file_bytes,
        decontaminate=os.path.abspath(args.decontaminate) if args.decontaminate else None,
        quality=not args.no_quality,
        task_bytes=args.task_bytes,
        dedup=DedupConfig(num_perm=args.num_perm, ngram=args.ngram, threshold=args.dedup_threshold),
    )
    executor = make_executor(args.executor, args.workers, args.ray_address)
    return build(refs, args.output, config, executor, overwrite=args.overwrite, progress=not args.no_progress)
