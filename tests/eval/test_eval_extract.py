"""Stop-sequence truncation per language, and code-block extraction from chat answers."""

from __future__ import annotations

import pytest

from dscoder.eval.benchmarks.humaneval import PYTHON_STOPS
from dscoder.eval.extract import fenced_blocks, first_code_block, truncate_at_stop

# (language, stops as in DeepSeek's harness / the MultiPL-E files, a raw output, the kept part)
STOP_CASES = [
    ("python", PYTHON_STOPS,
     "\n    return a + b\n\n\ndef other():\n    pass\n",
     "\n    return a + b\n\n"),
    ("python", PYTHON_STOPS,  # indented `if` and `#` are part of the body; top-level ones end it
     "\n    if a:\n        # note\n        return 1\n    return 2\n\nif __name__ == '__main__':\n",
     "\n    if a:\n        # note\n        return 1\n    return 2\n"),
    ("python", PYTHON_STOPS, "\n    return 1\nprint(f(2))", "\n    return 1"),
    ("cpp", ("\n}",), "\n    return a + b;\n}\nint main() {}\n", "\n    return a + b;"),
    ("java", ("\n    }\n",), "\n        return a + b;\n    }\n    public static void main", "\n        return a + b;"),
    ("cs", ("\n    }\n",), "\n        return a + b;\n    }\n}\n", "\n        return a + b;"),
    ("php", ("\nfunction", "\n?>", "\n//", "\n#"), "\n  return $a + $b;\n}\n?>\n", "\n  return $a + $b;\n}"),
    ("ts", ("\nfunction ", "\n/*", "\n//", "\nclass", "\nexport"),
     "\n  return a + b;\n}\n\nexport default add;\n", "\n  return a + b;\n}\n"),
    ("js", ("\nfunction ", "\n/*", "\n//", "\nconsole.log"), "\n  return a + b;\n}\nconsole.log(add(1, 2));",
     "\n  return a + b;\n}"),
    ("sh", ("\n}",), '\n    echo $(( $1 + $2 ))\n}\n\nadd 1 2\n', "\n    echo $(( $1 + $2 ))"),
]


@pytest.mark.parametrize("language, stops, output, kept", STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_truncate_at_earliest_stop(language: str, stops: tuple[str, ...], output: str, kept: str) -> None:
    assert truncate_at_stop(output, stops) == kept


def test_no_stop_keeps_everything() -> None:
    assert truncate_at_stop("x = 1\n", ("\ndef",)) == "x = 1\n"
    assert truncate_at_stop("x = 1\n", ()) == "x = 1\n"


ANSWER = """Here is the function:

```py
def add(a, b):
    return a + b
```

And in C++:
```c++
int add(int a, int b) { return a + b; }
```
"""


def test_fenced_blocks_in_order_with_their_tags() -> None:
    blocks = fenced_blocks(ANSWER)
    assert [b.tag for b in blocks] == ["py", "c++"]
    assert blocks[0].code == "def add(a, b):\n    return a + b\n"
    assert all(b.closed for b in blocks)


def test_first_block_by_language_alias() -> None:
    assert first_code_block(ANSWER, "python").startswith("def add")
    assert first_code_block(ANSWER, "cpp").startswith("int add")


def test_untagged_block_is_the_fallback_and_none_without_blocks() -> None:
    assert first_code_block("```\nputs 1\n```", "python") == "puts 1\n"
    assert first_code_block("no code here", "python") is None


def test_unclosed_last_block_counts() -> None:
    blocks = fenced_blocks("```python\ndef solution():\n    return 1")
    assert blocks[0].closed is False
    assert blocks[0].code == "def solution():\n    return 1"
