"""Exponential histograms -> explicit buckets at powers of two (`le` = ..., 0.25, 0.5, 1, 2, 4, ...).

How: OTLP's exponential bucket `i` at scale `s` holds the values in (2^(i/2^s), 2^((i+1)/2^s)]. At
scale 0 the bucket `k` is (2^k, 2^(k+1)]. For `s >= 0` every bucket lies inside the scale-0 bucket
`k = i >> s`, so merging 2^s neighbours into it is exact: no observation changes side of any `le`. For
`s < 0` (a histogram of a huge range) one bucket spans 2^-s scale-0 buckets and its count goes to the
highest of them (upper bound kept; a quantile reads high by up to that span). Negative buckets mirror
the positive ones (`le = -2^k`); the zero bucket (|v| <= zero_threshold) is `le = 0`.

The error: `histogram_quantile` interpolates linearly inside a power-of-two bucket, so an estimate is
within a factor of two of the true quantile (it lies in the same (2^k, 2^(k+1)] as the true value), the
same resolution as Prometheus' default buckets (0.005 ... 10, a factor 2-2.5 apart). Finer target scales
would multiply the `le` series (scale 3 is 8 per power of two); the SDK's default (scale 20, 160 buckets)
would be 160 series per histogram.

The `le` set of a series is the contiguous range of powers of two between the lowest and highest bucket it
has seen (it only widens, so each `le` series stays continuous); at most MAX_SPAN powers per sign.
"""

from __future__ import annotations

MIN_SCALE, MAX_SCALE = -10, 20          # OTLP's range
MAX_SPAN = 64                            # powers of two per sign: 2^64 between the lowest and highest bucket
MIN_K, MAX_K = -1074, 1022               # 2^k .. 2^(k+1) are finite, non-zero doubles


class ExpoError(ValueError):
    """A point that cannot be converted (the reason is the message)."""


def scale0(scale: int, offset: int, counts: list[int] | tuple[int, ...]) -> dict[int, int]:
    """{k: count} of the scale-0 buckets (2^k, 2^(k+1)] the buckets at `scale` from `offset` fall in."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ExpoError(f"exponential histogram scale {scale} outside [{MIN_SCALE}, {MAX_SCALE}]")
    out: dict[int, int] = {}
    for j, count in enumerate(counts):
        if not count:
            continue
        i = offset + j
        k = i >> scale if scale >= 0 else ((i + 1) << -scale) - 1
        out[k] = out.get(k, 0) + count
    if out and (min(out) < MIN_K or max(out) > MAX_K):
        raise ExpoError("exponential histogram bucket outside the range of a double")
    if out and max(out) - min(out) >= MAX_SPAN:
        raise ExpoError(f"exponential histogram spans more than 2^{MAX_SPAN}")
    return out


def merge(into: dict[int, int], more: dict[int, int]) -> None:
    for k, count in more.items():
        into[k] = into.get(k, 0) + count


def explicit(negative: dict[int, int], zero: int, positive: dict[int, int]) -> tuple[list[float], list[int]]:
    """(upper bounds ascending, without +Inf; non-cumulative counts, one more than bounds: the last is
    the +Inf bucket, always 0 here) over the contiguous range of each sign that has counts, with an empty
    bucket at the outer end of each range so that histogram_quantile interpolates from the right bound
    (not from 0) in the first bucket."""
    bounds: list[float] = []
    counts: list[int] = []
    if negative:
        bounds.append(-(2.0 ** (max(negative) + 1)))                 # the lowest bucket's lower end, empty
        counts.append(0)
        for k in range(max(negative), min(negative) - 1, -1):        # -2^(k_max) ... -2^(k_min)
            bounds.append(-(2.0 ** k))
            counts.append(negative.get(k, 0))
    bounds.append(0.0)
    counts.append(zero)
    if positive:
        bounds.append(2.0 ** min(positive))          # empty: the first bucket's lower end, for interpolation
        counts.append(0)
        for k in range(min(positive), max(positive) + 1):
            bounds.append(2.0 ** (k + 1))
            counts.append(positive.get(k, 0))
    counts.append(0)
    return bounds, counts
