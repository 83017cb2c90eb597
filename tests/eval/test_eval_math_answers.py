"""Answer checking for PAL-Math: normalization, numeric tolerance, symbolic equivalence."""

from __future__ import annotations

import time

import pytest

from dscoder.eval.math_answers import AnswerJudge, extract_boxed, normalize_answer, parse_number
from dscoder.eval.symbolic import SymbolicChecker, latex_to_sympy_text


@pytest.fixture(scope="module")
def judge():
    with AnswerJudge() as answer_judge:
        yield answer_judge


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("18", "18"),
        ("18.0", "18"),
        ("-9867630.0", -9867630.0),
        ("1,234", "1234"),
        ("100.00999", "100.01"),  # within relative 1e-4
        ("0.3333333333", r"\frac{1}{3}"),
        ("3/4", "0.75"),
        ("0.25", r"25\%"),  # a percentage reference may be answered as a fraction
        ("$5", r"\$5"),
        ("5", r"5\text{ cm}"),
        ("x = 7", "7"),
        ("90", r"90^\circ"),
    ],
)
def test_numeric_equivalence(judge: AnswerJudge, prediction: object, reference: object) -> None:
    assert judge.matches(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("18.01", "18"),  # relative error 5.6e-4 > 1e-4
        ("25", "0.25"),  # x100 is only accepted when a side is a percentage
        ("", "0"),
        ("None", "3"),
        ("(1,2)", "[1,2)"),  # the half-open bracket of an interval matters
    ],
)
def test_numeric_mismatch(judge: AnswerJudge, prediction: object, reference: object) -> None:
    assert not judge.matches(prediction, reference)


def test_relative_tolerance_boundary(judge: AnswerJudge) -> None:
    assert judge.matches("1000.09", "1000")  # 9e-5
    assert not judge.matches("1000.2", "1000")  # 2e-4


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("2*sqrt(3)", r"2\sqrt{3}"),
        ("3.4641016151", r"2\sqrt3"),
        (r"18.0\\pi", r"18\pi"),  # the MATH prompt's own LaTeX-from-raw-string output
        ("(x+2)*(x+5)", "x^2+7x+10"),
        ("sqrt(2)/2", r"\frac{\sqrt{2}}{2}"),
        ("(1, 4.5)", r"(1,\frac{9}{2})"),
        ("[-19 -6  4]", r"\begin{pmatrix} -19 \\ -6 \\ 4 \end{pmatrix}"),
        ("{2, 1}", r"\{1,2\}"),  # sets compare in any order
        (r"\dfrac{3}{4}", r"\frac34"),
    ],
)
def test_symbolic_equivalence(judge: AnswerJudge, prediction: str, reference: str) -> None:
    assert judge.matches(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [("x^2+7x+11", "x^2+7x+10"), (r"2\sqrt{2}", r"2\sqrt{3}"), ("(1,2,3)", "(1,2)")],
)
def test_symbolic_mismatch(judge: AnswerJudge, prediction: str, reference: str) -> None:
    assert not judge.matches(prediction, reference)


def test_untrusted_text_is_not_evaluated_as_python() -> None:
    # parse_expr with sympy's default namespace would call open(); here it is just symbols.
    with SymbolicChecker() as checker:
        assert not checker.equal("open(1)", "x")
        assert not checker.equal("__import__('os')", "1")


def test_runaway_comparison_is_cut_off() -> None:
    with SymbolicChecker(timeout_s=1.0) as checker:
        start = time.monotonic()
        assert not checker.equal("9^9^9^9", "1")
        assert time.monotonic() - start < 5
        assert checker.equal("2*x", "x+x")  # a fresh worker answers the next question


def test_extract_boxed() -> None:
    assert extract_boxed(r"so $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert extract_boxed(r"first \boxed{1} then \boxed{2}") == "2"
    assert extract_boxed(r"\boxed 5$") == "5"
    assert extract_boxed("no box") is None


def test_normalize_and_parse() -> None:
    assert normalize_answer(r"\left( 3, \dfrac{1}{2} \right)") == r"(3,\frac{1}{2})"
    assert normalize_answer("5.000") == "5"
    assert parse_number(r"-\frac{3}{4}") == -0.75
    assert parse_number("x+1") is None
    assert latex_to_sympy_text(r"\frac{\sqrt{2}}{2}") == "((((2)**(1/(2))))/(2))"
