"""Month-end forecast with an honest band, burn rate and time to exhaustion. Pure.

The forecast (reference/forecasting.md §A3):

- **level** L: a robust level of the last one to two weeks of known de-seasonalised complete
  days (a trimmed 7-day mean blended with the 14-day median), read across the month
  boundary, so day 1 already has one, with a clipped growth rate from the last eight weeks;
- **day-of-week factors** f: the median of each weekday over the last 8 weeks over the mean of
  the seven medians (all ones with fewer than 14 days);
- P50 = month-to-date + the expected rest of today (from an hour-of-week profile) + Σ L·f over
  the remaining days;
- **band**: conformal quantiles of log(actual rest / forecast rest), replayed over the complete
  months in the history and pooled over days d ± 3; ±0.35 while fewer than 10 residuals exist.
  The band scales only the remaining spend, and is capped so it never widens in dollars as the
  month goes on.

Burn rate follows the SRE multi-window rule: spend over a long and a short window, each divided
by the spend the seasonal baseline expects there, must both exceed the tier's factor, and the
long window must also exceed an absolute floor (a share of the hard limit).

The package is split by concern, in import order: ``profile`` (the hour-of-week profile),
``seasonal`` (level, day-of-week factors, growth and the expected rest of the month), ``band``
(replaying complete months into the conformal band, and its narrowing), ``month_end`` (the
P10/P50/P90 forecast, its gate and the exhaustion day) and ``burn`` (the multi-window burn
rate). The public names are re-exported here.
"""

from __future__ import annotations

from guard.core.forecast.band import Band, Replays, band_from_residuals, calibrate, narrowing
from guard.core.forecast.burn import DEFAULT_TIERS, Burn, BurnTier, burn
from guard.core.forecast.month_end import Forecast, exhaustion_day, forecast, gated_in
from guard.core.forecast.profile import Profile, hour_profile
from guard.core.forecast.seasonal import DailySeries, Seasonal, forecast_rest, median, seasonal

__all__ = [
    "DEFAULT_TIERS",
    "Band",
    "Burn",
    "BurnTier",
    "DailySeries",
    "Forecast",
    "Profile",
    "Replays",
    "Seasonal",
    "band_from_residuals",
    "burn",
    "calibrate",
    "exhaustion_day",
    "forecast",
    "forecast_rest",
    "gated_in",
    "hour_profile",
    "median",
    "narrowing",
    "seasonal",
]
