"""Syntax check and readability heuristics: each check trips on a bad file and spares a near miss;
the standard library's own code passes."""

import base64
import random
import sysconfig
from pathlib import Path

import pytest

from dscoder.data.deps.syntax import parse
from dscoder.data.filters import rule_filter
from dscoder.data.languages import LANGUAGES, detect_language
from dscoder.data.quality import (
    MAX_ERROR_LINE_SHARE,
    MIN_CHARS_FOR_LITERAL_SHARE,
    QUALITY_REASONS,
    encoded_share,
    error_line_share,
    literal_share,
    quality_check,
)


def check_as(language: str, text: str, path: str = "file") -> str | None:
    reason = quality_check(path, LANGUAGES[language], text)
    assert reason is None or reason in QUALITY_REASONS
    return reason


PYTHON_MODULE = '''"""Small helpers for reading configuration."""

import json


def load(path):
    """Read a JSON configuration file."""
    with open(path) as handle:
        return json.load(handle)


class Settings:
    def __init__(self, values):
        self.values = dict(values)

    def get(self, key, default=None):
        return self.values.get(key, default)
'''

JAVA_CLASS = """package demo;

import java.util.List;

public class Totals {
    public static int sum(List<Integer> values) {
        int total = 0;
        for (int value : values) {
            total += value;
        }
        return total;
    }
}
"""

CSHARP_CLASS = """using System;

namespace Demo
{
    public class Greeter
    {
        public string Greet(string name) => $"Hello {name}";

        public static void Main(string[] args)
        {
            Console.WriteLine(new Greeter().Greet("world"));
        }
    }
}
"""

# A C header in the style of real libraries: the export macros are unknown to tree-sitter.
C_HEADER_WITH_MACROS = """#ifndef LIST_H
#define LIST_H
#include <stddef.h>

LIST_BEGIN_DECLS

/* A singly linked list of opaque values. */
typedef struct node {
    struct node *next;
    void *value;
} node_t;

/* Puts value in front of head and returns the new head. */
LIST_API node_t *list_push(node_t *head, void *value) LIST_NONNULL(1);

/* Counts the nodes from head to the end of the list. */
LIST_API size_t list_length(const node_t *head);

/* Frees every node, calling release on each value first. */
LIST_API void list_free(node_t *head, void (*release)(void *));

/* True for the empty list. */

static inline int list_empty(const node_t *head) { return head == NULL; }

LIST_END_DECLS
#endif
"""

CPP_SOURCE = """#include <vector>
#include <string>

namespace text {
template <typename T>
T total(const std::vector<T>& values) {
    T sum{};
    for (const auto& value : values) sum += value;
    return sum;
}

std::string shout(std::string word) {
    for (auto& c : word) c = static_cast<char>(toupper(c));
    return word;
}
}  // namespace text
"""


# --- syntax ---------------------------------------------------------------------------------


def test_valid_python_passes_and_broken_python_is_dropped():
    assert check_as("Python", PYTHON_MODULE) is None
    assert check_as("Python", PYTHON_MODULE + "\ndef broken(:\n    pass\n") == "syntax_error"


def test_python_2_code_is_dropped_because_the_running_interpreter_decides():
    assert check_as("Python", 'print "hello"\n') == "syntax_error"
    assert check_as("Python", "try:\n    pass\nexcept ValueError, error:\n    pass\n") == "syntax_error"


def test_python_warnings_and_null_bytes():
    # A SyntaxWarning is not an error; a NUL byte makes the source uncompilable.
    assert check_as("Python", "assert (1, 'always true')\nif 1 is 1:\n    pass\n") is None
    assert check_as("Python", "x = 1\x00\n") == "syntax_error"


@pytest.mark.parametrize(
    ("language", "valid", "broken"),
    [
        ("Java", JAVA_CLASS, JAVA_CLASS.replace("int total = 0;", "int total = ;")),
        ("Java", JAVA_CLASS, JAVA_CLASS.replace("total += value;", "total += value")),  # a MISSING `;`
        ("C#", CSHARP_CLASS, CSHARP_CLASS.replace("public string Greet(string name)", "public string Greet(string name")),
    ],
)
def test_java_and_csharp_tolerate_no_syntax_error(language, valid, broken):
    assert check_as(language, valid) is None
    assert check_as(language, broken) == "syntax_error"


def test_c_macros_that_confuse_the_parser_are_tolerated():
    share = error_line_share(parse("C", C_HEADER_WITH_MACROS), C_HEADER_WITH_MACROS)
    assert 0 < share <= MAX_ERROR_LINE_SHARE["C"]
    assert check_as("C", C_HEADER_WITH_MACROS, "include/list.h") is None


def test_a_broken_line_in_cpp_is_tolerated_but_a_broken_file_is_not():
    assert check_as("C++", CPP_SOURCE) is None
    assert check_as("C++", CPP_SOURCE + "int main( { return ]] ;\n") is None
    garbled = "\n".join(line[::-1] for line in CPP_SOURCE.splitlines())
    assert check_as("C++", garbled) == "syntax_error"


