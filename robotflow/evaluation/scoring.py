"""Scoring a policy's episodes: the success rate with its Wilson interval, and the per-seed table."""

from __future__ import annotations

import math
from collections.abc import Sequence

from robotflow.recording.summary import format_episode_table

from .episodes import EpisodeOutcome

# Two-sided 95% normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n, which
    is where a policy's success rate usually sits.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def format_table(outcomes: Sequence[EpisodeOutcome]) -> str:
    """The per-seed table and the success rate with its 95% Wilson interval."""
    table = format_episode_table([o.as_dict() for o in outcomes], ("episode", "seed", "outcome", "duration"))
    return f"{table}\n{summary_line(outcomes)}"


def summary_line(outcomes: Sequence[EpisodeOutcome]) -> str:
    """`success rate: 50.0% (1/2), 95% Wilson interval 9.5% - 90.5%`."""
    n = len(outcomes)
    k = sum(o.success for o in outcomes)
    lo, hi = wilson_interval(k, n)
    rate = k / n if n else 0.0
    return f"success rate: {rate:.1%} ({k}/{n}), 95% Wilson interval {lo:.1%} - {hi:.1%}"
