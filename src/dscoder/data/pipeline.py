"""The data pipeline's driver: plan tasks, run them on an executor, deduplicate across the whole
corpus, write Parquet shards and the report.

Resumability: every finished task is saved under `OUTPUT/_work/` (samples as Parquet, the rest
as a small pickle, each written to a temporary name and renamed, so a file that exists is
complete). A run started again with the same inputs and settings skips the tasks it finds, and
since everything after the tasks is computed from those files in task order, its output equals
an uninterrupted run's. `_work/` is removed once the report is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dscoder.data.dedup import DedupItem, deduplicate
from dscoder.data.executors import Executor, LocalExecutor
from dscoder.data.report import write_report
from dscoder.data.sources import RepoRef
from dscoder.data.steps import PipelineConfig, Task, TaskResult, make_tasks, process_task
from dscoder.errors import UserError

WORK_DIR = "_work"
SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("repo", pa.string()),
        ("language", pa.string()),
        ("paths", pa.list_(pa.string())),
        ("text", pa.string()),
    ]
)


@dataclass
class BuildResult:
    output: Path
    report: dict
    shards: list[Path]


class OtherInputs(UserError):
    """The output folder holds a run (finished or not) of other repositories or settings."""


def prepare_output(output: Path) -> None:
    """Create the output folder or fail with one sentence if it cannot be written."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to output folder {output}: {error.strerror or error}") from None


def _fingerprint(refs: list[RepoRef], config: PipelineConfig) -> dict:
    return {
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "inputs": [[r.name, r.kind, r.location] for r in sorted(refs, key=lambda r: (r.name, r.location))],
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_task(work: Path, result: TaskResult) -> None:
    table = pa.Table.from_pylist(
        [{"id": s.id, "repo": s.repo, "language": s.language, "paths": s.paths, "text": s.text} for s in result.samples],
        schema=SAMPLE_SCHEMA,
    )
    samples_path = work / f"task-{result.index:06d}.parquet"
    pq.write_table(table, samples_path.with_name(samples_path.name + ".tmp"))
    os.replace(samples_path.with_name(samples_path.name + ".tmp"), samples_path)
    meta = dataclasses.replace(result, samples=[])
    # The metadata file is written last: its presence marks the task as done.
    _atomic_write(work / f"task-{result.index:06d}.pkl", pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))


def _load_meta(work: Path, index: int) -> TaskResult:
    with open(work / f"task-{index:06d}.pkl", "rb") as handle:
        return pickle.load(handle)


def _open_work_dir(output: Path, fingerprint: dict) -> Path:
    work = output / WORK_DIR
    manifest = work / "manifest.json"
    if manifest.exists():
        if json.loads(manifest.read_text()) != fingerprint:
            raise OtherInputs(
                f"{output} holds an unfinished run with other inputs or settings; "
                "use another output folder or --overwrite"
            )
        return work
    work.mkdir(parents=True, exist_ok=True)
    _atomic_write(manifest, json.dumps(fingerprint, indent=1).encode())
    return work


def _existing_outputs(output: Path) -> list[Path]:
    return sorted(output.glob("part-*.parquet")) + [p for p in (output / "report.json",) if p.exists()]


def build(
    refs: list[RepoRef],
    output: str | os.PathLike,
    config: PipelineConfig = PipelineConfig(),
    executor: Executor | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    output = Path(output)
    prepare_output(output)
    fingerprint = _fingerprint(refs, config)
    report_path = output / "report.json"
    if report_path.exists() and not (output / WORK_DIR).exists() and not overwrite:
        previous = json.loads(report_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            return BuildResult(output, previous, sorted(output.glob("part-*.parquet")))
        raise OtherInputs(f"{output} already holds a finished run with other inputs; use --overwrite or another folder")
    if overwrite:
        for path in _existing_outputs(output):
            path.unlink()
        shutil.rmtree(output / WORK_DIR, ignore_errors=True)
    work = _open_work_dir(output, fingerprint)
    started = time.perf_counter()

    tasks = make_tasks(refs, config.task_bytes)
    done = {i for i in range(len(tasks)) if (work / f"task-{i:06d}.pkl").exists()}
    todo = [t for t in tasks if t.index not in done]
    # Largest first keeps all workers busy until the end.
    todo.sort(key=lambda t: -sum(r.size_hint for r in t.repos))
    if done:
        print(f"resuming: {len(done)} of {len(tasks)} tasks already done", file=sys.stderr)
    executor = executor or LocalExecutor()
    bar = tqdm(total=len(tasks), initial=len(done), unit="task", desc="data", disable=not progress, file=sys.stderr)
    mb_done = 0.0
    for result in executor.map_unordered(process_task, todo, config):
        _save_task(work, result)
        mb_done += result.bytes_seen / 1e6
        bar.set_postfix_str(f"{mb_done:.0f} MB read")
        bar.update(1)
    bar.close()

    metas = [_load_meta(work, task.index) for task in tasks]
    removed = _deduplicate(metas, config)
    shards = _write_shards(work, output, tasks, removed, config.shard_bytes)
    report = write_report(
        output,
        metas=metas,
        removed=removed,
        fingerprint=fingerprint,
        seconds=time.perf_counter() - started,
        tasks_resumed=len(done),
        shards=shards,
    )
    shutil.rmtree(work)
    return BuildResult(output, report, shards)


def _deduplicate(metas: list[TaskResult], config: PipelineConfig) -> dict[str, tuple[str, str]]:
    items = []
    for meta in metas:
        for row, info in enumerate(meta.infos):
            items.append(DedupItem(info.id, meta.text_hashes[row], meta.signatures[row], info.size))
    ids = [item.id for item in items]
    if len(ids) != len(set(ids)):
        counts = Counter(ids)
        clash = next(i for i, c in counts.items() if c > 1)
        raise UserError(f"two inputs produce the same sample id {clash}: is a repository listed twice?")
    return deduplicate(items, config.dedup)


def _iter_kept(work: Path, tasks: list[Task], removed: dict) -> Iterator[pa.Table]:
    for task in tasks:
        table = pq.read_table(work / f"task-{task.index:06d}.parquet", schema=SAMPLE_SCHEMA)
        if removed and table.num_rows:
            keep = np.array([sample_id not in removed for sample_id in table.column("id").to_pylist()])
            table = table.filter(pa.array(keep))
        if table.num_rows:
            yield table


def _write_shards(work: Path, output: Path, tasks: list[Task], removed: dict, shard_bytes: int) -> list[Path]:
    for stale in output.glob("part-*.parquet"):
        stale.unlink()
    shards: list[Path] = []
    writer: pq.ParquetWriter | None = None
    written = 0
    for table in _iter_kept(work, tasks, removed):
        if writer is None or written >= shard_bytes:
            if writer is not None:
                writer.close()
            shards.append(output / f"part-{len(shards):05d}.parquet")
            writer = pq.ParquetWriter(shards[-1], SAMPLE_SCHEMA, compression="zstd")
            written = 0
        writer.write_table(table)
        written += table.column("text").nbytes
    if writer is not None:
        writer.close()
    return shards