@pytest.mark.parametrize("language", ["C", "C++"])
def test_code_in_another_language_fails_the_c_parsers(language):
    assert error_line_share(parse(language, PYTHON_MODULE), PYTHON_MODULE) > MAX_ERROR_LINE_SHARE[language]
    assert check_as(language, PYTHON_MODULE) == "syntax_error"


def test_languages_without_a_parser_get_no_syntax_check():
    assert check_as("Ruby", "def broken(:\n  }}}\n") is None


def test_error_line_share_is_zero_for_clean_trees():
    assert error_line_share(parse("Java", JAVA_CLASS), JAVA_CLASS) == 0.0


# --- encoded data ---------------------------------------------------------------------------


def base64_lines(size: int) -> str:
    blob = base64.encodebytes(random.Random(0).randbytes(size)).decode()
    return "".join(f'    "{line}"\n' for line in blob.splitlines())


def test_a_file_that_is_mostly_an_encoded_blob_is_dropped():
    with_blob = PYTHON_MODULE + "\nICON = (\n" + base64_lines(3000) + ")\n"
    assert encoded_share(with_blob) > 0.3
    assert check_as("Python", with_blob) == "encoded_data"
    with_small_blob = PYTHON_MODULE + "\nICON = (\n" + base64_lines(150) + ")\n"
    assert 0 < encoded_share(with_small_blob) <= 0.3
    assert check_as("Python", with_small_blob) is None


def test_numeric_tables_count_as_encoded_data():
    table = ",\n".join(", ".join(f"0x{(row * 16 + col) % 256:02x}" for col in range(12)) for row in range(60))
    c_file = f"static const unsigned char font[] = {{\n{table}\n}};\n\nint glyph(int i) {{ return font[i]; }}\n"
    assert check_as("C", c_file) == "encoded_data"
    # A short initialiser list is ordinary code.
    assert encoded_share("int primes[] = {2, 3, 5, 7, 11, 13, 17, 19};\n") == 0.0


def test_escaped_bytes_count_as_encoded_data():
    escaped = "".join(f"\\x{b:02x}" for b in random.Random(1).randbytes(400))
    assert encoded_share(f'PAYLOAD = b"{escaped}"\n') > 0.9


# --- literals versus code -------------------------------------------------------------------

PROSE = "The quick brown fox jumps over the lazy dog near the river bank. "


def test_a_file_that_is_mostly_one_string_literal_is_dropped():
    data = 'WORDS = """\n' + PROSE * 60 + '\n"""\n\n\ndef words():\n    return WORDS.split()\n'
    assert len(data) >= MIN_CHARS_FOR_LITERAL_SHARE
    assert check_as("Python", data) == "low_code_ratio"


def test_docstrings_are_documentation_not_data():
    documented = '"""\n' + PROSE * 60 + '\n"""\n\n\ndef words():\n    return []\n'
    assert literal_share(LANGUAGES["Python"], documented) == 0.0
    assert check_as("Python", documented) is None


def test_small_files_are_not_judged_by_their_literals():
    small = 'GREETING = "' + "hello " * 100 + '"\nprint(GREETING)\n'
    assert len(small) < MIN_CHARS_FOR_LITERAL_SHARE
    assert check_as("Python", small) is None


def test_java_string_tables_are_dropped_and_comments_do_not_count():
    rows = "\n".join(f'        {{"key{i}", "{PROSE.strip()}"}},' for i in range(40))
    bundle = f"public class Messages {{\n    static final String[][] CONTENTS = {{\n{rows}\n    }};\n}}\n"
    assert check_as("Java", bundle) == "low_code_ratio"
    commented = "/* " + PROSE * 60 + " */\n" + JAVA_CLASS
    assert literal_share(LANGUAGES["Java"], commented) == 0.0
    assert check_as("Java", commented) is None


def test_quotes_inside_comments_do_not_open_literals():
    text = "# don't panic, it's fine\nx = compute(1)  # the user's value\n"
    assert literal_share(LANGUAGES["Python"], text) == 0.0


# --- the standard library passes ------------------------------------------------------------

STDLIB_SAMPLE = 300


def stdlib_python_files(count: int) -> list[Path]:
    """An even spread of the running interpreter's own .py files (no site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    step = max(1, len(files) // count)
    return files[::step][:count]


def test_the_standard_library_passes_rules_and_quality():
    results = {}
    for path in stdlib_python_files(STDLIB_SAMPLE):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # test data in other encodings; the pipeline drops those before filtering
        language = detect_language(path.name)
        results[path] = rule_filter(str(path), language, text) or quality_check(str(path), language, text)
    passed = sum(reason is None for reason in results.values())
    # Measured on CPython 3.11: about 96% pass; the rest are empty __init__ files, generated
    # tables, deliberately broken test inputs and doctest-in-string tests.
    assert len(results) >= STDLIB_SAMPLE * 0.95
    assert passed / len(results) >= 0.9, {str(p): r for p, r in results.items() if r}
