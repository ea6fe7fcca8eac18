"""agent/analytics/bayes.py against hand-checkable values: the probability to be best against the closed
form for two variants (Evan Miller's formula for Beta posteriors), symmetry and ordering for more; the
chi-square p-value against the textbook table; the sample-ratio-mismatch flag on a fair and a broken split."""

from __future__ import annotations

import math

import pytest

from agent.analytics.bayes import chi_square_p_value, probability_best, sample_ratio_mismatch


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def closed_form_b_beats_a(xa: int, na: int, xb: int, nb: int) -> float:
    """P(rate B > rate A) for Beta(1 + x, 1 + n - x) posteriors (Evan Miller, 'Formulas for Bayesian A/B
    testing'): sum over i < alpha_B of B(aA + i, bA + bB) / ((bB + i) B(1 + i, bB) B(aA, bA))."""
    a_a, b_a, a_b, b_b = 1 + xa, 1 + na - xa, 1 + xb, 1 + nb - xb
    return sum(math.exp(_log_beta(a_a + i, b_a + b_b) - math.log(b_b + i) - _log_beta(1 + i, b_b)
                        - _log_beta(a_a, b_a)) for i in range(a_b))


@pytest.mark.parametrize("groups", [((10, 100), (15, 100)), ((120, 1000), (135, 1000)), ((0, 20), (1, 20)),
                                    ((480, 10_000), (530, 10_000)), ((5000, 200_000), (5150, 200_000)),
                                    ((3, 7), (3, 7))])
def test_two_variants_match_the_closed_form(groups: tuple[tuple[int, int], tuple[int, int]]) -> None:
    (xa, na), (xb, nb) = groups
    p_a, p_b = probability_best([(xa, na), (xb, nb)])
    assert p_b == pytest.approx(closed_form_b_beats_a(xa, na, xb, nb), abs=1e-3)
    assert p_a + p_b == pytest.approx(1.0)


def test_equal_variants_are_equally_likely_and_better_ones_likelier() -> None:
    assert probability_best([(50, 500)] * 3) == pytest.approx([1 / 3] * 3, abs=1e-3)
    best = probability_best([(50, 500), (60, 500), (80, 500)])
    assert best[0] < best[1] < best[2] and best[2] > 0.95
    assert probability_best([]) == [] and probability_best([(0, 0)]) == [1.0]


@pytest.mark.parametrize("statistic, degrees, expected", [(3.841459, 1, 0.05), (10.827566, 1, 0.001),
                                                          (5.991465, 2, 0.05), (11.344867, 3, 0.01),
                                                          (0.0, 2, 1.0), (100.0, 1, 1.5e-23)])
def test_chi_square_p_values_are_the_tables(statistic: float, degrees: int, expected: float) -> None:
    assert chi_square_p_value(statistic, degrees) == pytest.approx(expected, rel=1e-3, abs=1e-6 if expected > 1e-6
                                                                   else 1e-24)


def test_a_fair_split_passes_and_a_broken_one_is_flagged() -> None:
    fair = sample_ratio_mismatch([5000, 5150], [0.5, 0.5])          # chi2 = 2 * 75^2 / 5075 = 2.217
    assert fair["chiSquare"] == pytest.approx(2.2167, abs=1e-3) and fair["mismatch"] is False
    broken = sample_ratio_mismatch([5000, 5500], [0.5, 0.5])        # chi2 = 2 * 250^2 / 5250 = 23.81
    assert broken["mismatch"] is True and broken["pValue"] < 1e-5
    three = sample_ratio_mismatch([3400, 3300, 3300], [0.34, 0.33, 0.33])
    assert three["chiSquare"] == pytest.approx(0.0, abs=1e-9) and three["mismatch"] is False
    assert sample_ratio_mismatch([0, 0], [0.5, 0.5])["pValue"] is None
