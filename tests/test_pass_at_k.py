from math import comb

import pytest

from distillpipe.pass_at_k import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(("n", "c", "k"), [(10, 3, 1), (10, 3, 5), (16, 0, 4), (20, 2, 10)])
def test_pass_at_k_is_the_codex_estimator(n: int, c: int, k: int):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_1_is_the_pass_rate_and_too_few_failures_make_it_certain():
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 3, 2) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0


def test_the_product_form_stays_finite_where_the_binomials_are_huge():
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)  # C(1999, 1000) / C(2000, 1000)
    assert pass_at_k(5000, 3, 2500) == pytest.approx(1 - comb(4997, 2500) / comb(5000, 2500))


def test_the_mean_is_over_records_and_none_without_any():
    assert mean_pass_at_k([(4, 1), (4, 3)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([], 1) is None
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
