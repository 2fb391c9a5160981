"""Scoring a policy's episodes: the success rate with its Wilson interval, and the per-seed table."""

from __future__ import annotations

from collections.abc import Sequence

# The interval lives with the recorded-episode metrics (`robotflow info` reports it too); re-exported here.
from robotflow.recording.metrics import Z_95, success_text, wilson_interval
from robotflow.recording.summary import format_episode_table

from .episodes import EpisodeOutcome

__all__ = ["Z_95", "format_table", "summary_line", "wilson_interval"]


def format_table(outcomes: Sequence[EpisodeOutcome]) -> str:
    """The per-seed table and the success rate with its 95% Wilson interval."""
    table = format_episode_table([o.as_dict() for o in outcomes], ("episode", "seed", "outcome", "duration"))
    return f"{table}\n{summary_line(outcomes)}"


def summary_line(outcomes: Sequence[EpisodeOutcome]) -> str:
    """`success rate: 50.0% (1/2), 95% Wilson interval 9.5% - 90.5%`."""
    return f"success rate: {success_text(sum(o.success for o in outcomes), len(outcomes))}"
