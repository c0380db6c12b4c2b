"""Predicted lifetime value: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma, by maximum likelihood.

Inputs are the per-customer sufficient statistics of a calibration period, in one time unit
(weeks by default): ``x`` repeat purchases (purchase *days* after the first), ``t_x`` the time
of the last repeat purchase since the first, ``T`` the time from the first purchase to the end
of calibration, and for Gamma-Gamma ``m_x`` the mean value of the repeat purchases.

Both likelihoods are maximised over log-parameters with SciPy (L-BFGS-B), customers with
identical statistics collapsed into weighted rows.

>>> import numpy as np
>>> x = np.array([0, 1, 2, 0, 5]); t_x = np.array([0.0, 3.0, 20.0, 0.0, 30.0])
>>> T = np.array([10.0, 20.0, 30.0, 39.0, 39.0])
>>> fit = fit_bgnbd(x, t_x, T)
>>> bool(0 < p_alive(fit.params, x, t_x, T).min() <= 1)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from segflow.ml.exceptions import FitError, MLInputError

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD parameters: purchase rate ~ Gamma(r, alpha); dropout prob ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters: transaction value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float


@dataclass(frozen=True)
class BgNbdFit:
    params: BgNbdParams
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    n_customers: int


def _as_float(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _check_rfm(x: FloatArray, t_x: FloatArray, T: FloatArray) -> None:
    if not (x.shape == t_x.shape == T.shape) or x.ndim != 1:
        raise MLInputError("x", "x, t_x and T must be 1-D arrays of one length")
    if x.size == 0:
        raise MLInputError("x", "no customers to fit")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T + 1e-9):
        raise MLInputError("t_x", "need x >= 0 and 0 <= t_x <= T")


def bgnbd_log_likelihood(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6).

    >>> float(bgnbd_log_likelihood(BgNbdParams(1, 1, 1, 1), [0], [0], [1])[0]) == math.log(0.5)
    True
    """
    xa, ta, Ta = _as_float(x), _as_float(t_x), _as_float(T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = special.gammaln(r + xa) - special.gammaln(r) + r * math.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + xa)
        - special.gammaln(b)
        - special.gammaln(a + b + xa)
    )
    a3 = -(r + xa) * np.log(alpha + Ta)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            xa > 0,
            math.log(a) - np.log(np.maximum(b + xa - 1, 1e-300)) - (r + xa) * np.log(alpha + ta),
            -np.inf,
        )
    out: FloatArray = a1 + a2 + np.logaddexp(a3, a4)
    return out


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: ArrayLike, m_x: ArrayLike
) -> FloatArray:
    """Per-customer log-density of the mean spend ``m_x`` over ``x`` transactions (x > 0)."""
    xa, ma = _as_float(x), _as_float(m_x)
    p, q, v = params.p, params.q, params.v
    px = p * xa
    out: FloatArray = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1) * np.log(ma)
        + px * np.log(xa)
        - (px + q) * np.log(xa * ma + v)
    )
    return out


