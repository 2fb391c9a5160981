"""`PolicyNode`: what every policy node does before it asks its policy for an action.

- Episode gating: with the `episode` port connected (task/episode events), the node acts only between an
  episode's `start` and its `end`: between `end` and the next `start` the robot is being reset (or a person
  is putting cubes back) and nothing may drive it. Without that port it acts from the first tick.
- Observation staleness: an observation is as old as its oldest part; a tick whose observation is older
  than `max_observation_age_s` (a stalled camera, a frozen arm state) is skipped instead of acting on the
  past, and the arm's command watchdog (robotflow/safety.py) holds the arm if that lasts.

- Take-over: with the `control` port connected (a `control.arbiter`'s `control`, robotflow/drivers/arbiter.py)
  the node keeps acting while an operator drives (its actions are not forwarded), and when control comes back
  it drops what it had queued (`on_handback`), so its next action is planned from the current state.

A subclass declares `GATING_INPUTS` among its inputs, calls `start_gating` at the end of its setup and
implements `act`; it may override `on_episode_start`, `on_episode_end`, `on_handback` and `can_act`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from robotflow.runtime.channels import Message
from robotflow.runtime.node import Input, Node

# Counts at which a run of skipped ticks is logged again (not every tick: a stalled camera at 15 Hz).
_LOG_AT = (1, 10, 100, 1000)


class PolicyNode(Node):
    """Base of the policy nodes (`policy.act`, `policy.lerobot`, `policy.remote`): see the module docs."""

    outputs = ("ee_target", "grip")
    # episode: task/episode events (optional, queue); control: the arbiter's control (optional, a feedback edge).
    GATING_INPUTS = {"episode": Input(delivery="queue", required=False), "control": Input(delayed=True, required=False)}

    def start_gating(self, ports: Iterable[str], max_observation_age_s: float, counts: dict[str, int]) -> None:
        """Gate on `ports` (the inputs an observation is made of) with `counts` as the node's counters;
        `ticks`, `idle` and `stale_observations` are added to it."""
        self._observation_ports = list(ports)
        self._max_age_ns = max_observation_age_s * 1e9
        self.counts = counts
        for key in ("ticks", "idle", "stale_observations", "handbacks"):
            self.counts.setdefault(key, 0)
        self.episode_msg: Message | None = None  # the last episode event (it carries the task text)
        self._acting = not self.connected("episode")
        self._human_in_control = False

    def on_episode_start(self) -> None:
        """A new episode: drop the policy's state of the last one."""

    def on_episode_end(self) -> None:
        """The episode ended: drop what is in flight for it."""

    def on_handback(self) -> None:
        """An operator handed control back: drop queued actions, so the next one is planned from now."""

    def can_act(self) -> bool:
        """Whether the node can act at all this tick (e.g. a remote policy's server is reachable)."""
        return True

    def act(self, latest: dict[str, Message], now_ns: int, observed_ns: int) -> None:
        """Act on a fresh observation: `latest` maps each port to its newest message, all present."""
        raise NotImplementedError

    def step(self) -> None:
        self.counts["ticks"] += 1
        for msg in self.read_all("episode"):
            self.episode_msg = msg
            if msg["event"] == "start":
                self.on_episode_start()
                self._acting = True
            elif msg["event"] == "end":
                self._acting = False
                self.on_episode_end()
        self._follow_control()
        if not self._acting:
            self.counts["idle"] += 1
            return
        if not self.can_act():
            return
        latest = self._observation()
        if latest is None:
            return
        now = self.now_ns()
        observed_ns = min(m.timestamp_ns for m in latest.values())  # as old as its oldest part
        if now - observed_ns > self._max_age_ns:
            self.counts["stale_observations"] += 1
            if self.counts["stale_observations"] in _LOG_AT:
                oldest = min(latest, key=lambda port: latest[port].timestamp_ns)
                self.log("skipping ticks: %s is %.0f ms old", oldest, (now - observed_ns) / 1e6)
            return
        self.act(latest, now, observed_ns)

    def _follow_control(self) -> None:
        msg = self.read("control")
        human = msg is not None and msg["source"] == "human"
        if self._human_in_control and not human:
            self.counts["handbacks"] += 1
            self.on_handback()
        self._human_in_control = human

    def _observation(self) -> dict[str, Any] | None:
        """The newest message of every observation port; None while a sensor has not published yet."""
        latest = {}
        for port in self._observation_ports:
            msg = self.read(port)
            if msg is None:
                return None
            latest[port] = msg
        return latest
