"""Quality screening (SPEC 1.4): a parser's verdict plus a few cheap readability heuristics.

DeepSeek-Coder used a compiler, a quality model and undisclosed heuristics; this module replaces
them with transparent checks whose thresholds were calibrated on real code (docs/data-rules.md
gives each rule, its threshold and the measurements behind it). `quality_check` returns the
reason of the first check a file fails, in the order of QUALITY_REASONS.
"""

from __future__ import annotations

import re
import warnings

import tree_sitter

from dscoder.data.deps.syntax import parse
from dscoder.data.languages import Language

QUALITY_REASONS: tuple[str, ...] = ("syntax_error", "encoded_data", "low_code_ratio")

# Largest share of a file's non-blank lines on which tree-sitter found an error. Java and C#
# grammars are exact enough to flag any error (0 of 400 JDK files had one). In C and C++ the
# preprocessor hides syntax from the parser: real headers reach 15-25% of lines with an error,
# code in another language 50-100% (measurements in docs/data-rules.md).
MAX_ERROR_LINE_SHARE = {"Java": 0.0, "C#": 0.0, "C": 0.3, "C++": 0.3}

MAX_ENCODED_SHARE = 0.3  # of the file's characters inside encoded blobs
MAX_LITERAL_SHARE = 0.85  # of the non-blank characters of code and literals (comments excluded)
MIN_CHARS_FOR_LITERAL_SHARE = 2000  # smaller files are judged by the other rules only


def quality_check(path: str, language: Language, text: str) -> str | None:
    """The first quality check `text` fails, as a QUALITY_REASONS entry, or None to keep it."""
    if not parses(path, language, text):
        return "syntax_error"
    if encoded_share(text) > MAX_ENCODED_SHARE:
        return "encoded_data"
    if len(text) >= MIN_CHARS_FOR_LITERAL_SHARE:
        share = literal_share(language, text)
        if share is not None and share > MAX_LITERAL_SHARE:
            return "low_code_ratio"
    return None


# --- syntax ---------------------------------------------------------------------------------


def parses(path: str, language: Language, text: str) -> bool:
    """Whether `text` is syntactically valid; True for languages this module has no parser for."""
    if language.name == "Python":
        return _python_compiles(path, text)
    threshold = MAX_ERROR_LINE_SHARE.get(language.name)
    if threshold is None:
        return True
    share = error_line_share(parse(language.name, text), text)
    if share > threshold and language.name == "C":
        # Headers shared with C++ (extern "C" blocks, C++-only macros) parse better as C++.
        share = min(share, error_line_share(parse("C++", text), text))
    return share <= threshold


def _python_compiles(path: str, text: str) -> bool:
    # The running interpreter's compiler decides, so the accepted grammar is this Python's:
    # Python 2 files (print statements, `except E, e`) fail, and so does syntax newer than it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning/DeprecationWarning are not errors
        try:
            compile(text, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            # ValueError: NUL bytes; RecursionError/MemoryError: absurdly nested expressions.
            return False
    return True


def error_line_share(root: tree_sitter.Node, text: str) -> float:
    """Share of the non-blank lines of `text` holding a token tree-sitter could not place in the
    grammar, or a token it had to invent (a MISSING `;` or `}`).

    Counting lines rather than the bytes of ERROR nodes matters: an ERROR node can wrap a whole
    well-formed function after one bad macro line, while code in another language breaks nearly
    every line.
    """
    if not root.has_error:
        return 0.0
    error_lines: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing or (node.is_error and node.child_count == 0):
            error_lines.add(node.start_point[0])
            continue
        for child in node.children:
            if node.is_error and child.child_count == 0:
                error_lines.add(child.start_point[0])
            elif child.has_error or child.is_missing:
                stack.append(child)
    nonblank_lines = sum(1 for line in text.splitlines() if line.strip())
    return min(1.0, len(error_lines) / max(nonblank_lines, 1))


# --- encoded data ---------------------------------------------------------------------------

# Each pattern starts with a plain character class or literal so that `re` can skip ahead quickly.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")  # also catches long hex digests glued together
_ESCAPED_BYTES = re.compile(
    r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})(?:\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})){15,}"
)
# Numeric tables such as `0x1f, 0x8b, ...` or `12, -3, 0.5f, ...`, across any number of lines.
_NUMERIC_TABLE = re.compile(r"\d[\w.]*\s*,\s*(?:-?\d[\w.]*\s*,\s*){31,}")
_MIN_BASE64_RUN = 64


def encoded_share(text: str) -> float:
    """Share of the characters of `text` inside blobs of encoded data or numeric tables."""
    if not text:
        return 0.0
    blob = 0
    # Base64 needs 64 characters without a space, so only long whitespace-free words can hold
    # one; running the pattern on those alone is ~10x faster than on the whole text.
    for word in text.split():
        if len(word) >= _MIN_BASE64_RUN:
            blob += sum(map(len, _BASE64_RUN.findall(word)))
    blob += sum(map(len, _ESCAPED_BYTES.findall(text)))
    blob += sum(map(len, _NUMERIC_TABLE.findall(text)))
    return min(1.0, blob / len(text))


# --- literals versus code -------------------------------------------------------------------

# Each scanner matches comments and string literals left to right, so quotes inside comments and
# comment markers inside strings are consumed by the right token. Group 1 holds a literal; a
# comment leaves it empty. Approximate by design (no regex literals, no nested comments).
_PYTHON_SCANNER = re.compile(
    r"#[^\n]*"
    r'|((?:"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*""")'
    r"|(?:'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*''')"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'(?:[^'\\\n]|\\.)*')",
    re.DOTALL,
)
_C_FAMILY_SCANNER = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r'|((?:R"([^(\s]{0,16})\(.*?\)\2")'  # C++ raw string
    r'|(?:@"(?:[^"]|"")*")'  # C# verbatim string
    r'|(?:"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*""")'  # Java/Kotlin/Scala/C# text block
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'(?:[^'\\\n]|\\.)*'"
    r"|`(?:[^`\\]|\\.)*`)",  # JavaScript template literal, Go raw string
    re.DOTALL,
)
_SCANNERS = {
    "Python": _PYTHON_SCANNER,
    **dict.fromkeys(
        ("C", "C++", "C#", "Java", "JavaScript", "TypeScript", "Go", "Kotlin", "Scala", "Dart", "CUDA", "Groovy"),
        _C_FAMILY_SCANNER,
    ),
}


def literal_share(language: Language, text: str) -> float | None:
    """Share of the non-blank characters of code and string literals that lie in literals;
    comments count for neither. None for languages without a scanner."""
    scanner = _SCANNERS.get(language.name)
    if scanner is None:
        return None
    literal = comment = 0
    for match in scanner.finditer(text):
        if match.group(1) is not None and not (scanner is _PYTHON_SCANNER and _is_docstring(text, match)):
            literal += _nonblank(match.group(1))
        else:
            comment += _nonblank(match.group(0))
    code_and_literal = _nonblank(text) - comment
    return literal / code_and_literal if code_and_literal else 0.0


_STRING_PREFIXES = frozenset({"", "r", "u", "b", "f", "rb", "br", "fr", "rf"})


def _is_docstring(text: str, match: re.Match) -> bool:
    # A triple-quoted string that opens its line is documentation (a docstring, or a block of
    # prose parked in a string), which this heuristic counts with comments, not with data.
    if not match.group(0).startswith(('"""', "'''")):
        return False
    line_start = text.rfind("\n", 0, match.start()) + 1
    return text[line_start : match.start()].strip().lower() in _STRING_PREFIXES


def _nonblank(text: str) -> int:
    return len("".join(text.split()))
