"""Escape and overkill rates with their 95 % intervals (prompting.rates)."""

import pytest
from scipy.stats import binomtest

from prompting.rates import error_rates, rate_interval


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 37, 110])
def test_the_interval_is_wilsons_for_every_count(n):
    for k in range(n + 1):
        reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = rate_interval(k, n)
        assert low == pytest.approx(reference.low, abs=6e-5)
        assert high == pytest.approx(reference.high, abs=6e-5)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_a_clean_record_on_three_parts_still_allows_more_than_half():
    # the case the interval is for: 0 overkills on 3 OK images
    assert rate_interval(0, 3) == [0.0, 0.5615]
    assert rate_interval(3, 3) == [0.4385, 1.0]


def test_more_parts_at_the_same_rate_narrow_the_interval():
    widths = [hi - lo for lo, hi in (rate_interval(n // 5, n) for n in (5, 10, 50, 500))]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.08


def test_nothing_measured_has_no_interval():
    assert rate_interval(0, 0) is None


@pytest.mark.parametrize(("errors", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_impossible_counts_are_refused(errors, n):
    with pytest.raises(ValueError, match="errors <= n"):
        rate_interval(errors, n)


def test_error_rates_pairs_each_rate_with_its_interval():
    assert error_rates(escapes=1, n_ng=4, overkills=0, n_ok=0) == {
        "escape_rate": 0.25,
        "overkill_rate": None,
        "escape_interval": rate_interval(1, 4),
        "overkill_interval": None,
    }
