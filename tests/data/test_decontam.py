"""Decontamination against the shared benchmark files and against small synthetic benchmarks."""

import gzip
import json
import pickle
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from benchmark_data import BENCHMARKS

from dscoder.data.decontam import Decontaminator, load_decontaminator, ngram_hashes, tokenize
from dscoder.errors import UserError


def first_record(relative: str, **where) -> dict:
    with gzip.open(BENCHMARKS / relative, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if all(record.get(key) == value for key, value in where.items()):
                return record
    raise LookupError(where)


@pytest.fixture(scope="module")
def benchmarks() -> Decontaminator:
    return load_decontaminator(BENCHMARKS)


# --- tokens ---------------------------------------------------------------------------------


def test_tokens_are_word_runs_compared_without_ascii_case():
    first = tokenize("Foo_bar(x1, 'Größe')").hashes
    second = tokenize("foo_BAR  X1 größe").hashes
    assert first.size == 3
    assert np.array_equal(first, second)
    assert not np.array_equal(tokenize("foo bar").hashes, tokenize("bar foo").hashes)


def test_long_texts_are_tokenized_in_pieces_without_splitting_tokens():
    text = " ".join(f"word{i}" for i in range(200_000))  # ~1.4 MB, more than one piece
    hashes = tokenize(text).hashes
    assert hashes.size == 200_000
    assert hashes[150_000] == tokenize("word150000").hashes[0]


def test_ngram_hashes_depend_on_order_and_content():
    hashes = tokenize("a b c a b c").hashes
    trigrams = ngram_hashes(hashes, 3)
    assert trigrams.size == 4
    assert trigrams[0] == trigrams[3] and trigrams[0] != trigrams[1]
    assert ngram_hashes(hashes, 7).size == 0


# --- the shared benchmark files -------------------------------------------------------------


def test_humaneval_canonical_solution_is_caught(benchmarks):
    problem = first_record("humaneval/HumanEval.jsonl.gz", task_id="HumanEval/0")
    file = "import math\n\n\ndef close(numbers, threshold):\n" + problem["canonical_solution"] + "\n\nprint(close([1.0], 0.5))\n"
    match = benchmarks.match(file)
    assert match is not None and match.endswith("(10-gram)")
    assert "HumanEval/0" in match or "Python/0" in match  # HumanEval or its HumanEval-X copy


def test_mbpp_reference_solution_is_caught(benchmarks):
    task = first_record("mbpp/mbpp.jsonl.gz", task_id=12)
    match = benchmarks.match("# utilities\n" + task["code"] + "\n")
    assert match is not None and match.startswith("mbpp ")


def test_gsm8k_question_in_a_docstring_is_caught(benchmarks):
    question = first_record("gsm8k/test.jsonl.gz")["question"]
    file = f'def solve():\n    """{question}"""\n    return 16 - 3 - 4\n'
    assert benchmarks.match(file) == "gsm8k #0 (10-gram)"


def test_multiple_benchmark_boilerplate_does_not_match(benchmarks):
    # Every MultiPL-E C# prompt starts with these usings (Visual Studio's default set and more);
    # as boilerplate shared by all records they identify no task.
    usings = first_record("deepseek-humaneval-multilingual/humaneval-cs.jsonl.gz")["prompt"].split("class")[0]
    assert usings.count("using") >= 5
    assert benchmarks.match(usings + "class Program { static void Main() { } }\n") is None


def test_mbpp_test_assert_is_caught_exactly(benchmarks):
    assert benchmarks.match("def test():\n    assert remove_Occ('hello','l') == 'heo'\n") == "mbpp 11 (exact)"
    assert benchmarks.match("def test():\n    assert remove_Occ('hello','l') == 'hel'\n") is None


def test_ordinary_stdlib_code_is_not_caught(benchmarks):
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    sample = files[:: max(1, len(files) // 400)]
    hits = {}
    for path in sample:
        try:
            match = benchmarks.match(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
        if match:
            hits[str(path.relative_to(root))] = match
    # Over all 1786 stdlib modules of CPython 3.11, 6 files match, each for real shared text:
    # Counter.elements' docstring (quoted by MBPP 810), a class comparing `self.value` in
    # `__lt__` (MBPP 342) and the number-word table of HumanEval/19 ('one': 1, 'two': 2, ...).
    assert len(sample) >= 300
    assert len(hits) <= 3, hits


def test_decontaminator_survives_pickling(benchmarks):
    clone = pickle.loads(pickle.dumps(benchmarks))
    question = first_record("gsm8k/test.jsonl.gz")["question"]
    assert clone.match(question) == benchmarks.match(question)
    assert clone.size == benchmarks.size


def test_load_decontaminator_builds_once_per_folder(benchmarks, monkeypatch):
    monkeypatch.chdir(BENCHMARKS)
    assert load_decontaminator(".") is benchmarks
    assert load_decontaminator(str(BENCHMARKS) + "/") is benchmarks


# --- synthetic benchmark folders ------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def humaneval_record(task: int, solution: str, test: str) -> dict:
    return {"task_id": f"Toy/{task}", "prompt": "", "canonical_solution": solution, "test": test, "entry_point": "f"}


def test_short_strings_with_a_specific_name_must_appear_exactly(tmp_path):
    write_jsonl(tmp_path / "toy.jsonl", [humaneval_record(1, "", "assert spiral_sum(3) == 9"), humaneval_record(2, "", "return len(s)")])
    decontaminator = Decontaminator.from_dir(tmp_path)
    assert decontaminator.size == (0, 1)  # `return len(s)` names nothing specific
    assert decontaminator.match("x = 1\nassert spiral_sum(3) == 9\n") == "humaneval Toy/1 (exact)"
    assert decontaminator.match("ASSERT SPIRAL_SUM ( 3 ) == 9") == "humaneval Toy/1 (exact)"
    assert decontaminator.match("assert spiral_sum(3) == 10") is None
    assert decontaminator.match("spiral_sum(3) == 9") is None
    assert decontaminator.match("def f(s):\n    return len(s)\n") is None


def test_short_math_strings_need_a_number_of_two_digits(tmp_path):
    write_jsonl(tmp_path / "math.jsonl", [{"problem": "Compute $\\dbinom{16}{5}$.", "solution": "x"}, {"problem": "Simplify $(2-2i)$.", "solution": "y"}])
    decontaminator = Decontaminator.from_dir(tmp_path)
    assert decontaminator.match("% exercise: compute \\dbinom{16}{5}") == "math #0 (exact)"
    assert decontaminator.match("simplify (2-2i) first") is None


SOLUTION = "def spiral_sum(grid):\n    total = sum(row[index] for index, row in enumerate(grid))\n    return total + spiral_border(grid)\n"


def test_ten_grams_in_three_records_of_a_file_are_boilerplate(tmp_path):
    header = "import collections import functools import itertools import operator import random\n"
    records = [humaneval_record(1, header + SOLUTION, "")]
    records += [humaneval_record(task, header + f"def other{task}(x):\n    return x\n", "") for task in (2, 3)]
    write_jsonl(tmp_path / "toy.jsonl", records)
    decontaminator = Decontaminator.from_dir(tmp_path)
    assert decontaminator.match("# mine\n" + SOLUTION) == "humaneval Toy/1 (10-gram)"
    assert decontaminator.match(header) is None  # in three records: boilerplate
    # Two records may share text (near-duplicate tasks) and still count.
    write_jsonl(tmp_path / "toy.jsonl", records[:2])
    assert Decontaminator.from_dir(tmp_path).match(header) == "humaneval Toy/1 (10-gram)"


def test_ten_grams_without_enough_words_are_ignored(tmp_path):
    solution = "x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\nfor i in range(n):\n    for j in range(n):\n        grid_total += grid[i][j]\n"
    write_jsonl(tmp_path / "toy.jsonl", [humaneval_record(1, solution, "")])
    decontaminator = Decontaminator.from_dir(tmp_path)
    assert decontaminator.match("values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n") is None
    assert decontaminator.match("for i in range(n):\n    for j in range(n):\n") is None  # 3 distinct words
    assert decontaminator.match("range(n):\n    for j in range(n):\n        grid_total += grid[i][j]\n") == "humaneval Toy/1 (10-gram)"


def test_unknown_files_use_every_string_and_json_may_be_lines(tmp_path):
    (tmp_path / "custom.json").write_text(json.dumps([{"id": "q1", "meta": {"question": "Which gardener planted seventeen tulips beside the old stone bridge yesterday?"}}]))
    (tmp_path / "lines.json").write_text(json.dumps({"idx": 7, "question": "How many marbles does Priya keep after giving away twelve of them?", "answer": "3"}) + "\n")
    decontaminator = Decontaminator.from_dir(tmp_path)
    assert decontaminator.match("// Which gardener planted seventeen tulips beside the old stone bridge yesterday?") == "custom q1 (10-gram)"
    assert decontaminator.match("How many marbles does Priya keep after giving away twelve of them") == "gsm8k 7 (10-gram)"


def test_bad_benchmark_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Decontaminator.from_dir(tmp_path / "missing")
    (tmp_path / "README.md").write_text("no data here")
    with pytest.raises(UserError, match="no benchmark files"):
        Decontaminator.from_dir(tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(UserError, match="line 2"):
        Decontaminator.from_dir(tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"answer": 3}\n')
    with pytest.raises(UserError, match="no text"):
        Decontaminator.from_dir(tmp_path)
