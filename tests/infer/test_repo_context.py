"""Repository context: dependencies in pipeline order with path comments, fitted to a budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from dscoder.data.steps import build_samples
from dscoder.data.languages import detect_language
from dscoder.errors import UserError
from dscoder.infer import build_repo_context
from dscoder.tokenizer import Tokenizer

FILES = {
    "pkg/__init__.py": "",
    "pkg/utils.py": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n",
    "pkg/models.py": "from pkg.utils import clamp\n\n\nclass Box:\n    def __init__(self, w):\n        self.w = clamp(w, 0, 9)",
    "app.py": "from pkg.models import Box\n\nbox = Box(",
    "unrelated.py": "print('not imported by app')\n",
    "README.md": "# demo\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for path, text in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    return tmp_path


def test_dependencies_come_first_with_path_comments(repo: Path, tokenizer: Tokenizer):
    context = build_repo_context(repo, "app.py", tokenizer, max_tokens=10_000)
    assert context.files[-3:] == ["pkg/utils.py", "pkg/models.py", "app.py"]
    assert "unrelated.py" not in context.files and not context.dropped and not context.truncated
    assert context.text.endswith(
        "# pkg/utils.py\n" + FILES["pkg/utils.py"]
        + "# pkg/models.py\n" + FILES["pkg/models.py"] + "\n"  # a file is closed with a line break
        + "# app.py\n" + FILES["app.py"]  # the current file is left open
    )


def test_the_layout_is_the_training_samples_layout(repo: Path, tokenizer: Tokenizer):
    context = build_repo_context(repo, "app.py", tokenizer, max_tokens=10_000)
    files = {p: (detect_language(p), (repo / p).read_text()) for p in context.files}
    (sample,) = build_samples("repo", files, seed=0)
    assert sample.paths == context.files
    assert sample.text == context.text + "\n"  # training closes the last file too


def test_the_least_related_file_is_dropped_first(repo: Path, tokenizer: Tokenizer):
    full = build_repo_context(repo, "app.py", tokenizer, max_tokens=10_000)
    total = 1 + len(tokenizer.encode(full.text))
    # A budget a few tokens short: utils.py (imported through models.py) must go, not models.py.
    context = build_repo_context(repo, "app.py", tokenizer, max_tokens=total - 3)
    assert context.dropped == ["pkg/utils.py"]
    assert context.files[-2:] == ["pkg/models.py", "app.py"]
    assert 1 + len(tokenizer.encode(context.text)) <= total - 3


def test_a_file_too_long_for_the_budget_keeps_its_end_from_a_line_start(repo: Path, tokenizer: Tokenizer):
    lines = "".join(f"value_{i} = {i}\n" for i in range(200))
    context = build_repo_context(repo, "app.py", tokenizer, max_tokens=60, current_text=lines + "x = ")
    assert context.truncated and context.files == ["app.py"]
    assert len(context.dropped) == 0  # this text imports nothing
    assert (lines + "x = ").endswith(context.text) and context.text.startswith("value_")
    assert 1 + len(tokenizer.encode(context.text)) <= 60


def test_a_lone_file_is_a_single_file_sample_without_comment(repo: Path, tokenizer: Tokenizer):
    context = build_repo_context(repo, "unrelated.py", tokenizer, max_tokens=1000)
    assert context.text == FILES["unrelated.py"] and context.files == ["unrelated.py"]


def test_editor_text_replaces_the_file_and_may_be_new(repo: Path, tokenizer: Tokenizer):
    context = build_repo_context(repo, repo / "new.py", tokenizer, max_tokens=1000,
                                 current_text="from pkg.utils import clamp\nclamp(")
    assert context.files == ["pkg/utils.py", "new.py"]
    assert context.text.endswith("# new.py\nfrom pkg.utils import clamp\nclamp(")


def test_mistakes_are_user_errors(repo: Path, tokenizer: Tokenizer, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "x.py"
    outside.write_text("x = 1\n")
    with pytest.raises(UserError):
        build_repo_context(repo, outside, tokenizer, max_tokens=100)
    with pytest.raises(UserError):
        build_repo_context(repo, "missing.py", tokenizer, max_tokens=100)
    with pytest.raises(UserError):
        build_repo_context(repo / "nope", "app.py", tokenizer, max_tokens=100)
