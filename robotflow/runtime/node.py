"""Nodes: the unit of work in a robotflow graph.

A node declares its input and output ports and a typed params dataclass, and implements
`setup` / `step` / `teardown`. The scheduler owns the threads, the clock and the channels; a node only
reads inputs, emits outputs and keeps its own state. See docs/contracts.md for a worked example.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from .channels import Message, Publisher, Subscriber
    from .clock import Clock

log = logging.getLogger("robotflow")


@dataclass(frozen=True)
class Input:
    """How a node input receives its channel.

    delivery: `latest` (sensor streams: newest value, superseded ones counted as skipped) or `queue`
        (every message in order, bounded by queue_size on the wall clock; overflow counted as dropped).
        On the virtual clock nothing is dropped, so a seed replays exactly.
    delayed: a feedback edge; the consumer may read the value produced in the previous tick. Only
        delayed edges may close a cycle.
    required: a graph that leaves it unconnected is refused.
    """

    delivery: str = "latest"
    queue_size: int = 256
    delayed: bool = False
    required: bool = True


@dataclass
class NoParams:
    """For nodes without parameters."""


class StopGraph(Exception):
    """Raised (or use Node.request_stop) to end the graph normally."""


class Node:
    """Base class of every node. Subclasses set the class attributes and implement step()."""

    Params: ClassVar[type] = NoParams
    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[tuple[str, ...]] = ()
    trigger: ClassVar[str | None] = None
    # A node that owns simulated time (the MuJoCo world): its graph runs on a virtual clock.
    virtual_clock: ClassVar[bool] = False
    # A node that takes whatever inputs the graph file lists (the recorder).
    any_inputs: ClassVar[bool] = False

    def __init__(self, name: str, params: Any):
        self.name = name
        self.params = params
        self._pubs: dict[str, Publisher] = {}
        self._subs: dict[str, Subscriber] = {}
        self._clock: Clock | None = None
        self._runtime = None  # the Scheduler, for peer() and request_stop()
        self.counts: dict[str, int] = {}  # the node's own event counts (a recorder's late messages), in the stats

    # ---- declared ports -------------------------------------------------------------------------
    @classmethod
    def declare_inputs(cls, params: Any) -> dict[str, Input]:
        return dict(cls.inputs)

    @classmethod
    def declare_outputs(cls, params: Any) -> tuple[str, ...]:
        return tuple(cls.outputs)

    # ---- lifecycle, overridden by nodes ---------------------------------------------------------
    def setup(self) -> None:
        """Open devices, allocate buffers. Runs in the thread that will call step()."""

    def step(self) -> None:
        """One tick: read inputs, emit outputs."""

    def teardown(self) -> None:
        """Release resources and put hardware in a safe state. Always called, even after a failure."""

    def stop_hardware(self) -> None:
        """Make hardware safe now (an arm at rest, no new command). Called from the scheduler's thread as soon
        as the graph stops, before any teardown, even while setup() or step() still runs; raise if it fails."""

    def paces_virtual_time(self) -> bool:
        """A node that owns simulated time may ask the scheduler to pace it to the wall clock (a person watching,
        a policy inferring asynchronously). Read once, after setup."""
        return False

    def report(self) -> dict | None:
        """Results to hand back after the run (JSON-able); also collected from other processes."""
        return None

    # ---- runtime services -----------------------------------------------------------------------
    def now_ns(self) -> int:
        """The runtime clock: virtual time in simulation, monotonic wall time otherwise."""
        return self._clock.now_ns()

    def emit(self, output: str, /, **fields: Any) -> int:
        """Publish one message. Arrays are sent zero-copy: do not modify them afterwards."""
        try:
            pub = self._pubs[output]
        except KeyError:
            raise KeyError(f"node {self.name!r} has no output {output!r} (outputs: {', '.join(self._pubs)})") from None
        return pub.send(self._clock.now_ns(), fields)

    def connected(self, port: str) -> bool:
        return port in self._subs

    def read(self, port: str) -> Message | None:
        """The newest message on an input (None before the first one, or when unconnected)."""
        sub = self._subs.get(port)
        return sub.read() if sub is not None else None

    def read_new(self, port: str) -> Message | None:
        """The newest message if one arrived since the last read, else None."""
        sub = self._subs.get(port)
        return sub.read_new() if sub is not None else None

    def read_all(self, port: str) -> list[Message]:
        """Every message received on an input since the last call, oldest first."""
        sub = self._subs.get(port)
        return sub.read_all() if sub is not None else []

    def request_stop(self, reason: str = "") -> None:
        """End the whole graph normally (exit status 0) after this tick."""
        if self._runtime is not None:
            self._runtime.request_stop(self.name, reason)

    def peer(self, name: str) -> Node:
        """Another node of this graph running in the same process (sim nodes share the world)."""
        return self._runtime.peer(name)

    def log(self, message: str, *args: Any) -> None:
        log.info(f"[{self.name}] " + message, *args)


# ---- registry -----------------------------------------------------------------------------------
# Node types come from installed packages: each declares `type.name = package.module:Class` in the
# `robotflow.nodes` entry-point group (robotflow's own are in its setup.cfg), so a third-party package adds
# node types without touching robotflow. A module is imported only when a graph uses one of its types, so
# a graph without hardware or a policy never imports a hardware SDK or torch. `register` adds a class
# defined in the running program (tests, notebooks).

ENTRY_POINT_GROUP = "robotflow.nodes"
_REGISTRY: dict[str, type[Node]] = {}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def register(type_name: str):
    """Class decorator: make a node class defined in this program available to graph files as `type_name`."""

    def deco(cls: type[Node]) -> type[Node]:
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(f"@register({type_name!r}) must decorate a Node subclass")
        _REGISTRY[type_name] = cls
        cls.type_name = type_name
        return cls

    return deco


def known_types() -> list[str]:
    return sorted(set(_REGISTRY) | set(_entry_points()))


def resolve_type(type_name: str) -> type[Node]:
    """Find a node class by registered short name or import path (`pkg.module.Class` or `pkg.module:Class`)."""
    if type_name in _REGISTRY:
        return _REGISTRY[type_name]
    ep = _entry_points().get(type_name)
    if ep is not None:
        try:
            cls = ep.load()
        except ImportError as e:
            raise LookupError(f"cannot import {ep.value!r} for node type {type_name!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise LookupError(f"entry point {type_name!r} = {ep.value!r} is not a Node subclass")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls
    if ":" in type_name or type_name.count(".") >= 2:
        mod_name, _, attr = type_name.replace(":", ".").rpartition(".")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise LookupError(f"cannot import {mod_name!r}: {e}") from None
        cls = getattr(mod, attr, None)
        if isinstance(cls, type) and issubclass(cls, Node):
            return cls
        raise LookupError(f"{type_name!r} is not a Node subclass")
    raise LookupError(f"unknown node type {type_name!r}")
