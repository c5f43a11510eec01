"""The statistics that judge an A/B test: a two-proportion z-test of the best variant against each other one.

Each variant i has n_i recipients (sent) and x_i of them did what the test counts. The best variant is the one with
the highest share x/n. It is declared the winner only when it beats *every* other variant significantly: for each
other variant j the pooled two-proportion z-test

    p = (x_b + x_j) / (n_b + n_j),   se = sqrt(p (1 - p) (1/n_b + 1/n_j)),   z = (x_b/n_b - x_j/n_j) / se

gives a two-sided p-value 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). With k variants there are k - 1 such comparisons,
so each p-value is multiplied by k - 1 (Bonferroni) and the largest adjusted p-value must be below ALPHA (0.05).
The confidence shown is 1 minus that largest adjusted p-value.

Minimum sample: no winner is declared unless every variant reached MIN_SENT recipients and the test counted at least
MIN_SUCCESSES actions in all (the normal approximation is poor below that, and a tiny test "wins" by chance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
MIN_SENT = 50          # recipients per variant
MIN_SUCCESSES = 10     # counted actions over all variants


@dataclass(frozen=True)
class ZTest:
    """One comparison: z statistic and two-sided p-value (unadjusted)."""

    z: float
    p: float


def two_proportion(x1: int, n1: int, x2: int, n2: int) -> ZTest:
    """Pooled two-proportion z-test of x1/n1 against x2/n2 (two-sided)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both groups need at least one recipient")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:   # both all or nothing: no evidence of a difference
        return ZTest(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / se
    return ZTest(z, math.erfc(abs(z) / math.sqrt(2)))


@dataclass(frozen=True)
class Judgement:
    """The verdict on a test's figures."""

    best: int | None           # index of the highest share (None: no data)
    significant: bool          # best beats every other variant (Bonferroni-adjusted p < ALPHA)
    enough: bool               # the minimum sample was reached
    p_adjusted: float | None   # largest adjusted p-value of best vs another (None: not judged)
    z_min: float | None        # the smallest z of those comparisons
    runner_up: int | None      # the variant closest to the best

    @property
    def confidence(self) -> float | None:
        return None if self.p_adjusted is None else max(0.0, 1.0 - self.p_adjusted)


def judge(counts: list[tuple[int, int]]) -> Judgement:
    """counts: (successes, recipients) per variant, in variant order."""
    rates = [x / n if n else 0.0 for x, n in counts]
    if len(counts) < 2 or not any(n for _x, n in counts):
        return Judgement(None, False, False, None, None, None)
    best = max(range(len(counts)), key=lambda i: (rates[i], -i))
    enough = all(n >= MIN_SENT for _x, n in counts) and sum(x for x, _n in counts) >= MIN_SUCCESSES
    if not enough:
        return Judgement(best, False, False, None, None, None)
    xb, nb = counts[best]
    tests = {j: two_proportion(xb, nb, xj, nj) for j, (xj, nj) in enumerate(counts) if j != best}
    runner = max(tests, key=lambda j: (tests[j].p, -j))            # the one closest to the best
    adjusted = min(1.0, tests[runner].p * (len(counts) - 1))      # Bonferroni over the k - 1 comparisons
    return Judgement(best, adjusted < ALPHA, True, adjusted, min(t.z for t in tests.values()), runner)
