"""The unbiased pass@k estimator of Chen et al. (2021), averaged over problems.

For one problem with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that
k samples drawn without replacement include at least one that passes. The binomials overflow a
float long before n = 1000, so the ratio is computed as a product of terms each in (0, 1]:

    C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# The k values the reports show, as in the Codex and DeepSeek-Coder papers.
DEFAULT_KS: tuple[int, ...] = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one problem with `n` samples, `c` of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"correct count {c} is outside 0..{n}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} needs 1 <= k <= n={n}")
    if n - c < k:
        # Every draw of k samples must include a correct one.
        return 1.0
    terms = 1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(terms))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (samples n, correct c)."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems to average")
    return float(np.mean(values))


def reportable_ks(samples_per_problem: Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> list[int]:
    """The ks every problem has enough samples for (pass@k needs n >= k for each problem)."""
    if not samples_per_problem:
        return []
    fewest = min(samples_per_problem)
    return [k for k in ks if k <= fewest]
