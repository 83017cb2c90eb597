"""The files of an output directory that people and programs read.

    summary.json   per benchmark: pass@k, number of problems, statuses (for machines)
    samples.jsonl  one row per sample: completion, status, tails of stdout/stderr
    results.md     the DeepSeek-Coder README's table layout, DeepSeek's published rows beside ours
    results.json   the same tables as data
    results.png    the same tables as bar charts

Everything here is rebuilt from runs/*/ (see runner), so it is always consistent with the logs,
whichever benchmarks were run into the directory and in whatever order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dscoder.errors import UserError
from dscoder.eval.benchmarks.base import STATUSES
from dscoder.eval.passk import DEFAULT_KS
from dscoder.eval.published import PUBLISHED
from dscoder.eval.runner import RUNS_DIR
from dscoder.eval.store import SampleLog, write_text_atomically

MISSING = "–"
PARTIAL_MARK = "*"  # after a figure measured on the first problems only (--limit)
HUMANEVAL_LANGUAGES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")


@dataclass(frozen=True)
class Section:
    title: str
    columns: tuple[tuple[str, str], ...]  # (benchmark name, column header)
    average_of: tuple[str, ...] = ()  # benchmarks an "Avg" column averages; shown when all present
    average_after: str = ""  # the benchmark the Avg column follows


SECTIONS = (
    Section(
        "HumanEval (8 languages) and MBPP",
        (
            ("humaneval-python", "Python"), ("humaneval-cpp", "C++"), ("humaneval-java", "Java"),
            ("humaneval-php", "PHP"), ("humaneval-ts", "TS"), ("humaneval-cs", "C#"),
            ("humaneval-sh", "Bash"), ("humaneval-js", "JS"), ("mbpp", "MBPP"),
        ),
        average_of=tuple(f"humaneval-{language}" for language in HUMANEVAL_LANGUAGES),
        average_after="humaneval-js",
    ),
    Section(
        "PAL-Math",
        (
            ("gsm8k", "GSM8K"), ("math", "MATH"), ("gsm-hard", "GSM-Hard"), ("svamp", "SVAMP"),
            ("tabmwp", "TabMWP"), ("asdiv", "ASDiv"), ("mawps", "MAWPS"),
        ),
        average_of=("gsm8k", "math", "gsm-hard", "svamp", "tabmwp", "asdiv", "mawps"),
        average_after="mawps",
    ),
    Section("DS-1000 and APPS", (("ds1000", "DS-1000"), ("apps", "APPS"))),
)


@dataclass(frozen=True)
class MeasuredModel:
    """One output directory's results: a model and its per-benchmark scores."""

    model: str
    scores: dict[str, dict[str, Any]]  # benchmark name -> score.json content

    @property
    def kind(self) -> str:
        styles = {score["style"] for score in self.scores.values()}
        return "instruct" if styles == {"instruct"} else "base"

    def percent(self, benchmark: str) -> float | None:
        score = self.scores.get(benchmark)
        return None if score is None else 100.0 * score["pass@1"]

    def is_partial(self, benchmark: str) -> bool:
        return bool(self.scores.get(benchmark, {}).get("partial"))


@dataclass(frozen=True)
class TableRow:
    label: str
    source: str  # "published" or "measured"
    kind: str  # "base" or "instruct": the chart sets measured rows beside published ones of a kind
    values: dict[str, float | None]  # column header -> percent
    partial: frozenset[str] = frozenset()  # column headers measured on a subset of the problems


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[TableRow, ...]


def load_measured(output_dir: Path) -> MeasuredModel:
    """The scores recorded under `output_dir`/runs (one model per directory)."""
    runs = Path(output_dir) / RUNS_DIR
    scores: dict[str, dict[str, Any]] = {}
    models: set[str] = set()
    for score_path in sorted(runs.glob("*/score.json")):
        scores[score_path.parent.name] = json.loads(score_path.read_text(encoding="utf-8"))
        run = json.loads((score_path.parent / "run.json").read_text(encoding="utf-8"))
        models.add(run["model"])
    if not scores:
        raise UserError(f"{output_dir} holds no finished evaluation (no {RUNS_DIR}/*/score.json)")
    if len(models) > 1:
        raise UserError(f"{output_dir} mixes runs of several models ({', '.join(sorted(models))})")
    return MeasuredModel(models.pop(), scores)


