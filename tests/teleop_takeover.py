"""What the take-over tests of the teleop devices share: a stand-in for the arm and the arbiter, and the checks.

`testteleop.policy_arbiter` owns virtual time and emits what a device reads in a policy graph with a
`control.arbiter`: the arm's `state` (still, at HOME) and the arbiter's `control` {source, ee_pose, width,
...}. Like the arbiter it says "policy" with the policy's command, and "human" while the device's `takeover`
is active. The policy's command is COMMAND_A until `switch_s` after the device's first `takeover` message
(it is alive), then COMMAND_B, so a test can see the device follow it tick by tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import fakes  # noqa: F401 - registers testdrv.collect, the log of nodes_yaml
import numpy as np

from robotflow.runtime.node import Input, Node, register

HOME = np.array([0.55, 0.0, 0.48, 0.0, 0.70710678, 0.70710678, 0.0])
COMMAND_A = np.array([0.5, 0.05, 0.3, 0.0, 0.70710678, 0.70710678, 0.0])
COMMAND_B = np.array([0.52, 0.06, 0.28, 0.0, 0.70710678, 0.70710678, 0.0])
WIDTH = 0.3


@dataclass
class PolicyArbiterParams:
    switch_s: float = 0.3  # COMMAND_A before, COMMAND_B after (from the device's first `takeover`)
    paced: bool = False  # pace virtual time to the wall clock (a device fed from the test's thread)


@register("testteleop.policy_arbiter")
class PolicyArbiter(Node):
    Params = PolicyArbiterParams
    inputs = {"takeover": Input(delayed=True, required=False)}
    outputs = ("state", "control")
    virtual_clock = True

    def paces_virtual_time(self) -> bool:
        return self.params.paced

    def step(self) -> None:
        now = self.now_ns()
        self.emit("state", ee_pose=HOME.copy(), joint_pos=np.zeros(7), joint_vel=np.zeros(7))
        takeover = self.read("takeover")
        if takeover is not None and not hasattr(self, "alive_ns"):
            self.alive_ns = now
        human = takeover is not None and bool(takeover["active"])
        since_alive_s = (now - getattr(self, "alive_ns", now)) * 1e-9
        command = COMMAND_A if since_alive_s < self.params.switch_s else COMMAND_B
        self.emit(
            "control",
            source="human" if human else "policy",
            ee_pose=command.copy(),
            width=WIDTH,
            interventions=0,
            human_s=0.0,
        )


def nodes_yaml(teleop_type: str, teleop_params: str = "{}", paced: bool = False) -> str:
    """The stand-in, the device under test (reading it) and a log of what the device emits."""
    return f"""
  - {{name: policy, type: testteleop.policy_arbiter, rate: 100, params: {{paced: {str(paced).lower()}}},
     inputs: {{takeover: teleop/takeover}}}}
  - name: teleop
    type: {teleop_type}
    rate: 100
    params: {teleop_params}
    inputs: {{state: policy/state, control: policy/control}}
  - name: log
    type: testdrv.collect
    rate: 100
    inputs:
      t: {{source: teleop/ee_target, delivery: queue}}
      g: {{source: teleop/grip, delivery: queue}}
      takeover: {{source: teleop/takeover, delivery: queue}}
      e: {{source: teleop/episode, delivery: queue}}
"""


def check_takeover(log: dict) -> np.ndarray:
    """Before the take-over the target and grip followed the policy (A, then B: never the arm's HOME); the
    first target of the take-over is exactly B (no jump). Returns the targets emitted while engaged."""
    targets = {m.timestamp_ns: np.asarray(m["ee_pose"]) for m in log["t"]}
    active = [(m.timestamp_ns, bool(m["active"])) for m in log["takeover"]]
    first_on = next(ts for ts, on in active if on)
    before = [targets[ts] for ts, on in active if ts < first_on]
    assert len(before) > 20 and not any(on for ts, on in active if ts < first_on)
    # The first tick or two start from the arm (the delayed `control` has not arrived yet); then A, then B.
    followed = [p for p in before if not np.allclose(p, HOME)]
    assert len(followed) >= len(before) - 2
    assert np.allclose(followed[0], COMMAND_A) and np.allclose(followed[-1], COMMAND_B)
    assert all(np.allclose(p, COMMAND_A) or np.allclose(p, COMMAND_B) for p in followed)
    assert [float(m["width"]) for m in log["g"] if m.timestamp_ns < first_on][-1] == WIDTH
    assert np.allclose(targets[first_on], COMMAND_B, atol=1e-12)
    return np.array([targets[ts] for ts, on in active if on])


def check_failure(log: dict) -> None:
    """The fail button ended the started episode, kept and labelled failure."""
    ends = [m for m in log["e"] if m["event"] == "end"]
    assert [(m["outcome"], m["label"]) for m in ends] == [("failure", "failure")]
