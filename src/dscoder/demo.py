"""`make demo`: the whole recipe on code every machine has, the running Python's standard library
and site-packages. Each stage prints where its output is."""

from __future__ import annotations

import time
from pathlib import Path

from dscoder.data.dedup import DedupConfig
from dscoder.data.executors import LocalExecutor
from dscoder.data.pipeline import build
from dscoder.data.sources import interpreter_description, python_installation_repos
from dscoder.data.steps import PipelineConfig

BENCHMARKS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def _stage(title: str) -> float:
    print(f"\n== {title} ==", flush=True)
    return time.perf_counter()


def run_demo(output: Path, workers: int | None = None) -> int:
    started = _stage(f"data: repositories from {interpreter_description()}")
    refs = python_installation_repos()
    decontaminate = str(BENCHMARKS) if BENCHMARKS.is_dir() else None
    config = PipelineConfig(decontaminate=decontaminate, dedup=DedupConfig())
    data = build(refs, output / "data", config, LocalExecutor(workers))
    report = data.report
    print(f"{len(refs)} repositories -> {report['samples']:,} samples, {report['files_kept']:,} of "
          f"{report['files_seen']:,} files kept ({time.perf_counter() - started:.0f} s)")
    top = ", ".join(f"{name} {entry['share']:.1f}%" for name, entry in list(report["languages"].items())[:5])
    print(f"languages: {top}")
    print(f"shards: {data.output}/part-*.parquet")
    print(f"report: {data.output / 'report.md'}, {data.output / 'report.json'}, {data.output / 'languages.png'}")
    return 0
