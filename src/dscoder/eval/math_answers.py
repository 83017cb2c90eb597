"""Is a program's answer the expected one? Normalization, numeric and symbolic equivalence.

PAL-Math compares the value a generated `solution()` returns with the dataset's answer:
numerically with relative tolerance 1e-4 when both read as numbers, else after LaTeX
normalization, element by element for tuples, intervals, sets and matrices, and finally
symbolically with sympy (in a guarded worker, see `symbolic`).

Differences from DeepSeek's grader, on purpose: a value 100x off is accepted only when one side
is written as a percentage (theirs accepts x100 and /100 for every number), and interval
brackets must agree (theirs drops them, so (1, 2] equals [1, 2)).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dscoder.eval.symbolic import SymbolicChecker

REL_TOL = 1e-4

_SPACING = (r"\!", r"\,", r"\;", r"\:", r"\ ", "~")
_STYLE_COMMANDS = re.compile(r"\\(?:text|mbox|mathrm|textbf|mathbf|operatorname)\{([^{}]*)\}")
_TRAILING_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox)\{\s*[A-Za-z][^{}]*\}$")
_MATRIX = re.compile(r"\\begin\{[pbv]?matrix\}(.*?)\\end\{[pbv]?matrix\}", re.DOTALL)
_SHORT_FRAC = re.compile(r"\\frac(?!\{)(\w)(\w)|\\frac(?!\{)(\w)(?=\{)")
_SHORT_SQRT = re.compile(r"\\sqrt(?![\[{])(\w+)")
_TRAILING_ZEROS = re.compile(r"(\d)\.0+(?!\d)")
_BARE_DECIMAL = re.compile(r"(?<![\d.])\.(\d)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$", re.IGNORECASE)
_SIMPLE_FRACTION = re.compile(r"^([+-]?)\\frac\{([^{}]+)\}\{([^{}]+)\}$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)$")
_BRACKETS = {"(": ")", "[": "]", "{": "}"}
# numpy prints arrays as "[-19  -6   4]": whitespace-separated, no commas
_NUMPY_VECTOR = re.compile(r"^\[\s*[-+\w.]+(?:\s+[-+\w.]+)+\s*\]$")


def extract_boxed(text: str) -> str | None:
    r"""The content of the last \boxed{...} (or \fbox{...}) in a solution; None when absent."""
    start = max(text.rfind(r"\boxed"), text.rfind(r"\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    rest = rest[len(r"\boxed") :] if rest.startswith(r"\boxed") else rest[len(r"\fbox") :]
    if rest.startswith(" "):  # "\boxed 5": the answer runs to the next "$"
        return rest.strip().split("$")[0].strip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for index, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:index]
    return None


def _matrix_as_list(match: re.Match[str]) -> str:
    rows = [row.strip() for row in match.group(1).split("\\\\") if row.strip()]
    cells = [[cell.strip() for cell in row.split("&")] for row in rows]
    if all(len(row) == 1 for row in cells):  # a column vector, as numpy prints it: a flat list
        return "[" + ",".join(row[0] for row in cells) + "]"
    return "[" + ",".join("[" + ",".join(row) + "]" for row in cells) + "]"


def normalize_answer(text: object) -> str:
    """A canonical spelling of an answer, so that equal answers usually compare equal as text."""
    s = str(text).strip().replace("\n", " ").rstrip(".").strip()
    s = _MATRIX.sub(_matrix_as_list, s)
    if _NUMPY_VECTOR.match(s):
        s = "[" + ",".join(s[1:-1].split()) + "]"
    s = s.replace("\\\\", "\\")  # programs print LaTeX from raw strings with doubled backslashes
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    s = s.replace(r"\left", "").replace(r"\right", "")
    for spacing in _SPACING:
        s = s.replace(spacing, "")
    s = _TRAILING_UNIT.sub("", s)
    s = _STYLE_COMMANDS.sub(r"\1", s)
    s = s.replace(r"^{\circ}", "").replace(r"^\circ", "").replace("°", "")
    s = s.replace(r"\$", "").replace("$", "")
    s = s.replace(r"\%", "").replace("%", "")
    s = s.replace(r"\{", "{").replace(r"\}", "}")
    s = s.replace("infinity", r"\infty")
    if r"\infty" not in s:
        s = re.sub(r"\binf\b", r"\\infty", s)
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0].strip()) <= 2:  # "x = 5", "k=3": keep the value
        s = parts[1]
    s = s.replace(" ", "")
    s = _SHORT_SQRT.sub(r"\\sqrt{\1}", s)
    s = _SHORT_FRAC.sub(_expand_short_frac, s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _TRAILING_ZEROS.sub(r"\1", s)
    s = _BARE_DECIMAL.sub(r"0.\1", s)
    return s


def _expand_short_frac(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return rf"\frac{{{match.group(1)}}}{{{match.group(2)}}}"
    return rf"\frac{{{match.group(3)}}}"


def parse_number(text: str) -> float | None:
    r"""The value of a normalized answer that is a plain number, a/b, or \frac{a}{b}."""
    if _NUMBER.match(text):
        return float(text)
    for pattern in (_SIMPLE_FRACTION, _SLASH_FRACTION):
        match = pattern.match(text)
        if match is None:
            continue
        groups = match.groups()
        sign, numerator, denominator = ("", *groups) if len(groups) == 2 else groups
        if not (_NUMBER.match(numerator) and _NUMBER.match(denominator)):
            return None
        if float(denominator) == 0:
            return None
        value = float(numerator) / float(denominator)
        return -value if sign == "-" else value
    return None


def numbers_close(a: float, b: float, rel_tol: float = REL_TOL) -> bool:
    """Relative closeness; exact equality also counts (a relative test alone never passes 0)."""
    return a == b or math.isclose(a, b, rel_tol=rel_tol)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def _as_sequence(text: str) -> tuple[str, list[str]] | None:
    """(bracket pair, items) when the whole answer is one bracketed, comma-separated group."""
    if len(text) < 2 or text[0] not in _BRACKETS or text[-1] not in ")]}":
        return None
    depth = 0
    for index, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if depth == 0 and index < len(text) - 1:
            return None  # "(a)(b)": the first group closes before the end
    items = _split_top_level(text[1:-1])
    return text[0] + text[-1], items


@dataclass
class AnswerJudge:
    """Compares answers; owns the sympy worker, so use it as a context manager."""

    symbolic: SymbolicChecker | None = field(default_factory=SymbolicChecker)

    def matches(self, prediction: object, reference: object) -> bool:
        predicted_text, reference_text = str(prediction), str(reference)
        percent = "%" in predicted_text or "%" in reference_text
        pred, ref = normalize_answer(predicted_text), normalize_answer(reference_text)
        return self._equal(pred, ref, percent)

    def _equal(self, pred: str, ref: str, percent: bool) -> bool:
        if not pred:
            return False
        if pred == ref:
            return True
        p, r = parse_number(pred), parse_number(ref)
        if p is not None and r is not None:
            candidates = (r, r / 100, r * 100) if percent else (r,)
            return any(numbers_close(p, value) for value in candidates)
        pred_seq, ref_seq = _as_sequence(pred), _as_sequence(ref)
        if ref_seq is not None and pred_seq is None and "," in pred:
            pred_seq = (ref_seq[0], _split_top_level(pred))  # "1,2" answers "(1,2)"
        if pred_seq is not None and ref_seq is not None:
            return self._sequences_equal(pred_seq, ref_seq, percent)
        if self.symbolic is not None:
            return self.symbolic.equal(pred, ref)
        return False

    def _sequences_equal(
        self, pred: tuple[str, list[str]], ref: tuple[str, list[str]], percent: bool
    ) -> bool:
        (pred_brackets, pred_items), (ref_brackets, ref_items) = pred, ref
        if len(pred_items) != len(ref_items):
            return False
        # Python prints tuples and lists where the answer may use either; an interval's
        # half-open bracket, though, is part of the answer.
        interchangeable = {"()", "[]"}
        if pred_brackets != ref_brackets and not {pred_brackets, ref_brackets} <= interchangeable:
            return False
        if ref_brackets == "{}":  # a set: any order
            remaining = list(ref_items)
            for item in pred_items:
                match = next((r for r in remaining if self._equal(item, r, percent)), None)
                if match is None:
                    return False
                remaining.remove(match)
            return True
        return all(self._equal(p, r, percent) for p, r in zip(pred_items, ref_items))

    def close(self) -> None:
        if self.symbolic is not None:
            self.symbolic.close()

    def __enter__(self) -> AnswerJudge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
