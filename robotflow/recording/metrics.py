"""What recorded episodes say about a policy and its operator: success rates with their Wilson intervals (from the
recorded outcomes, the sim scorer's, and from the operator's labels), interventions and time under human control
(from the arbiter's recorded `control` channel) and faults. `robotflow info` (summary.py) and rollouts
(evaluation/rollout.py) report them; evaluation/scoring.py re-exports the interval."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .control import human_segments
from .reader import EpisodeFile

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


def success_json(successes: int, n: int) -> dict[str, Any]:
    """A success rate as `info --json` and rollout summaries write it: counts, rate, 95% Wilson interval."""
    lo, hi = wilson_interval(successes, n)
    return {
        "successes": successes,
        "episodes": n,
        "rate": round(successes / n if n else 0.0, 4),
        "wilson_95": [round(lo, 4), round(hi, 4)],
    }


def success_text(successes: int, n: int) -> str:
    """`50.0% (1/2), 95% Wilson interval 9.5% - 90.5%`."""
    lo, hi = wilson_interval(successes, n)
    return f"{successes / n if n else 0.0:.1%} ({successes}/{n}), 95% Wilson interval {lo:.1%} - {hi:.1%}"


# ---- the arbiter's control channel ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlTime:
    """Who drove the arm in one episode: policy->human switches, and seconds with the human in control."""

    interventions: int
    human_s: float


def control_time(ep: EpisodeFile) -> ControlTime | None:
    """Interventions and human time of one episode (robotflow.recording.control); None without a channel."""
    segments = human_segments(ep)
    if segments is None:
        return None
    return ControlTime(len(segments), float(sum(s.duration_s for s in segments)))


# ---- over a set of episodes ---------------------------------------------------------------------------------------


def episode_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Success from outcomes and from labels, interventions, human time and faults over episode rows (dicts with
    `outcome`, `label`, `duration_s`, and `interventions`/`human_s`, None without a control channel).

    A discarded episode (by outcome or label) is no trial and counts nowhere; the label rate is over the labelled
    episodes only. Keys are None where nothing was recorded to compute them from.
    """
    trials = [r for r in rows if "discarded" not in (r["outcome"], r["label"])]
    labelled = [r for r in trials if r["label"]]
    controlled = [r for r in trials if r.get("interventions") is not None]
    return {
        "trials": len(trials),
        "success_outcome": success_json(sum(r["outcome"] == "success" for r in trials), len(trials))
        if trials
        else None,
        "success_label": success_json(sum(r["label"] == "success" for r in labelled), len(labelled))
        if labelled
        else None,
        "interventions": _control_totals(controlled) if controlled else None,
        "faults": sum(r["outcome"] == "fault" for r in trials),
    }


def _control_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    total = sum(int(r["interventions"]) for r in rows)
    human_s = sum(float(r["human_s"]) for r in rows)
    duration = float(np.nansum([r["duration_s"] for r in rows]))
    return {
        "episodes": len(rows),
        "total": total,
        "per_episode": round(total / len(rows), 3),
        "human_s": round(human_s, 3),
        "human_fraction": round(human_s / duration, 4) if duration > 0 else None,
    }


def format_metrics(metrics: Mapping[str, Any], with_outcome: bool = True) -> list[str]:
    """The lines of episode_metrics(): success (outcome, and label when labelled), interventions, faults.
    `with_outcome` False leaves the outcome rate out (a rollout prints its own)."""
    lines = []
    for key, what in (("success_outcome", "recorded outcome"), ("success_label", "operator label")):
        s = metrics[key]
        if s is not None and (with_outcome or key != "success_outcome"):
            lines.append(f"success by {what}: {success_text(s['successes'], s['episodes'])}")
    c = metrics["interventions"]
    if c is not None:
        share = "" if c["human_fraction"] is None else f" ({c['human_fraction']:.1%} of the time)"
        lines.append(
            f"interventions: {c['per_episode']:.2f} per episode ({c['total']} in {c['episodes']} episodes), "
            f"under human control {c['human_s']:.1f} s{share}"
        )
    if metrics["trials"]:
        lines.append(f"faults: {metrics['faults']}")
    return lines
