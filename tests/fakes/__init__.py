"""Fake hardware SDKs (franky, pyrealsense2, pyspacemouse, pygame's joystick) and small graph nodes for the driver tests.

`install(monkeypatch, "franky")` loads a fresh copy of tests/fakes/franky.py and puts it in sys.modules
under the SDK's name, so the driver's lazy `import franky` gets the fake for that test only.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robotflow.runtime.node import Node, register

FAKES_DIR = Path(__file__).resolve().parent


def load(sdk: str):
    """A fresh module object from tests/fakes/<sdk>.py (module state is never shared between tests)."""
    spec = importlib.util.spec_from_file_location(sdk, FAKES_DIR / f"{sdk}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def install(monkeypatch, sdk: str):
    mod = load(sdk)
    monkeypatch.setitem(sys.modules, sdk, mod)
    return mod


@dataclass
class ScriptParams:
    # One entry per tick, each {output: {field: value}}; the last entry repeats `hold` more ticks,
    # then the graph stops.
    steps: list = field(default_factory=list)
    hold: int = 5


@register("testdrv.script")
class Script(Node):
    """Emits a scripted sequence of targets (ee_target / joint_target / grip), then ends the graph."""

    Params = ScriptParams
    outputs = ("ee_target", "joint_target", "grip")

    def setup(self) -> None:
        self.k = 0

    def step(self) -> None:
        steps = self.params.steps
        if self.k >= len(steps) + self.params.hold:
            self.request_stop("script done")
            return
        entry = steps[min(self.k, len(steps) - 1)]
        for output, fields in entry.items():
            self.emit(
                output, **{k: (np.asarray(v, np.float64) if isinstance(v, list) else v) for k, v in fields.items()}
            )
        self.k += 1


@register("testdrv.collect")
class Collect(Node):
    """Keeps every message received on every input (the Message objects themselves: zero-copy views)."""

    any_inputs = True

    def setup(self) -> None:
        self.messages: dict[str, list] = {}

    def step(self) -> None:
        for port in self._subs:
            self.messages.setdefault(port, []).extend(self.read_all(port))

    def teardown(self) -> None:
        self.step()  # what arrived after the last tick
