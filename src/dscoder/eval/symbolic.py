"""Symbolic equivalence of two math answers with sympy, safely and with a time limit.

Answers come out of model-written programs, so they are untrusted text. Two dangers, two guards:

- `sympy.parse_expr` evaluates Python: with its default namespace `open(1)` opens a file. Here it
  runs with no builtins and a whitelist of sympy names, on text limited to a maths alphabet.
- `simplify` (or an innocent-looking `9^9^9`) can run for hours inside one C call that no signal
  interrupts. Comparisons therefore run in a worker process that is killed and replaced when it
  overruns; DeepSeek's grader has the same idea but leaves it off by default.
"""

from __future__ import annotations

import multiprocessing
import re
from multiprocessing.connection import Connection
from typing import Any

# What a LaTeX or plain-maths answer may contain; anything else (quotes, underscores) never
# reaches sympy.
_SAFE_TEXT = re.compile(r"^[0-9A-Za-z+\-*/^().,\s\\{}\[\]|!<>=]*$")
_MAX_CHARS = 200
_LATEX_REPLACEMENTS = (
    (r"\cdot", "*"),
    (r"\times", "*"),
    (r"\div", "/"),
    (r"\pi", " pi "),
    (r"\infty", " oo "),
    (r"\ln", " log "),
    (r"\log", " log "),
    (r"\exp", " exp "),
    (r"\sin", " sin "),
    (r"\cos", " cos "),
    (r"\tan", " tan "),
)


def _read_group(text: str, start: int) -> tuple[str, int]:
    """The argument of a LaTeX command at `start`: a {...} group (nested) or one character."""
    if start >= len(text):
        raise ValueError("missing argument")
    if text[start] != "{":
        return text[start], start + 1
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : index], index + 1
    raise ValueError("unbalanced braces")


def latex_to_sympy_text(text: str) -> str:
    """Rewrite the LaTeX that answers use (\\frac, \\sqrt, ^{...}, \\pi) as sympy input text."""
    out: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith(r"\frac", index):
            numerator, index = _read_group(text, index + len(r"\frac"))
            denominator, index = _read_group(text, index)
            out.append(f"(({latex_to_sympy_text(numerator)})/({latex_to_sympy_text(denominator)}))")
        elif text.startswith(r"\sqrt", index):
            index += len(r"\sqrt")
            root = "2"
            if index < len(text) and text[index] == "[":
                close = text.index("]", index)
                root, index = text[index + 1 : close], close + 1
            radicand, index = _read_group(text, index)
            out.append(f"(({latex_to_sympy_text(radicand)})**(1/({root})))")
        else:
            out.append(text[index])
            index += 1
    rewritten = "".join(out)
    for latex, plain in _LATEX_REPLACEMENTS:
        rewritten = rewritten.replace(latex, plain)
    return rewritten.replace("{", "(").replace("}", ")").replace("\\", " ")


def _namespace() -> dict[str, Any]:
    import sympy

    names = {
        name: getattr(sympy, name)
        for name in (
            "Integer", "Float", "Rational", "Symbol", "Function", "Number",
            "sqrt", "pi", "oo", "exp", "log", "sin", "cos", "tan", "Abs",
        )
    }
    names["__builtins__"] = {}  # eval() would otherwise insert the real builtins
    return names


def _parse(text: str) -> Any:
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(
        latex_to_sympy_text(text), local_dict={}, global_dict=_namespace(),
        transformations=transformations,
    )


def symbolic_equal_unguarded(a: str, b: str, rel_tol: float = 1e-4) -> bool:
    """Equal after simplification, or numerically close when both are constants. No time limit:
    call `SymbolicChecker.equal` on untrusted text."""
    import sympy

    if not (_SAFE_TEXT.match(a) and _SAFE_TEXT.match(b)) or max(len(a), len(b)) > _MAX_CHARS:
        return False
    try:
        left, right = _parse(a), _parse(b)
    except Exception:  # any parse failure just means "not comparable"
        return False
    try:
        if sympy.simplify(left - right) == 0:
            return True
    except Exception:
        pass
    try:
        if not left.free_symbols and not right.free_symbols:
            x, y = complex(sympy.N(left)), complex(sympy.N(right))
            return abs(x - y) <= rel_tol * max(abs(x), abs(y)) or x == y
    except Exception:
        pass
    return False


def _serve(connection: Connection) -> None:
    while True:
        try:
            a, b = connection.recv()
        except EOFError:
            return
        connection.send(symbolic_equal_unguarded(a, b))


class SymbolicChecker:
    """A worker process that answers "are these equal?" and is replaced when it overruns."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        methods = multiprocessing.get_all_start_methods()
        # fork is cheap and inherits the parent's imported sympy; spawn works everywhere else.
        self._context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None

    def equal(self, a: str, b: str) -> bool:
        if not (_SAFE_TEXT.match(a) and _SAFE_TEXT.match(b)) or max(len(a), len(b)) > _MAX_CHARS:
            return False
        connection = self._ensure_worker()
        connection.send((a, b))
        if connection.poll(self.timeout_s):
            try:
                return bool(connection.recv())
            except EOFError:  # the worker died (memory); treat as "not shown equal"
                self.close()
                return False
        self.close()
        return False

    def _ensure_worker(self) -> Connection:
        if self._process is None or not self._process.is_alive() or self._connection is None:
            self.close()
            import sympy  # noqa: F401 - loaded once here so every forked worker starts warm

            ours, theirs = self._context.Pipe()
            self._process = self._context.Process(target=_serve, args=(theirs,), daemon=True)
            self._process.start()
            theirs.close()
            self._connection = ours
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None

    def __enter__(self) -> SymbolicChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

