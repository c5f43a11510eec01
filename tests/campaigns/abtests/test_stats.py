"""The statistics and the assignment on known values."""

from __future__ import annotations

import collections
import math

import pytest

from campaigns.abtests import stats
from campaigns.sending import variants


def test_two_proportion_z_test_matches_the_textbook_values() -> None:
    # 30/100 against 15/100: pooled p = 0.225, se = sqrt(0.225 * 0.775 * 0.02) = 0.059055, z = 0.15 / se.
    t = stats.two_proportion(30, 100, 15, 100)
    assert t.z == pytest.approx(2.5400, abs=1e-4)
    assert t.p == pytest.approx(0.011085, abs=1e-5)          # two-sided: erfc(2.54 / sqrt 2)
    # 200/1000 against 250/1000: z = -2.677, p = 0.00742.
    t = stats.two_proportion(200, 1000, 250, 1000)
    assert t.z == pytest.approx(-2.6774, abs=1e-4) and t.p == pytest.approx(0.007419, abs=1e-5)
    # Equal shares: z = 0, p = 1; nothing at all (se 0): no evidence either.
    assert stats.two_proportion(10, 100, 10, 100).p == pytest.approx(1.0)
    assert stats.two_proportion(0, 100, 0, 100) == stats.ZTest(0.0, 1.0)
    with pytest.raises(ValueError):
        stats.two_proportion(1, 0, 1, 10)


def test_the_winner_must_be_significant() -> None:
    verdict = stats.judge([(15, 100), (30, 100)])
    assert verdict.best == 1 and verdict.significant and verdict.runner_up == 0
    assert verdict.confidence == pytest.approx(1 - 0.011085, abs=1e-5)
    close = stats.judge([(10, 100), (12, 100)])
    assert close.best == 1 and close.enough and not close.significant and close.confidence < 0.5


def test_bonferroni_over_several_variants_and_the_closest_rival_decides() -> None:
    # B beats A clearly (p ~ 0.011) but C is close to B: no winner among three.
    verdict = stats.judge([(15, 100), (30, 100), (28, 100)])
    assert verdict.best == 1 and verdict.runner_up == 2 and not verdict.significant
    # Against two clearly worse variants the p-value of the closer one is doubled: 2 * 0.011085.
    verdict = stats.judge([(15, 100), (30, 100), (15, 100)])
    assert verdict.significant and verdict.p_adjusted == pytest.approx(2 * 0.011085, abs=1e-5)


def test_tiny_tests_never_declare_a_winner() -> None:
    assert not stats.judge([(0, 10), (9, 10)]).enough                       # under MIN_SENT each
    assert not stats.judge([(0, 60), (9, 60)]).enough                       # under MIN_SUCCESSES in all
    assert not stats.judge([(0, 60), (9, 60)]).significant
    assert stats.judge([(0, 0), (0, 0)]).best is None
    assert stats.judge([(0, 60), (10, 60)]).significant                     # at the minimum: judged


def test_assignment_is_stable_even_and_differs_between_campaigns() -> None:
    counts = collections.Counter(variants.assign(7, cid, 20, 4) for cid in range(1, 20_001))
    in_test = sum(n for v, n in counts.items() if v is not None)
    assert abs(in_test - 4000) < 4 * math.sqrt(20_000 * 0.2 * 0.8)          # 20 % within 4 sigma
    assert all(abs(counts[v] - 1000) < 4 * math.sqrt(4000 * 0.25 * 0.75) for v in range(4))
    assert [variants.assign(7, cid, 20, 4) for cid in range(1, 500)] == \
        [variants.assign(7, cid, 20, 4) for cid in range(1, 500)]
    other = [variants.assign(8, cid, 20, 4) for cid in range(1, 500)]
    assert other != [variants.assign(7, cid, 20, 4) for cid in range(1, 500)]
    # A bigger share keeps everyone of the smaller share in the test.
    assert all(variants.assign(7, cid, 50, 2) is not None for cid in range(1, 2000)
               if variants.assign(7, cid, 20, 2) is not None)
