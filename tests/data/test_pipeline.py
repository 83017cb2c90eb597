"""End-to-end tests of `dscoder data build`: inputs, outputs, accounting, bad input, resume, Ray."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from benchmark_data import BENCHMARKS, require

from dscoder.cli import main
from dscoder.data.executors import LocalExecutor, RayExecutor
from dscoder.data.pipeline import build
from dscoder.data.sources import plan_repositories
from dscoder.data.steps import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]

UTILS = '''"""Small helpers shared by the application."""


def clamp(value, low, high):
    """Return value limited to the closed range [low, high]."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def mean(values):
    """Arithmetic mean of a non-empty sequence of numbers."""
    total = 0.0
    for value in values:
        total += value
    return total / len(values)
'''

MODELS = '''"""Domain objects."""
from .utils import clamp


class Temperature:
    """A temperature reading in degrees Celsius, limited to a plausible range."""

    def __init__(self, celsius):
        self.celsius = clamp(celsius, -90.0, 60.0)

    def fahrenheit(self):
        return self.celsius * 9.0 / 5.0 + 32.0
'''

APP = '''"""Command line entry point."""
from app.models import Temperature
from app.utils import mean


def summarize(readings):
    temperatures = [Temperature(value) for value in readings]
    return mean([t.fahrenheit() for t in temperatures])


if __name__ == "__main__":
    print(summarize([12.5, 14.0, 9.75]))