def _collapse(*columns: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unique rows of the stacked columns and their counts (the likelihood's weights)."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return unique, counts.astype(np.float64)


def _maximise(name: str, neg_ll: object, n_params: int) -> tuple[FloatArray, float]:
    fun = neg_ll
    assert callable(fun)
    best: optimize.OptimizeResult | None = None
    for start in (0.0, -1.0, 1.0):
        res = optimize.minimize(
            fun, np.full(n_params, start), method="L-BFGS-B", bounds=[(-12, 12)] * n_params
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise FitError(name, "the likelihood is not finite anywhere the optimiser looked")
    polished = optimize.minimize(
        fun, best.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}
    )
    if polished.fun < best.fun:
        best = polished
    return np.asarray(best.x, dtype=np.float64), -float(best.fun)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for the calibration statistics.

    >>> fit = fit_bgnbd([0, 2, 4], [0.0, 5.0, 9.0], [10.0, 10.0, 10.0])
    >>> fit.n_customers
    3
    """
    xa, ta, Ta = _as_float(x), _as_float(t_x), _as_float(T)
    _check_rfm(xa, ta, Ta)
    rows, weights = _collapse(xa, ta, Ta)

    def neg_ll(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        ll = bgnbd_log_likelihood(BgNbdParams(r, alpha, a, b), rows[:, 0], rows[:, 1], rows[:, 2])
        value = -float(np.dot(weights, ll))
        return value if math.isfinite(value) else 1e300

    best, ll = _maximise("bgnbd", neg_ll, 4)
    r, alpha, a, b = (float(v) for v in np.exp(best))
    return BgNbdFit(BgNbdParams(r, alpha, a, b), ll, int(xa.size))


def fit_gamma_gamma(x: ArrayLike, m_x: ArrayLike) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers (``x > 0``, ``m_x > 0``).

    >>> fit_gamma_gamma([1, 2, 3, 1], [10.0, 12.0, 30.0, 8.0]).n_customers
    4
    """
    xa, ma = _as_float(x), _as_float(m_x)
    keep = (xa > 0) & (ma > 0)
    if keep.sum() < 2:
        raise MLInputError(
            "m_x",
            "Gamma-Gamma needs at least two customers with repeat purchases of positive value",
        )
    rows, weights = _collapse(xa[keep], ma[keep])

    def neg_ll(log_params: FloatArray) -> float:
        p, q, v = np.exp(log_params)
        value = -float(
            np.dot(
                weights,
                gamma_gamma_log_likelihood(GammaGammaParams(p, q, v), rows[:, 0], rows[:, 1]),
            )
        )
        return value if math.isfinite(value) else 1e300

    best, ll = _maximise("gamma_gamma", neg_ll, 3)
    p, q, v = (float(val) for val in np.exp(best))
    return GammaGammaFit(GammaGammaParams(p, q, v), ll, int(keep.sum()))


def _dropout_odds(params: BgNbdParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_odds = (
            math.log(a)
            - np.log(np.maximum(b + x - 1, 1e-300))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        odds: FloatArray = np.where(x > 0, np.exp(log_odds), 0.0)
    return odds


def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Probability that each customer is still active at ``T`` (FHL 2008 note).

    >>> float(p_alive(BgNbdParams(0.24, 4.4, 0.79, 2.4), [0], [0.0], [30.0])[0])
    1.0
    """
    xa, ta, Ta = _as_float(x), _as_float(t_x), _as_float(T)
    out: FloatArray = 1.0 / (1.0 + _dropout_odds(params, xa, ta, Ta))
    return out


def expected_purchases(
    params: BgNbdParams, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Expected repeat purchases in ``(T, T + t]`` given the history (FHL 2005, eq. 10).

    >>> bool(expected_purchases(BgNbdParams(0.24, 4.4, 0.79, 2.4), 39.0, [2], [30.0], [38.0])[0] > 0)
    True
    """
    xa, ta, Ta = _as_float(x), _as_float(t_x), _as_float(T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if t <= 0:
        return np.zeros_like(xa)
    z = t / (alpha + Ta + t)
    hyp = special.hyp2f1(r + xa, b + xa, a + b + xa - 1, z)
    ratio = np.exp((r + xa) * (np.log(alpha + Ta) - np.log(alpha + Ta + t)))
    numerator = (a + b + xa - 1) / (a - 1) * (1 - ratio * hyp)
    out: FloatArray = numerator / (1.0 + _dropout_odds(params, xa, ta, Ta))
    return out


def expected_spend(params: GammaGammaParams, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
    """Expected value of a customer's future transactions; the population mean when ``x == 0``.

    >>> round(float(expected_spend(GammaGammaParams(6.25, 3.74, 15.44), [0], [0.0])[0]), 2)
    35.22
    """
    xa, ma = _as_float(x), _as_float(m_x)
    p, q, v = params.p, params.q, params.v
    if q <= 1:
        raise FitError("gamma_gamma", "q <= 1: the expected spend is infinite")
    population = p * v / (q - 1)
    with np.errstate(invalid="ignore"):
        conditional = p * (v + xa * ma) / (p * xa + q - 1)
    out: FloatArray = np.asarray(
        np.round(np.where(xa > 0, conditional, population), 10), dtype=np.float64
    )
    return out


def lifetime_value(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m_x: ArrayLike,
    *,
    horizon: float,
    periods: int = 12,
    discount_rate: float = 0.01,
) -> FloatArray:
    """Discounted expected value over ``horizon`` time units, split into ``periods`` steps.

    Each step's expected purchases times the expected spend, discounted by
    ``(1 + discount_rate) ** step`` (a per-step rate, monthly when ``periods`` = months).

    >>> v = lifetime_value(BgNbdParams(0.24, 4.4, 0.79, 2.4), GammaGammaParams(6.25, 3.74, 15.44),
    ...                    [2], [30.0], [38.0], [20.0], horizon=52.0)
    >>> bool(v[0] > 0)
    True
    """
    spend = expected_spend(gamma_gamma, x, m_x)
    total = np.zeros_like(spend)
    previous = np.zeros_like(spend)
    for step in range(1, periods + 1):
        cumulative = expected_purchases(bgnbd, horizon * step / periods, x, t_x, T)
        total += (cumulative - previous) * spend / (1 + discount_rate) ** step
        previous = cumulative
    return total
