"""Live statistics: per node tick timing, per channel delivery counts."""

from __future__ import annotations

import time

import numpy as np


class Samples:
    """A fixed-size ring of the most recent samples (bounded memory on long runs)."""

    def __init__(self, size: int = 50_000):
        self._buf = np.zeros(size, dtype=np.float64)
        self._n = 0

    def add(self, value: float) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def values(self) -> np.ndarray:
        return self._buf[: min(self._n, len(self._buf))]

    def percentile(self, q: float) -> float | None:
        v = self.values()
        return float(np.percentile(v, q)) if len(v) else None


class NodeStats:
    def __init__(self) -> None:
        self.ticks = 0
        self.overruns = 0
        self.lateness_us = Samples()  # start of a periodic tick minus its deadline
        self.step_us = Samples()
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def record(self, start_ns: int, end_ns: int) -> None:
        self.ticks += 1
        if self.first_ns is None:
            self.first_ns = start_ns
        self.last_ns = start_ns
        self.step_us.add((end_ns - start_ns) / 1e3)

    def rate_hz(self) -> float | None:
        if self.ticks < 2 or self.first_ns is None or self.last_ns == self.first_ns:
            return None
        return (self.ticks - 1) / ((self.last_ns - self.first_ns) / 1e9)

    def summary(self) -> dict:
        return {
            "ticks": self.ticks,
            "rate_hz": self.rate_hz(),
            "period_error_p50_us": self.lateness_us.percentile(50),
            "period_error_p99_us": self.lateness_us.percentile(99),
            "overruns": self.overruns,
            "step_p50_us": self.step_us.percentile(50),
            "step_p99_us": self.step_us.percentile(99),
        }


def merge(*parts: dict) -> dict:
    """One stats dict from this process's and each process group's, with every reader's `unread` filled in.

    A channel's `sent` is known only where its publisher runs, often another process than a reader's, so
    unread is computed after merging: sent = received + dropped + unread, where unread is what was still
    queued, or lost after the reader's last message, when the graph stopped. None until `sent` is known.
    """
    nodes: dict[str, dict] = {}
    channels: dict[str, dict] = {}
    for part in parts:
        nodes.update(part.get("nodes", {}))
        for ch, c in part.get("channels", {}).items():
            mine = channels.setdefault(ch, {"sent": None, "inputs": {}})
            if c.get("sent") is not None:
                mine["sent"] = c["sent"]
            mine["inputs"].update(c["inputs"])
    for c in channels.values():
        for i in c["inputs"].values():
            i["unread"] = None if c["sent"] is None else c["sent"] - i["received"] - i["dropped"]
    return {"nodes": nodes, "channels": channels}


def _fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_live(summary: dict) -> str:
    parts = []
    for name, s in summary.get("nodes", {}).items():
        parts.append(f"{name} {_fmt(s['rate_hz'], '.1f')}Hz p99 {_fmt(s['period_error_p99_us'])}us ovr {s['overruns']}")
    dropped = sum(i["dropped"] for c in summary.get("channels", {}).values() for i in c["inputs"].values())
    return f"[{time.strftime('%H:%M:%S')}] " + " | ".join(parts) + f" | dropped {dropped}"
