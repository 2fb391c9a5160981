"""How training refuses a setup: `TrainError`, one line saying what to fix."""

from __future__ import annotations

import sys


class TrainError(Exception):
    """A training setup problem, reported as one line."""


def warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
