from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.ml.exceptions import MLInputError
from segflow.ml.ltv import (
    BgNbdParams,
    GammaGammaParams,
    bgnbd_log_likelihood,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    lifetime_value,
    p_alive,
)


def simulate_bgnbd(
    params: BgNbdParams, n: int, T: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, np.full(n, T)


def test_fit_recovers_simulated_parameters() -> None:
    truth = BgNbdParams(r=0.5, alpha=3.0, a=0.8, b=2.5)
    x, t_x, T = simulate_bgnbd(truth, 6000, 52.0, seed=1)
    fit = fit_bgnbd(x, t_x, T).params
    assert fit.r == pytest.approx(truth.r, rel=0.15)
    assert fit.alpha == pytest.approx(truth.alpha, rel=0.25)
    assert fit.a == pytest.approx(truth.a, rel=0.35)
    assert fit.b == pytest.approx(truth.b, rel=0.45)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(2)
    truth = GammaGammaParams(p=6.0, q=4.0, v=15.0)
    nu = rng.gamma(truth.q, 1 / truth.v, 5000)
    x = rng.integers(1, 8, 5000)
    m = np.array([rng.gamma(truth.p, 1 / nu[i], x[i]).mean() for i in range(5000)])
    fit = fit_gamma_gamma(x, m).params
    assert fit.p == pytest.approx(truth.p, rel=0.15)
    assert fit.q == pytest.approx(truth.q, rel=0.2)
    assert fit.v == pytest.approx(truth.v, rel=0.25)


@settings(max_examples=40, deadline=None)
@given(
    x=st.integers(0, 30),
    frac=st.floats(0, 1),
    T=st.floats(1, 100),
    t=st.floats(0.1, 100),
)
def test_predictions_are_sane(x: int, frac: float, T: float, t: float) -> None:
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    t_x = 0.0 if x == 0 else frac * T
    alive = p_alive(params, [x], [t_x], [T])[0]
    assert 0 < alive <= 1
    e1 = expected_purchases(params, t, [x], [t_x], [T])[0]
    e2 = expected_purchases(params, t * 2, [x], [t_x], [T])[0]
    assert 0 <= e1 <= e2
    assert np.isfinite(bgnbd_log_likelihood(params, [x], [t_x], [T])[0])


def test_recent_buyer_more_alive_than_lapsed() -> None:
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    alive = p_alive(params, [5, 5], [38.0, 5.0], [39.0, 39.0])
    assert alive[0] > alive[1]


def test_lifetime_value_grows_with_spend_and_discounting_lowers_it() -> None:
    bg, gg = BgNbdParams(0.243, 4.414, 0.793, 2.426), GammaGammaParams(6.25, 3.74, 15.44)
    low, high = lifetime_value(
        bg, gg, [3, 3], [30.0, 30.0], [39.0, 39.0], [10.0, 100.0], horizon=52.0
    )
    assert high > low > 0
    no_discount = lifetime_value(
        bg, gg, [3], [30.0], [39.0], [10.0], horizon=52.0, discount_rate=0.0
    )[0]
    assert no_discount > low


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(MLInputError):
        fit_bgnbd([1], [5.0], [2.0])  # t_x > T
    with pytest.raises(MLInputError):
        fit_gamma_gamma([0, 0], [0.0, 0.0])
