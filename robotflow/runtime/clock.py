"""Runtime clocks. Every channel timestamp comes from one of these, never from frame counters."""

from __future__ import annotations

import time


class Clock:
    kind = "abstract"

    def now_ns(self) -> int:
        raise NotImplementedError


class WallClock(Clock):
    """Monotonic wall time, for hardware."""

    kind = "wall"

    def now_ns(self) -> int:
        return time.monotonic_ns()


class VirtualClock(Clock):
    """Simulated time, advanced by the scheduler in lockstep with the simulator.

    A slow renderer therefore never distorts the recorded timeline, and a run is deterministic for a seed.
    """

    kind = "virtual"

    def __init__(self) -> None:
        self._t = 0

    def now_ns(self) -> int:
        return self._t

    def advance_to(self, t_ns: int) -> None:
        if t_ns < self._t:
            raise ValueError("virtual time cannot go backwards")
        self._t = t_ns
