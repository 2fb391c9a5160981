"""Who was in control: the segments of an episode an operator drove, from the recorded `control` channel.

A `control.arbiter` (robotflow/drivers/arbiter.py) publishes `control` {`source`: "policy" | "human", ...}
every tick and the recorder keeps it, as `<arbiter node>/control`. An intervention is one run of ticks with
source "human": it starts at the operator's take-over and ends at the hand-back, the next message (or at the
episode's end). Counted from `source`, not from the arbiter's own running totals, so an episode file alone
answers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reader import EpisodeFile


@dataclass(frozen=True)
class ControlSegment:
    """One intervention: from the take-over to the hand-back (ns, runtime clock)."""

    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9


def control_channel(ep: EpisodeFile) -> str | None:
    """The episode's recorded control channel (`*/control` with a `source` field), or None: no arbiter."""
    return next((c for c in ep.channels() if c.endswith("/control") and ep.has_field(c, "source")), None)


def human_segments(ep: EpisodeFile, channel: str | None = None) -> list[ControlSegment] | None:
    """The interventions of an episode, in order; None when it has no control channel. Each message's source
    holds until the next message, the last one until the episode's end."""
    channel = channel or control_channel(ep)
    if channel is None or not ep.has_channel(channel):
        return None
    ts = ep.timestamps(channel)
    human = np.asarray([str(s) == "human" for s in ep.field(channel, "source")], bool)
    if not human.any():
        return []
    end = ep.attr("end_timestamp_ns")
    end_ns = max(int(end), int(ts[-1])) if end.lstrip("-").isdigit() else int(ts[-1])
    until = np.append(ts[1:], end_ns)  # when each message's source stops holding
    edges = np.diff(np.concatenate([[0], human.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [ControlSegment(int(ts[a]), int(until[b])) for a, b in zip(starts, stops)]
