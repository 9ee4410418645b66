"""pipeline.overlap.evt: Otsu's threshold, Weibull maximum likelihood, the two-component Weibull mixture."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from pipeline.overlap.evt import EvtError, MixtureConfig, Weibull, fit_weibull, fit_weibull_mixture, otsu, otsu_threshold


def weibull_pair(n_low, n_high, k0=2.0, l0=0.2, a0=0.1, k1=1.8, l1=0.15, a1=0.95, seed=0):
    """Scores from a known mixture: low mode a0 + W(k0, l0), high mode a1 - W(k1, l1)."""
    rng = np.random.default_rng(seed)
    low = a0 + stats.weibull_min.rvs(k0, scale=l0, size=n_low, random_state=rng)
    high = a1 - stats.weibull_min.rvs(k1, scale=l1, size=n_high, random_state=rng)
    return np.concatenate([low, high]), np.r_[np.zeros(n_low, int), np.ones(n_high, int)]


# ------------------------------------------------------------------------------------------------ Otsu
def test_otsu_splits_two_separated_groups_between_them():
    rng = np.random.default_rng(1)
    s = np.concatenate([rng.normal(0.0, 0.1, 500), rng.normal(1.0, 0.1, 300)])
    r = otsu(s)
    assert 0.3 < r.threshold < 0.7
    assert r.separability > 0.85
    assert r.low_fraction == pytest.approx(500 / 800, abs=0.01)


def test_otsu_threshold_is_affine_equivariant():
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.normal(0.2, 0.05, 400), rng.normal(0.7, 0.1, 200)])
    t = otsu_threshold(s)
    assert otsu_threshold(64 * s - 3) == pytest.approx(64 * t - 3, rel=1e-9, abs=1e-9)


def test_otsu_separability_is_low_for_one_gaussian():
    s = np.random.default_rng(3).normal(0, 1, 20000)
    assert otsu(s).separability == pytest.approx(2 / np.pi, abs=0.02)  # the known value for a normal split at 0


@pytest.mark.parametrize("bad", [np.ones(10), np.array([0.1, np.nan, 0.3]), np.array([0.0, np.inf]), np.ones((3, 3)),
                                 np.array([1.0])])
def test_otsu_rejects_bad_scores(bad):
    with pytest.raises(EvtError):
        otsu(bad)


# ------------------------------------------------------------------------------------------------ Weibull
def test_weibull_mle_matches_scipy_and_truth():
    x = stats.weibull_min.rvs(1.5, scale=2.0, size=20000, random_state=4)
    w = fit_weibull(x)
    k, _, lam = stats.weibull_min.fit(x, floc=0)
    assert w.shape == pytest.approx(k, rel=1e-4)
    assert w.scale == pytest.approx(lam, rel=1e-4)
    assert w.shape == pytest.approx(1.5, rel=0.03)
    assert w.scale == pytest.approx(2.0, rel=0.03)


def test_weighted_fit_equals_fit_on_repeated_rows():
    rng = np.random.default_rng(5)
    x = stats.weibull_min.rvs(3.0, scale=0.5, size=300, random_state=rng)
    reps = rng.integers(1, 4, size=x.size)
    a = fit_weibull(x, reps.astype(float))
    b = fit_weibull(np.repeat(x, reps))
    assert a.shape == pytest.approx(b.shape, rel=1e-7)
    assert a.scale == pytest.approx(b.scale, rel=1e-7)


def test_weibull_fit_rejects_non_positive_or_constant():
    with pytest.raises(EvtError):
        fit_weibull(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(EvtError):
        fit_weibull(np.full(5, 2.0))


@pytest.mark.parametrize("sign", [1, -1])
def test_weibull_functions_are_consistent(sign):
    w = Weibull(shape=2.5, scale=0.3, loc=0.9 if sign == -1 else 0.1, sign=sign)
    ref = stats.weibull_min(2.5, scale=0.3)
    x = np.linspace(-0.5, 1.5, 101)
    u = sign * (x - w.loc)
    np.testing.assert_allclose(w.pdf(x), ref.pdf(u), atol=1e-12)
    np.testing.assert_allclose(w.cdf(x) + w.sf(x), 1.0, atol=1e-12)
    q = np.array([0.05, 0.5, 0.95])
    np.testing.assert_allclose(w.cdf(w.ppf(q)), q, atol=1e-10)
    lo, hi = (w.loc, w.loc + 5) if sign == 1 else (w.loc - 5, w.loc)
    assert integrate.quad(lambda t: float(w.pdf(t)), lo, hi)[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(w.cdf(x)) >= 0)


# ------------------------------------------------------------------------------------------------ mixture
def test_mixture_recovers_known_parameters():
    s, _ = weibull_pair(2400, 1600)
    m = fit_weibull_mixture(s)
    assert m.weight_high == pytest.approx(0.4, abs=0.02)
    assert m.low.shape == pytest.approx(2.0, rel=0.15)
    assert m.high.shape == pytest.approx(1.8, rel=0.15)
    assert m.low.loc == pytest.approx(0.1, abs=0.03)
    assert m.high.loc == pytest.approx(0.95, abs=0.03)
    # 95 % thresholds of each mode against the true ones
    assert m.low.ppf(0.95) == pytest.approx(0.1 + stats.weibull_min.ppf(0.95, 2.0, scale=0.2), abs=0.02)
    assert m.high.ppf(0.05) == pytest.approx(0.95 - stats.weibull_min.ppf(0.95, 1.8, scale=0.15), abs=0.02)
    assert m.converged
    assert m.bic(s.size) < m.single_bic(s.size)


@settings(max_examples=6, deadline=None)
@given(
    k0=st.floats(1.5, 4.0), k1=st.floats(1.5, 4.0), w=st.floats(0.2, 0.8), seed=st.integers(0, 10_000),
)
def test_mixture_recovers_random_well_separated_mixtures(k0, k1, w, seed):
    n = 3000
    n_high = int(w * n)
    s, truth = weibull_pair(n - n_high, n_high, k0=k0, l0=0.15, a0=-0.4, k1=k1, l1=0.15, a1=0.9, seed=seed)
    m = fit_weibull_mixture(s)
    assert m.weight_high == pytest.approx(w, abs=0.04)
    true_t_low = -0.4 + stats.weibull_min.ppf(0.95, k0, scale=0.15)
    true_t_high = 0.9 - stats.weibull_min.ppf(0.95, k1, scale=0.15)
    assert m.low.ppf(0.95) == pytest.approx(true_t_low, abs=0.03)
    assert m.high.ppf(0.05) == pytest.approx(true_t_high, abs=0.03)
    post = m.posterior_high(s)
    assert np.mean((post > 0.5) == truth) > 0.98


@settings(max_examples=8, deadline=None)
@given(a=st.floats(1e-3, 1e3), b=st.floats(-100, 100))
def test_mixture_is_affine_equivariant(a, b):
    s, _ = weibull_pair(600, 400, seed=7)
    cfg = MixtureConfig(deltas=(0.01, 0.05))
    m = fit_weibull_mixture(s, cfg)
    m2 = fit_weibull_mixture(a * s + b, cfg)
    assert m2.weight_high == pytest.approx(m.weight_high, abs=1e-6)
    assert m2.low.ppf(0.95) == pytest.approx(a * m.low.ppf(0.95) + b, rel=1e-6, abs=1e-6 * a)
    assert m2.high.ppf(0.05) == pytest.approx(a * m.high.ppf(0.05) + b, rel=1e-6, abs=1e-6 * a)
    assert m2.otsu.threshold == pytest.approx(a * m.otsu.threshold + b, rel=1e-9, abs=1e-9 * a)


def test_mixture_handles_negative_cosine_scores():
    s, truth = weibull_pair(800, 200, a0=-0.9, a1=0.2, l0=0.3, l1=0.2)
    assert s.min() < 0
    m = fit_weibull_mixture(s)
    assert m.low.loc <= s.min() and m.high.loc >= s.max()
    assert np.mean((m.posterior_high(s) > 0.5) == truth) > 0.97


def test_mixture_rejects_bad_input():
    with pytest.raises(EvtError, match="NaN"):
        fit_weibull_mixture(np.r_[np.linspace(0, 1, 50), np.nan])
    with pytest.raises(EvtError, match="constant"):
        fit_weibull_mixture(np.full(50, 0.3))
    with pytest.raises(EvtError, match="at least"):
        fit_weibull_mixture(np.array([0.1, 0.9]))
