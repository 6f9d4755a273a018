"""How large a difference a study can find, and how many seeds it would take: power of the paired t-test.

``detectable``    the minimum detectable difference: the true mean paired difference that a two-sided paired
                  t-test at level ``alpha`` finds with probability ``power`` (80%), given n seeds and the spread
                  (sd) of the per-seed differences (``statsmodels.stats.power.TTestPower``: the noncentral t);
``seeds_needed``  the fewest seeds (at least 2) at which a given difference (1 point) is found with that power;
(``paper_claims.seed_plan`` gives both for every comparison of the declared families, from a study's results.)

The level is the family's Holm threshold at its strictest step, ``alpha / m`` (m comparisons in the family): the
level a comparison must pass when it is judged first. Later steps are less strict, so these figures are the
conservative ones. The spread is the one observed: with 3 seeds it is itself uncertain, so the seeds a plan asks
for are an estimate, not a guarantee.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from statsmodels.stats.power import TTestPower

POWER = 0.8
DIFFERENCE = 1.0  # points of accuracy the planner asks about
ALPHA = 0.05


def _power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test at ``alpha``: statsmodels' one-sided powers at alpha / 2, added.

    The far tail (a significant difference in the wrong direction) is below 1e-15 wherever scipy's noncentral t
    returns NaN for it (n = 3, effect 6 or 7.32; n = 3000, effect 0.3), which made ``TTestPower``'s two-sided
    power NaN there; it counts as 0."""
    p = TTestPower()
    near = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger"))
    far = float(p.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="smaller"))
    return near + (far if np.isfinite(far) else 0.0)


def detectable(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The mean paired difference a two-sided paired t-test at ``alpha`` finds with probability ``power`` with
    ``n`` seeds whose differences have standard deviation ``sd`` (NaN below 2 seeds or without a spread).

    The effect size is the root of statsmodels' power function (``_power``), found with ``scipy.optimize.brentq``:
    ``TTestPower.solve_power`` itself missed it at n = 3 (power 0.787 for 0.8 at alpha 0.01, and a root 2.7
    times too small at an alpha one rounding error away)."""
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    hi = 1.0
    while _power(hi, n, alpha) < power:
        hi *= 2
    return float(brentq(lambda d: _power(d, n, alpha) - power, 0.0, hi, xtol=1e-12)) * sd


def seeds_needed(sd: float, difference: float = DIFFERENCE, alpha: float = ALPHA, power: float = POWER) -> float:
    """The fewest seeds (at least 2) at which a two-sided paired t-test at ``alpha`` finds a true mean difference
    of ``difference`` with probability ``power``, when per-seed differences spread with standard deviation ``sd``
    (NaN without a spread): power rises with n, so the first n whose power (``TTestPower.power``) reaches it."""
    if not np.isfinite(sd) or difference <= 0:
        return float("nan")
    if sd == 0:
        return 2.0
    effect = difference / sd
    lo, hi = 2, 2
    while _power(effect, hi, alpha) < power:
        lo, hi = hi, hi * 2
    while lo < hi:  # the first n in [lo, hi] with enough power
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _power(effect, mid, alpha) < power else (lo, mid)
    return float(lo)
