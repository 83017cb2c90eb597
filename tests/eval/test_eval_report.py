"""Reports: the README-layout tables, published numbers beside ours, notes, JSON and chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dscoder.errors import UserError
from dscoder.eval.published import PUBLISHED
from dscoder.eval.report import SECTIONS, MeasuredModel, build_tables, load_measured, write_reports

LANGUAGES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")


def fake_run(out: Path, model: str, benchmark: str, pass_at_1: float, partial: bool = False,
             style: str = "base") -> None:
    """A finished run as the runner leaves it (run.json, score.json, the two logs)."""
    run_dir = out / "runs" / benchmark
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"benchmark": benchmark, "model": model}))
    score = {"benchmark": benchmark, "language": "python", "problems": 10, "samples_per_problem": 1,
             "pass@1": pass_at_1, "statuses": {"passed": round(10 * pass_at_1), "failed": 10 - round(10 * pass_at_1)},
             "groups": {}, "style": style, "temperature": 0.0, "data": "x", "partial": partial}
    (run_dir / "score.json").write_text(json.dumps(score))
    sample = {"task_id": "T/0", "sample_index": 0}
    (run_dir / "generations.jsonl").write_text(json.dumps({**sample, "completion": "c"}) + "\n")
    (run_dir / "executions.jsonl").write_text(json.dumps({**sample, "status": "failed", "detail": "d"}) + "\n")


def measured(pass_at_1: dict[str, float]) -> MeasuredModel:
    return MeasuredModel("ours", {
        name: {"pass@1": value, "style": "base", "temperature": 0.0, "partial": False}
        for name, value in pass_at_1.items()
    })


def test_published_averages_match_the_readme() -> None:
    readme_avg = {"DSC-Base 1.3B": 28.3, "DSC-Base 6.7B": 44.7, "DSC-Base 33B": 50.3,
                  "DSC-Instruct 1.3B": 48.4, "DSC-Instruct 6.7B": 66.1, "DSC-Instruct 33B": 69.2}
    [humaneval] = build_tables([measured({"humaneval-python": 0.5})])
    for row in humaneval.rows:
        if row.source == "published":
            assert row.values["Avg"] == pytest.approx(readme_avg[row.label.removesuffix(" (published)")], abs=0.051)


def test_average_needs_all_eight_languages() -> None:
    seven = {f"humaneval-{lang}": 0.5 for lang in LANGUAGES[:7]}
    [humaneval] = build_tables([measured(seven)])
    ours = humaneval.rows[-1]
    assert ours.values["Python"] == 50.0 and ours.values["JS"] is None and ours.values["Avg"] is None
    eight = {**seven, "humaneval-js": 0.1}
    [humaneval] = build_tables([measured(eight)])
    assert humaneval.rows[-1].values["Avg"] == pytest.approx((7 * 50 + 10) / 8)


def test_only_sections_with_results_are_shown_and_pal_has_one_published_row() -> None:
    tables = build_tables([measured({"gsm8k": 0.2})])
    assert [t.title for t in tables] == ["PAL-Math"]
    labels = [row.label for row in tables[0].rows]
    assert labels == ["DSC-Base 6.7B (published)", "ours (measured)"]
    assert tables[0].rows[0].values["GSM8K"] == 43.2


def test_every_published_benchmark_has_a_column() -> None:
    columns = {name for section in SECTIONS for name, _ in section.columns}
    assert all(set(row.scores) <= columns for row in PUBLISHED)


def test_reports_of_a_model_that_solves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    fake_run(out, "tiny-demo", "humaneval-python", 0.0, partial=True)
    fake_run(out, "tiny-demo", "mbpp", 0.0)
    write_reports(out, note="A 2M-parameter model trained for minutes.")
    markdown = (out / "results.md").read_text()
    assert "| **tiny-demo (measured)** | 0.0* | – | – | – | – | – | – | – | – | 0.0 |" in markdown
    assert "tiny-demo solved no problem at all: every pass@1 above is 0.0" in markdown
    assert "Figures marked *: tiny-demo ran humaneval-python on the first problems only" in markdown
    assert "A 2M-parameter model trained for minutes." in markdown
    published = "| DSC-Base 1.3B (published) | 34.8 | 31.1 | 32.3 | 24.2 | 28.9 | 36.7 | 10.1 | 28.6 | 28.3 | 46.2 |"
    assert published in markdown
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "tiny-demo"
    assert summary["benchmarks"]["mbpp"]["pass@1"] == 0.0 and summary["benchmarks"]["mbpp"]["problems"] == 10
    machine = json.loads((out / "results.json").read_text())
    assert machine["tables"][0]["columns"][-2:] == ["Avg", "MBPP"]
    assert machine["tables"][0]["rows"][-1] == {
        "model": "tiny-demo (measured)", "source": "measured",
        "values": {"Python": 0.0, "C++": None, "Java": None, "PHP": None, "TS": None, "C#": None,
                   "Bash": None, "JS": None, "Avg": None, "MBPP": 0.0},
    }
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {(s["benchmark"], s["status"]) for s in samples} == {("humaneval-python", "failed"), ("mbpp", "failed")}
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_adds_other_models(tmp_path: Path) -> None:
    fake_run(tmp_path / "a", "model-a", "mbpp", 0.25)
    fake_run(tmp_path / "b", "model-b", "mbpp", 0.5, style="instruct")
    write_reports(tmp_path / "a", compare=(tmp_path / "b",))
    markdown = (tmp_path / "a" / "results.md").read_text()
    assert "| **model-a (measured)** |" in markdown and "| **model-b (measured)** |" in markdown
    assert " 25.0 |" in markdown and " 50.0 |" in markdown


def test_directory_without_results_or_with_two_models(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no finished evaluation"):
        load_measured(tmp_path)
    fake_run(tmp_path, "model-a", "mbpp", 0.1)
    fake_run(tmp_path, "model-b", "gsm8k", 0.1)
    with pytest.raises(UserError, match="mixes runs of several models"):
        load_measured(tmp_path)