def _headers(section: Section) -> tuple[str, ...]:
    headers: list[str] = []
    for benchmark, header in section.columns:
        headers.append(header)
        if benchmark == section.average_after:
            headers.append("Avg")
    return tuple(headers)


def _row_values(section: Section, percent_of: dict[str, float]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for benchmark, header in section.columns:
        values[header] = percent_of.get(benchmark)
        if benchmark == section.average_after:
            parts = [percent_of.get(name) for name in section.average_of]
            values["Avg"] = None if None in parts else sum(parts) / len(parts)  # type: ignore[arg-type]
    return values


def build_tables(measured: list[MeasuredModel]) -> list[Table]:
    """One table per section that any measured model has a score in."""
    tables = []
    for section in SECTIONS:
        names = {benchmark for benchmark, _ in section.columns}
        if not any(names & set(model.scores) for model in measured):
            continue
        rows = [
            TableRow(f"{row.model} (published)", "published", row.kind, _row_values(section, row.scores))
            for row in PUBLISHED
            if names & set(row.scores)
        ]
        for model in measured:
            percents = {name: model.percent(name) for name in names if name in model.scores}
            values = _row_values(section, percents)
            partial = {header for name, header in section.columns if model.is_partial(name)}
            if any(model.is_partial(name) for name in section.average_of):
                partial.add("Avg")
            rows.append(
                TableRow(f"{model.model} (measured)", "measured", model.kind, values, frozenset(partial))
            )
        tables.append(Table(section.title, _headers(section), tuple(rows)))
    return tables


def _cell(value: float | None, partial: bool) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f}{PARTIAL_MARK if partial else ''}"


def _how_measured(model: MeasuredModel) -> str:
    styles = sorted({score["style"] for score in model.scores.values()})
    if styles == ["samples"]:
        return (
            "ready-made completions (a samples file or the data's reference solutions), executed "
            "by `dscoder eval` on this machine"
        )
    temperatures = sorted({score["temperature"] for score in model.scores.values()})
    if temperatures == [0.0]:
        decoding = "greedy decoding"
    else:
        decoding = f"temperature {'/'.join(map(str, temperatures))}"
    return (
        f"generated with {'/'.join(styles)} prompts and {decoding}, executed by `dscoder eval` on "
        "this machine"
    )


def _notes(measured: list[MeasuredModel], note: str | None) -> list[str]:
    notes = []
    for model in measured:
        notes.append(
            f"{model.model}: {_how_measured(model)}; problem and sample counts are in the run "
            "details below."
        )
        partial = sorted(name for name, score in model.scores.items() if score["partial"])
        if partial:
            notes.append(
                f"Figures marked {PARTIAL_MARK}: {model.model} ran {', '.join(partial)} on the first "
                "problems only (--limit), so they are not comparable with the published ones."
            )
        if all(score["pass@1"] == 0.0 for score in model.scores.values()):
            notes.append(
                f"{model.model} solved no problem at all: every pass@1 above is 0.0. That is "
                "expected of a very small or briefly trained model; from a released model it "
                "would point to a setup problem (prompt style, tokenizer, stop sequences)."
            )
    notes.append(
        "Published rows: DeepSeek-Coder's README and paper, pass@1 with greedy decoding. "
        "Avg is the mean over all columns of its group and is shown only when every one was run."
    )
    if note:
        notes.append(note)
    return notes


def _details_table(measured: list[MeasuredModel]) -> list[str]:
    pass_columns = [f"pass@{k}" for k in DEFAULT_KS]
    headers = ["model", "benchmark", "problems", "samples/problem", *pass_columns, *STATUSES]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for model in measured:
        for name, score in sorted(model.scores.items()):
            passes = [score.get(column) for column in pass_columns]
            statuses = score["statuses"]
            lines.append(
                f"| {model.model} | {name} | {score['problems']} | {score['samples_per_problem']} | "
                + " | ".join(MISSING if p is None else f"{100 * p:.1f}" for p in passes)
                + " | "
                + " | ".join(str(statuses.get(status, 0)) for status in STATUSES)
                + " |"
            )
    for model in measured:
        for name, score in sorted(model.scores.items()):
            for group, group_score in score.get("groups", {}).items():
                lines.append(
                    f"| {model.model} | {name} / {group} | {group_score['problems']} | "
                    f"{score['samples_per_problem']} | {100 * group_score['pass@1']:.1f} | "
                    + " | ".join([MISSING] * (len(pass_columns) - 1 + len(STATUSES)))
                    + " |"
                )
    return lines


