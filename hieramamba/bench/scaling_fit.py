"""Which scaling points are reliable, where a series hits its wall, and the log-log slope fit.

A series (one backbone / mixer / width / mode over increasing L) **hits its wall** at the first
length whose point fails for lack of time or memory: a fresh-process point over the per-point time
limit (``timeout``), or one whose process was killed or whose allocation failed (``out of
memory``). Longer lengths are not run (they can only be worse); they are recorded as beyond the
wall. The wall is part of the result (the scaling plot marks it), not a missing point.

The fitted slope of log(time) on log(L) (1 = linear, 2 = quadratic) is only meaningful where the
time is dominated by the length-dependent work: at short lengths fixed costs (Python, kernel
launches, allocation) flatten every curve and quadratic and linear models look alike. So a slope
is fitted only over points with L >= ``MIN_FIT_LENGTH`` that measured a time (points at or beyond
the wall have none), and only when there are at least ``MIN_FIT_POINTS`` of them; otherwise it is
None with the reason.
"""

from __future__ import annotations

import math

MIN_FIT_LENGTH = 2048
MIN_FIT_POINTS = 3


def wall_reason(result: dict) -> str | None:
    """'timeout' or 'out of memory' when the point failed for lack of time or memory, else None
    (None also for a point that failed for another reason: that is a bug, not a wall)."""
    err = (result.get("error") or "").lower()
    if not err:
        return None
    if "timeout" in err:
        return "timeout"
    if any(s in err for s in ("memory", "killed", "can't allocate", "cannot allocate", "bad_alloc")):
        return "out of memory"
    return None


def fit_loglog_slope(lengths: list[float], times: list[float]) -> float | None:
    """Least-squares slope of log(time) against log(length); None with fewer than 2 points."""
    pts = [(math.log(l), math.log(t)) for l, t in zip(lengths, times) if t and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def reliable_slope(points: list[tuple[int, float | None]], min_length: int = MIN_FIT_LENGTH,
                   min_points: int = MIN_FIT_POINTS) -> dict:
    """The slope over the reliable points of one series, ``points`` = [(L, time or None)].

    Returns {"slope", "lengths" (those fitted), "note"}; slope None (and the note says why) with
    fewer than ``min_points`` measured points at L >= ``min_length``.
    """
    used = [(L, t) for L, t in points if L >= min_length and t]
    if len(used) < min_points:
        return {"slope": None, "lengths": [L for L, _ in used],
                "note": f"not fitted: {len(used)} measured point(s) at L >= {min_length}, need {min_points}"}
    return {"slope": fit_loglog_slope([L for L, _ in used], [t for _, t in used]),
            "lengths": [L for L, _ in used], "note": f"fitted over L >= {min_length}"}
