"""pass@k against exact combinatorics, including sample counts where binomials overflow floats."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from dscoder.eval.passk import mean_pass_at_k, pass_at_k, reportable_ks


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize(
    "n, c, k",
    [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 8, 5), (20, 1, 10), (200, 7, 100), (200, 0, 100)],
)
def test_matches_exact_combinatorics(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(2000, 1, 100), (5000, 37, 100), (10_000, 5, 10)])
def test_large_n_is_stable(n: int, c: int, k: int) -> None:
    # C(5000, 100) is about 1e211, past what numpy's float binomials can hold.
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-10)


def test_pass_at_1_is_the_pass_rate() -> None:
    assert pass_at_k(100, 37, 1) == pytest.approx(0.37)


def test_all_draws_contain_a_pass_when_failures_are_fewer_than_k() -> None:
    assert pass_at_k(10, 8, 5) == 1.0


def test_mean_over_problems() -> None:
    assert mean_pass_at_k([(1, 1), (1, 0), (1, 1), (1, 1)], 1) == pytest.approx(0.75)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 10)


def test_reportable_ks_need_enough_samples_for_every_problem() -> None:
    assert reportable_ks([1, 1]) == [1]
    assert reportable_ks([200, 20]) == [1, 10]
    assert reportable_ks([100, 150]) == [1, 10, 100]
