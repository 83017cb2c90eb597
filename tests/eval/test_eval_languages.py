"""Per-language execution: correct solutions pass, wrong ones fail, in all eight languages.

The MultiPL-E files carry no reference solutions, so tests/eval/fixtures/solutions/ holds
hand-written ones (at least ten correct per language, plus wrong ones with the status they must
get). Python uses HumanEval's own canonical solutions: all 164 pass, and each fails when paired
with another problem's solution.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from benchmark_data import BENCHMARKS, require

from dscoder.eval import languages
from dscoder.eval.sandbox import Executor

MULTILINGUAL = BENCHMARKS / "deepseek-humaneval-multilingual"
SOLUTIONS = Path(__file__).parent / "fixtures" / "solutions"
COMPILED_AND_SCRIPTED = ("cpp", "java", "php", "ts", "cs", "sh", "js")
# The import header DeepSeek's harness puts before every HumanEval-X Python program.
DEEPSEEK_PYTHON_HEADER = (
    "import math\nimport re\nimport sys\nimport copy\nimport datetime\nimport itertools\n"
    "import collections\nimport heapq\nimport statistics\nimport functools\nimport hashlib\n"
    "import numpy\nimport numpy as np\nimport string\nfrom typing import *\n"
    "from collections import *\n"
)


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def fixture_rows(language: str) -> list[dict]:
    lines = (SOLUTIONS / f"{language}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def multilingual_results():
    """Run every fixture solution once, through one pooled Executor."""
    jobs, expected = [], {}
    for language in COMPILED_AND_SCRIPTED:
        problems = {row["name"]: row for row in
                    read_jsonl_gz(MULTILINGUAL / f"humaneval-{language}.jsonl.gz")}
        for index, row in enumerate(fixture_rows(language)):
            problem = problems[row["task_id"]]
            key = f"{language}#{index}"
            jobs.append((key, language, problem["prompt"] + row["completion"] + "\n"
                         + problem["tests"]))
            expected[key] = row
    with Executor(workers=2) as executor:
        results = dict(executor.map(jobs))
    return expected, results


@pytest.mark.parametrize("language", languages.LANGUAGES)
def test_runtimes_are_installed(language):
    assert languages.missing_runtimes(language) == []


@pytest.mark.parametrize("language", COMPILED_AND_SCRIPTED)
def test_fixtures_hold_ten_distinct_correct_solutions(language):
    rows = fixture_rows(language)
    correct = {row["task_id"] for row in rows if row["expected"] == "passed"}
    assert len(correct) >= 10
    assert any(row["expected"] != "passed" for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("language", COMPILED_AND_SCRIPTED)
def test_correct_solutions_pass_and_wrong_ones_fail(multilingual_results, language):
    expected, results = multilingual_results
    outcomes = {key: (row, results[key]) for key, row in expected.items()
                if key.startswith(f"{language}#")}
    wrong = {key: (row["task_id"], row["expected"], result.status, result.stderr_tail[-600:])
             for key, (row, result) in outcomes.items() if result.status != row["expected"]}
    assert wrong == {}
    assert Counter(result.status for _, result in outcomes.values())["passed"] >= 10


@pytest.mark.slow
def test_early_exit_fails_in_every_language(multilingual_results):
    expected, results = multilingual_results
    early = {key: results[key] for key, row in expected.items()
             if "before the tests" in row.get("why", "")}
    assert {key.split("#")[0] for key in early} == set(COMPILED_AND_SCRIPTED)
    for result in early.values():
        assert result.status == "failed"
        assert result.exit_code == 0
        assert "no completion marker" in result.stderr_tail


@pytest.fixture(scope="module")
def humaneval():
    return read_jsonl_gz(require(BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"))


def humaneval_program(problem: dict, completion: str) -> str:
    return (problem["prompt"] + completion + "\n" + problem["test"] + "\n"
            + f"check({problem['entry_point']})\n")


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_mismatched_ones_fail(humaneval):
    assert len(humaneval) == 164
    jobs = []
    for index, problem in enumerate(humaneval):
        other = humaneval[(index + 1) % len(humaneval)]
        jobs.append((f"own {index}", "python",
                     humaneval_program(problem, problem["canonical_solution"])))
        jobs.append((f"other {index}", "python",
                     humaneval_program(problem, other["canonical_solution"])))
    with Executor(workers=2) as executor:
        results = dict(executor.map(jobs))
    own = {key: r.status for key, r in results.items() if key.startswith("own")}
    other = {key: r.status for key, r in results.items() if key.startswith("other")}
    assert [key for key, status in own.items() if status != "passed"] == []
    assert [key for key, status in other.items() if status == "passed"] == []


def test_humaneval_x_python_with_deepseek_header():
    rows = read_jsonl_gz(MULTILINGUAL / "humaneval-python.jsonl.gz")[:12]
    jobs = [(row["task_id"], "python",
             DEEPSEEK_PYTHON_HEADER + row["prompt"] + row["canonical_solution"] + "\n"
             + row["test"]) for row in rows]
    with Executor(workers=2) as executor:
        statuses = {key: result.status for key, result in executor.map(jobs)}
    assert set(statuses.values()) == {"passed"}, statuses


# --- how programs are prepared (no execution) ------------------------------------------------


def test_cpp_wraps_main_and_uses_the_precompiled_header(tmp_path):
    program = "#include<bits/stdc++.h>\nint main() {}\n"
    build = languages.prepare("cpp", program, "MARK", tmp_path, 1024)
    assert "-Wl,--wrap=main" in build.compile
    header = build.compile[build.compile.index("-include") + 1]
    assert Path(header).parent == build.readonly[0]  # the sandbox must show the header
    assert "__wrap_main" in build.files["program.cpp"]
    assert "-lcrypto" not in build.compile
    with_md5 = languages.prepare("cpp", "#include <openssl/md5.h>\n" + program, "M", tmp_path,
                                 1024)
    assert with_md5.compile[-2:] == ("-lcrypto", "-lssl")
    plain = languages.prepare("cpp", "int main() {}\n", "MARK", tmp_path, 1024)
    assert "-include" not in plain.compile


def test_java_and_cs_entry_classes_call_the_first_class(tmp_path):
    program = "class Problem {\n    public static void main(String[] a) {}\n}\n"
    java = languages.prepare("java", program, "MARK", tmp_path, 4096)
    assert "Problem.main(args)" in java.files["Problem.java"]
    assert java.run[-1] == "DscoderEntry"
    assert "-Xmx1024m" in java.run
    cs = languages.prepare("cs", "class Problem { static void Main() {} }\n", "MARK", tmp_path,
                           4096)
    assert "typeof(Problem)" in cs.files["program.cs"]
    assert "-main:DscoderEntry" in cs.compile
    assert "-d:DEBUG" in cs.compile


def test_php_marker_reopens_php_after_a_closing_tag(tmp_path):
    closed = languages.prepare("php", "<?php\necho 1;\n?>\nhtml\n", "MARK", tmp_path, 512)
    assert closed.files["program.php"].endswith('\n<?php\necho "\\nMARK\\n";\n')
    open_ = languages.prepare("php", "<?php\necho 1;\n", "MARK", tmp_path, 512)
    assert "\n<?php\necho" not in open_.files["program.php"]


def test_python_marker_survives_a_replaced_stdout():
    source = languages.python_source("import sys, io\nsys.stdout = io.StringIO()\n", "MARK")
    assert source.endswith('__import__("os").write(1, b"\\nMARK\\n")\n')


def test_unknown_language_is_a_user_error(tmp_path):
    from dscoder.errors import UserError

    with pytest.raises(UserError):
        languages.prepare("cobol", "", "MARK", tmp_path, 512)
    with pytest.raises(UserError):
        languages.prepare("java", "interface X {}\n", "MARK", tmp_path, 512)