def render_markdown(tables: list[Table], notes: list[str], measured: list[MeasuredModel]) -> str:
    lines = ["# Evaluation results", "", "pass@1 in percent.", ""]
    for table in tables:
        lines += [f"## {table.title}", "", "| Model | " + " | ".join(table.headers) + " |"]
        lines.append("|---|" + "---|" * len(table.headers))
        for row in table.rows:
            cells = [_cell(row.values.get(header), header in row.partial) for header in table.headers]
            label = f"**{row.label}**" if row.source == "measured" else row.label
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines += ["## Run details", ""] + _details_table(measured) + [""]
    return "\n".join(lines)


def write_chart(path: Path, tables: list[Table], measured: list[MeasuredModel]) -> None:
    """Grouped bars per table: the measured models beside DeepSeek's rows of the same kind."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    kinds = {model.kind for model in measured}
    # One color per row label in every panel, so a model keeps its color across benchmarks.
    labels = list(dict.fromkeys(row.label for table in tables for row in table.rows))
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    figure, axes = plt.subplots(len(tables), 1, figsize=(11, 3.8 * len(tables)), squeeze=False)
    for axis, table in zip(axes[:, 0], tables):
        measured_rows = [row for row in table.rows if row.source == "measured"]
        headers = [h for h in table.headers if any(r.values.get(h) is not None for r in measured_rows)]
        published_rows = [row for row in table.rows if row.source == "published" and row.kind in kinds]
        rows = published_rows + measured_rows
        width = 0.8 / max(1, len(rows))
        for offset, row in enumerate(rows):
            positions = [i + (offset - (len(rows) - 1) / 2) * width for i in range(len(headers))]
            heights = [row.values.get(h) or 0.0 for h in headers]
            bars = axis.bar(
                positions, heights, width, label=row.label, color=colors[row.label],
                hatch="//" if row.source == "measured" else None,
            )
            if row.source == "measured":  # label our bars, so a 0.0 is visible as a number
                axis.bar_label(bars, labels=[f"{h:.1f}" for h in heights], fontsize=7)
        axis.set_xticks(range(len(headers)), headers)
        axis.set_ylabel("pass@1 (%)")
        axis.set_ylim(0, 105)
        axis.set_title(table.title)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_samples(output_dir: Path) -> None:
    """samples.jsonl: every sample of every benchmark, completion and verdict together, in the
    order they were generated (the benchmark's problem order)."""
    rows = []
    for run_dir in sorted((Path(output_dir) / RUNS_DIR).iterdir()):
        if not run_dir.is_dir():
            continue
        generations = SampleLog(run_dir / "generations.jsonl").load()
        executions = SampleLog(run_dir / "executions.jsonl").load()
        for key, generation in generations.items():
            execution = executions.get(key, {})
            rows.append(
                {
                    "benchmark": run_dir.name,
                    "task_id": key[0],
                    "sample_index": key[1],
                    "completion": generation["completion"],
                    "status": execution.get("status", "not_executed"),
                    "detail": execution.get("detail", ""),
                    "stdout_tail": execution.get("stdout_tail", ""),
                    "stderr_tail": execution.get("stderr_tail", ""),
                }
            )
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_text_atomically(Path(output_dir) / "samples.jsonl", text)


def write_reports(output_dir: Path, note: str | None = None, compare: tuple[Path, ...] = ()) -> Path:
    """(Re)write summary.json, samples.jsonl and the results.{md,json,png} of `output_dir`.

    `compare` adds the measured rows of other output directories (other models) to the tables.
    """
    output_dir = Path(output_dir)
    own = load_measured(output_dir)
    measured = [own] + [load_measured(Path(other)) for other in compare]
    summary = {"model": own.model, "benchmarks": own.scores}
    write_text_atomically(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_samples(output_dir)
    tables = build_tables(measured)
    notes = _notes(measured, note)
    write_text_atomically(output_dir / "results.md", render_markdown(tables, notes, measured))
    machine = {
        "tables": [
            {
                "title": table.title,
                "columns": list(table.headers),
                "rows": [{"model": r.label, "source": r.source, "values": r.values} for r in table.rows],
            }
            for table in tables
        ],
        "notes": notes,
    }
    write_text_atomically(output_dir / "results.json", json.dumps(machine, indent=2) + "\n")
    write_chart(output_dir / "results.png", tables, measured)
    return output_dir / "results.md"
