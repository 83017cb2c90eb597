"""One call to evaluate a model on a benchmark file and refresh the output directory's reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from dscoder.errors import UserError
from dscoder.eval.benchmarks import load_benchmark
from dscoder.eval.report import write_reports
from dscoder.eval.runner import (
    RUNS_DIR,
    BenchmarkScore,
    Capacity,
    Progress,
    RunSettings,
    no_progress,
    run_benchmark,
)
from dscoder.eval.sources import CompletionSource, ReferenceSolutions

# In place of a source: score the data file's own reference solutions (a check of the harness).
REFERENCE = "reference"


def _check_output_dir(output_dir: Path, model: str) -> None:
    """One model per directory: the tables' "measured" row must be one model's."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output directory {output_dir}: {error.strerror}") from None
    for run_file in (output_dir / RUNS_DIR).glob("*/run.json"):
        other = json.loads(run_file.read_text(encoding="utf-8")).get("model")
        if other != model:
            raise UserError(
                f"{output_dir} holds results of {other!r}, not {model!r}: use one --output "
                "directory per model (and --compare to put them in one table)"
            )


def evaluate(
    benchmark: str,
    data: Path | str,
    source: CompletionSource | Literal["reference"],
    output_dir: Path | str,
    settings: RunSettings = RunSettings(),
    capacity: Capacity = Capacity(),
    note: str | None = None,
    compare: tuple[Path, ...] = (),
    progress: Progress = no_progress,
) -> BenchmarkScore:
    """Score `source` on the benchmark `benchmark` read from `data`, resuming any earlier run in
    `output_dir`, then rewrite that directory's summary, samples and result tables.

    `source` REFERENCE scores the file's reference solutions (HumanEval's canonical ones, MBPP's
    code, GSM-Hard's programs, DS-1000's reference code, APPS' first solution).
    """
    output_dir = Path(output_dir)
    loaded = load_benchmark(benchmark, data)
    if source == REFERENCE:
        source = ReferenceSolutions(loaded.reference_solutions())
    _check_output_dir(output_dir, source.name)
    score = run_benchmark(
        loaded, source, output_dir, settings, capacity, data_path=data, progress=progress
    )
    write_reports(output_dir, note=note, compare=compare)
    return score