'''

JAVA_SHAPE = """package geo;

public class Shape {
    protected final String name;

    public Shape(String name) {
        this.name = name;
    }

    public double area() {
        return 0.0;
    }
}
"""

JAVA_CIRCLE = """package geo;

import geo.Shape;

public class Circle extends Shape {
    private final double radius;

    public Circle(double radius) {
        super("circle");
        this.radius = radius;
    }

    @Override
    public double area() {
        return Math.PI * radius * radius;
    }
}
"""

README = "# Weather tools\n\nThis project converts and summarizes temperature readings for the station network.\n"


def make_app_repo(root: Path, name: str = "weather") -> Path:
    repo = root / name
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "__init__.py").write_text('"""The weather application package."""\n')
    (repo / "app" / "utils.py").write_text(UTILS)
    (repo / "app" / "models.py").write_text(MODELS)
    (repo / "app" / "main.py").write_text(APP)
    (repo / "README.md").write_text(README)
    return repo


def make_java_repo(root: Path, name: str = "shapes") -> Path:
    repo = root / name
    (repo / "src" / "geo").mkdir(parents=True)
    (repo / "src" / "geo" / "Shape.java").write_text(JAVA_SHAPE)
    (repo / "src" / "geo" / "Circle.java").write_text(JAVA_CIRCLE)
    return repo


def read_samples(output: Path) -> list[dict]:
    rows = []
    for shard in sorted(output.glob("part-*.parquet")):
        rows.extend(pq.read_table(shard).to_pylist())
    return rows


def run_build(refs, output, **config) -> dict:
    return build(refs, output, PipelineConfig(**config), LocalExecutor(1), progress=False).report


def assert_accounting_closes(report: dict) -> None:
    assert report["files_seen"] == report["files_kept"] + sum(report["files_dropped"].values())


def test_repository_becomes_dependency_ordered_samples(tmp_path):
    repos = tmp_path / "repos"
    make_app_repo(repos)
    make_java_repo(repos)
    report = run_build(plan_repositories([], [str(repos)]), tmp_path / "out")
    samples = read_samples(tmp_path / "out")
    python = next(s for s in samples if s["language"] == "Python" and len(s["paths"]) > 1)
    order = python["paths"]
    assert order.index("app/utils.py") < order.index("app/models.py") < order.index("app/main.py")
    # Each file is headed by its path comment, in order.
    assert python["text"].startswith(f"# {order[0]}\n")
    for path in order:
        assert f"# {path}\n" in python["text"]
    java = next(s for s in samples if s["language"] == "Java")
    assert java["paths"] == ["src/geo/Shape.java", "src/geo/Circle.java"]
    assert java["text"].startswith("// src/geo/Shape.java\n")
    markdown = next(s for s in samples if s["language"] == "Markdown")
    assert markdown["text"] == README  # other languages: one file per sample, unchanged
    assert report["files_seen"] == 7 and report["files_kept"] == 7
    assert set(report["languages"]) == {"Python", "Java", "Markdown"}
    assert abs(sum(e["share"] for e in report["languages"].values()) - 100) < 1e-6
    assert_accounting_closes(report)
    ids = [s["id"] for s in samples]
    assert len(ids) == len(set(ids))


def test_outputs_are_readable_by_pyarrow_and_datasets(tmp_path):
    make_app_repo(tmp_path / "repos")
    run_build(plan_repositories([str(tmp_path / "repos" / "weather")]), tmp_path / "out")
    out = tmp_path / "out"
    table = pq.read_table(sorted(out.glob("part-*.parquet"))[0])
    assert {"id", "repo", "language", "paths", "text"} <= set(table.column_names)
    import datasets

    dataset = datasets.load_dataset("parquet", data_files=[str(p) for p in out.glob("part-*.parquet")], split="train")
    assert dataset.num_rows == table.num_rows
    report = json.loads((out / "report.json").read_text())
    for key in ("files_seen", "files_kept", "files_dropped", "samples", "languages"):
        assert key in report
    assert "| Language | Size (MB) | Files | Share (%) |" in (out / "report.md").read_text()
    assert (out / "languages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "_work").exists()


def test_bad_input_is_counted_and_the_run_goes_on(tmp_path, monkeypatch):
    repo = make_app_repo(tmp_path / "repos", "messy")
    (repo / "blob.py").write_bytes(b"import os\x00\x01\x02binary")
    (repo / "latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    with open(repo / "huge.py", "wb") as handle:  # 50 MB, sparse: costs no disk
        handle.truncate(50 * 1024 * 1024)
    outside = tmp_path / "secret.py"
    outside.write_text("TOKEN = 'do not read me'\n")
    (repo / "outside.py").symlink_to(outside)
    (repo / "inside.py").symlink_to(repo / "app" / "utils.py")
    (repo / "loop_a.py").symlink_to(repo / "loop_b.py")
    (repo / "loop_b.py").symlink_to(repo / "loop_a.py")
    (repo / "dangling.py").symlink_to(repo / "missing.py")
    (repo / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    (repo / "locked.py").write_text("x = 1\n")
    os.mkfifo(repo / "pipe.py")
    empty = tmp_path / "repos" / "empty"
    empty.mkdir()

    import dscoder.data.sources as sources

    real_open = open

    def deny_locked(path, *args, **kwargs):
        if str(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", deny_locked, raising=False)
    list_file = tmp_path / "repos.txt"
    list_file.write_text(f"{repo}\n{empty}\nfile://{tmp_path}/no-such-repo.git\n")
    report = run_build(plan_repositories([str(list_file)]), tmp_path / "out")
    dropped = report["files_dropped"]
    for reason in ("binary", "invalid_utf8", "too_large", "symlink_outside_repo", "symlink_loop",
                   "symlink_broken", "symlink_directory", "unreadable", "not_regular_file"):
        assert dropped.get(reason, 0) >= 1, reason
    assert dropped["symlink_loop"] == 2
    assert report["repos"]["failed"] == {"clone_failed": 1}
    assert report["repos"]["seen"] == 3
    assert_accounting_closes(report)
    texts = "".join(s["text"] for s in read_samples(tmp_path / "out"))
    assert "do not read me" not in texts
    assert "def clamp" in texts  # the good files made it through


def test_git_urls_tables_and_lists(tmp_path):
    source = make_app_repo(tmp_path / "src", "gitrepo")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for command in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(command, cwd=source, check=True, env=env)
    rows = [
        {"repo": "tabled", "path": "lib/a.py", "content": UTILS},
        {"repo": "tabled", "path": "lib/b.py", "content": "from lib.a import clamp\n\n\ndef limit(v):\n    return clamp(v, 0, 1)\n"},
        {"repo": "other", "path": "notes.md", "content": README},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "files.parquet")
    with gzip.open(tmp_path / "files.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"repo": "jsonl", "path": "x.py", "content": MODELS}) + "\n")
        handle.write("{not json\n")
        handle.write(json.dumps({"repo": "jsonl", "path": 3}) + "\n")
    refs = plan_repositories([f"file://{source}", str(tmp_path / "files.parquet"), str(tmp_path / "files.jsonl.gz")])
    report = run_build(refs, tmp_path / "out")
    samples = read_samples(tmp_path / "out")
    repos = {s["repo"] for s in samples}
    assert {"gitrepo", "tabled", "other", "jsonl"} <= repos
    tabled = next(s for s in samples if s["repo"] == "tabled")
    assert tabled["paths"] == ["lib/a.py", "lib/b.py"]
    assert report["files_dropped"]["malformed_row"] == 2
    assert_accounting_closes(report)


def test_near_duplicate_repository_is_removed_whole(tmp_path):
    repos = tmp_path / "repos"
    make_app_repo(repos, "original")
    copy = make_app_repo(repos, "fork")
    edited = (copy / "app" / "main.py").read_text().replace("Command line entry point", "Entry point for the CLI")
    (copy / "app" / "main.py").write_text(edited.replace("temperatures", "temps") + "\n\nVERSION = '1.1'\n")
    make_java_repo(repos)
    report = run_build(plan_repositories([], [str(repos)]), tmp_path / "out")
    duplicates = [json.loads(line) for line in (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    python_dupes = [d for d in duplicates if {d["removed_repo"], d["kept_repo"]} == {"original", "fork"}]
    assert python_dupes and all(d["kind"] in ("near", "exact") for d in python_dupes)
    samples = read_samples(tmp_path / "out")
    multi = [s for s in samples if s["language"] == "Python" and len(s["paths"]) > 1]
    assert len(multi) == 1  # one of the two repositories survived, whole
    assert any(s["repo"] == "shapes" for s in samples)  # the distinct repository stays
    assert report["files_dropped"].get("near_duplicate", 0) + report["files_dropped"].get("exact_duplicate", 0) >= 4
    assert_accounting_closes(report)


def test_decontamination_drops_benchmark_code(tmp_path):
    repo = make_app_repo(tmp_path / "repos", "leaky")
    problem = json.loads(gzip.open(require(BENCHMARKS / "humaneval") / "HumanEval.jsonl.gz", "rt").readline())
    (repo / "app" / "solution.py").write_text(problem["prompt"] + problem["canonical_solution"])
    report = run_build(plan_repositories([str(repo)]), tmp_path / "out", decontaminate=str(BENCHMARKS))
    assert report["files_dropped"]["contaminated"] == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "contaminated.jsonl").read_text().splitlines()]
    assert rows[0]["path"] == "app/solution.py"
    assert all("app/solution.py" not in s["paths"] for s in read_samples(tmp_path / "out"))


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "dscoder", *args], capture_output=True, text=True, env=env, timeout=300)


def test_user_mistakes_get_one_line_and_status_2(tmp_path):
    missing = cli("data", "build", str(tmp_path / "nope"), "--output", str(tmp_path / "out"))
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and "no such file or directory" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    repo = make_app_repo(tmp_path / "repos")
    unwritable = cli("data", "build", str(repo), "--output", str(blocker / "out"))
    assert unwritable.returncode == 2
    assert "Traceback" not in unwritable.stderr and "cannot write to output folder" in unwritable.stderr
    assert main(["data", "build", str(repo), "--output", str(tmp_path / "o"), "--decontaminate", str(tmp_path / "nope")]) == 2


def _many_repos(root: Path, count: int) -> None:
    for i in range(count):
        repo = root / f"repo{i:02d}"
        (repo / "pkg").mkdir(parents=True)
        (repo / "pkg" / "__init__.py").write_text(f'"""Package number {i}."""\n')
        (repo / "pkg" / "core.py").write_text(UTILS.replace("clamp", f"clamp_{i}").replace("mean", f"mean_{i}") + f"\nLEVEL = {i}\n" * (i + 1))


def test_killed_run_resumes_and_matches_uninterrupted(tmp_path):
    repos = tmp_path / "repos"
    _many_repos(repos, 6)
    reference = tmp_path / "reference"
    assert cli("data", "build", "--repos-under", str(repos), "--output", str(reference), "--workers", "1").returncode == 0

    resumed = tmp_path / "resumed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DSCODER_TEST_TASK_DELAY_S": "1.0"}
    command = [sys.executable, "-m", "dscoder", "data", "build", "--repos-under", str(repos),
               "--output", str(resumed), "--workers", "1", "--no-progress", "--task-bytes", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((resumed / "_work").glob("task-*.pkl")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted((resumed / "_work").glob("task-*.pkl"))
    assert finished, "the run should have finished at least one task before the kill"

    again = cli("data", "build", "--repos-under", str(repos), "--output", str(resumed), "--workers", "1", "--task-bytes", "1")
    assert again.returncode == 0, again.stderr
    report = json.loads((resumed / "report.json").read_text())
    assert report["tasks_resumed"] == len(finished)
    assert read_samples(resumed) == read_samples(reference)
    reference_report = json.loads((reference / "report.json").read_text())
    for key in ("files_seen", "files_kept", "files_dropped", "samples", "languages"):
        assert report[key] == reference_report[key]


def test_ray_executor_gives_the_same_output(tmp_path):
    repos = tmp_path / "repos"
    make_app_repo(repos)
    make_java_repo(repos)
    _many_repos(repos, 3)
    refs = plan_repositories([], [str(repos)])
    local = build(refs, tmp_path / "local", PipelineConfig(), LocalExecutor(2), progress=False)
    ray_run = build(refs, tmp_path / "ray", PipelineConfig(), RayExecutor(workers=2), progress=False)
    assert read_samples(tmp_path / "local") == read_samples(tmp_path / "ray")
    assert local.report["files_dropped"] == ray_run.report["files_dropped"]
    assert local.report["languages"] == ray_run.report["languages"]
