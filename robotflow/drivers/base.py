"""The device contracts in code: what every arm, gripper, camera and teleop node of robotflow shares.

docs/contracts.md lists the channels; these base classes are where the nodes get them, so a simulated and
a real device cannot drift apart: the same port names, the same fields and units, the same command
precedence, the same safety layer (robotflow/safety.py) and the same shutdown duties.

Units and conventions (docs/contracts.md): positions in metres in the robot base frame, joint positions in
rad and velocities in rad/s, quaternions `w, x, y, z` with `w >= 0`, an EE pose is
`[x, y, z, qw, qx, qy, qz]`, a gripper width is normalised 0 (closed) .. 1 (open), images are
`(H, W, 3)` uint8 RGB. Every emitted array is a fresh one (receivers hold zero-copy views of it).

Shutdown: `stop_hardware()` runs from the scheduler's thread as soon as the graph stops, before any
teardown, even while `step()` still runs; after it returns the device receives no new command. A device
without moving hardware (the simulation, cameras, teleop devices) has nothing to do there. `teardown()`
releases the device in the node's own thread and never raises for a device that is already gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from robotflow.runtime.node import Input, Node
from robotflow.safety import ArmSafety, ArmSafetyParams, GripperSafety

# Waits between a stalled camera's reopen attempts (the last one repeats).
RECONNECT_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)

# ---- arm ----------------------------------------------------------------------------------------------

# What an arm is doing, published with every state (`mode`):
#   idle  - no target yet (since the start, or since the simulated robot was reset): at rest where it is;
#   move  - following the newest target;
#   hold  - the command watchdog fired, or the arm recovered from a fault: at rest, held, until a fresh target;
#   fault - the robot reported an error (a reflex, a lost connection): no command is sent; `fault` says what.
ARM_MODES = ("idle", "move", "hold", "fault")


class ArmNode(Node):
    """An arm (`sim.arm`, `franka.arm`): EE or joint targets in, through `ArmSafety`, measured state out.

    Inputs (both optional, delayed: a feedback edge from the teleop or policy that reads `state`):
      - `ee_target`: `ee_pose` (7,) absolute EE target.
      - `joint_target`: `joint_pos` (7,) absolute joint target (rad).
    Outputs:
      - `state`: `joint_pos` (7,) rad, `joint_vel` (7,) rad/s, `ee_pose` (7,), measured, every tick; and the
        arm's status: `mode` (one of ARM_MODES) and `fault` (str: the robot's error while `mode` is "fault",
        else ""). After a lost connection the last measured joints and pose are sent with the fault.
      - `command`: the target the arm applies now, after the safety layer: `ee_pose` (7,) with `mode="ee"`
        or `joint_pos` (7,) with `mode="joints"`; absent until the first target is applied.

    Params derive from `ArmSafetyParams` (workspace box, tilt cone, step per tick, command watchdog). A
    subclass reads its measured state, calls `take_command` and then `apply_safety_tick`, which calls its
    `apply_ee` / `apply_joints` / `hold`, and emits with `emit_state` / `emit_command`.

    Status: `arm_mode` and `arm_fault` are kept here: `apply_safety_tick` sets idle/move/hold, a subclass
    calls `enter_fault` when its robot reports an error (nothing is commanded from then on) and `clear_fault`
    when the error was cleared. `emit_state` requires the mode and the fault, so no arm publishes without them.

    `stop_hardware`: a real arm decelerates to rest now and no command follows (it raises when the arm does
    not stop); the simulated arm has nothing to stop. `teardown` ends any motion still running.
    """

    Params: ClassVar[type] = ArmSafetyParams
    inputs = {"ee_target": Input(delayed=True, required=False), "joint_target": Input(delayed=True, required=False)}
    outputs = ("state", "command")

    def init_safety(self, joint_limits: tuple[np.ndarray, np.ndarray], fk: Callable[[np.ndarray], np.ndarray]):
        """The arm's safety layer, from its params, its joint limits and its forward kinematics."""
        self.safety = ArmSafety(self.params, joint_limits, fk, self.name)
        self.arm_mode = "idle"
        self.arm_fault = ""

    def enter_fault(self, error: str) -> None:
        """The robot reported an error: from now on no command is sent (apply_safety_tick does nothing) and
        the state carries `mode` "fault" with the error, until `clear_fault`."""
        self.arm_mode, self.arm_fault = "fault", " ".join(str(error).split()) or "unknown error"
        self.safety.reset()

    def clear_fault(self) -> None:
        """The error was cleared (the robot recovered): hold where the arm is until a fresh command."""
        self.arm_mode, self.arm_fault = "hold", ""
        self.safety.reset()

    def reset_mode(self) -> None:
        """The robot was reset (the simulation's episode reset): no target, nothing held."""
        self.arm_mode, self.arm_fault = "idle", ""

    def take_command(self, now_ns: int, not_before_ns: int = -1) -> None:
        """Hand this tick's new target, if any, to the safety layer; messages stamped before `not_before_ns`
        (a command from before a robot reset) are ignored.

        Precedence when both inputs bring a new target in the same tick: the one stamped later wins, and on
        equal stamps the EE target wins. The other one is dropped, not validated and not counted. Why this
        rule: it is the only one that never applies a target its sender has already superseded (an older
        joint target must not override the EE target a person or a policy sent after it), and on a tie the
        EE target is the one the safety layer can always make safe: it is clamped into the workspace box
        and the tilt cone, while a joint target can only be rejected when its pose falls outside them. When
        the winner is then rejected (NaN, wrong shape, outside the workspace), nothing new is forwarded: the
        arm keeps its previous target, it never falls back to the older command.
        """
        ee, jt = self.read_new("ee_target"), self.read_new("joint_target")
        if ee is not None and ee.timestamp_ns < not_before_ns:
            ee = None
        if jt is not None and jt.timestamp_ns < not_before_ns:
            jt = None
        if ee is not None and (jt is None or ee.timestamp_ns >= jt.timestamp_ns):
            self.safety.command_ee(ee.get("ee_pose"), now_ns)
        elif jt is not None:
            self.safety.command_joints(jt.get("joint_pos"), now_ns)

    def apply_safety_tick(self, measured_pose: np.ndarray, measured_q: np.ndarray, now_ns: int) -> None:
        """Send this tick's command from the safety layer: a step-limited target, or a hold when the
        command watchdog fired just now, or nothing. A faulted arm is sent nothing."""
        if self.arm_mode == "fault":
            return
        cmd = self.safety.tick(measured_pose, measured_q, now_ns)
        if cmd is False:
            self.hold()
            self.arm_mode = "hold"
        elif cmd is not None:
            mode, target = cmd
            (self.apply_joints if mode == "joints" else self.apply_ee)(target)
            self.arm_mode = "move"

    def apply_ee(self, target: np.ndarray) -> None:
        """Drive the arm toward an EE pose target (already validated and step-limited)."""
        raise NotImplementedError

    def apply_joints(self, target: np.ndarray) -> None:
        """Drive the arm toward a joint target (already validated and step-limited)."""
        raise NotImplementedError

    def hold(self) -> None:
        """The command watchdog fired: stop the motion and hold where the arm is."""
        raise NotImplementedError

    def emit_state(
        self, joint_pos: np.ndarray, joint_vel: np.ndarray, ee_pose: np.ndarray, *, mode: str, fault: str
    ) -> None:
        """The measured state with the arm's status (pass `self.arm_mode`, `self.arm_fault`)."""
        if mode not in ARM_MODES:
            raise ValueError(f"{self.name}: arm mode {mode!r} is not one of {', '.join(ARM_MODES)}")
        if (mode == "fault") != bool(fault):
            raise ValueError(f"{self.name}: mode {mode!r} with fault {fault!r}: a fault goes with mode 'fault' only")
        self.emit("state", joint_pos=joint_pos, joint_vel=joint_vel, ee_pose=ee_pose, mode=mode, fault=fault)

    def emit_command(self, mode: str | None, target: np.ndarray | None) -> None:
        """Echo the applied target (a copy: the node keeps its own); nothing before the first one."""
        if target is None:
            return
        if mode == "ee":
            self.emit("command", ee_pose=target.copy(), mode="ee")
        elif mode == "joints":
            self.emit("command", joint_pos=target.copy(), mode="joints")

    def report(self) -> dict | None:
        return {"safety": self.safety.report()} if hasattr(self, "safety") else None


# ---- gripper ------------------------------------------------------------------------------------------


class GripperNode(Node):
    """A gripper (`sim.gripper`, `franka.gripper`): a normalised width target in, the measured width out.

    Input `target` (optional, delayed): `width` 0 (closed) .. 1 (open), through `GripperSafety` (NaN or a
    wrong shape rejected, values outside [0, 1] clamped). Outputs: `state` {`width`} measured every tick,
    `command` {`width`} the target applied (absent before the first one).

    `stop_hardware` means no new gripper command; a running one may finish. A gripper is never opened or
    stopped at shutdown: that would release a grasp and drop what the arm holds.
    """

    inputs = {"target": Input(delayed=True, required=False)}
    outputs = ("state", "command")

    def init_safety(self) -> None:
        self.safety = GripperSafety(self.name)

    def take_target(self, not_before_ns: int = -1) -> float | None:
        """The new width target of this tick, validated, or None (none new, stale, or rejected)."""
        msg = self.read_new("target")
        if msg is None or msg.timestamp_ns < not_before_ns:
            return None
        return self.safety.command(msg.get("width"))

    def emit_state(self, width: float) -> None:
        self.emit("state", width=float(width))

    def emit_command(self, width: float) -> None:
        self.emit("command", width=float(width))

    def report(self) -> dict | None:
        return {"safety": self.safety.report()} if hasattr(self, "safety") else None


# ---- camera -------------------------------------------------------------------------------------------


class CameraNode(Node):
    """A camera (`sim.camera`, `realsense.camera`, `opencv.camera`): output `frame` {`image`: (H, W, 3) uint8
    RGB}, a fresh array per frame, at most one frame per tick; a tick without a new frame emits nothing.

    A live camera that stops delivering (unplugged, a USB reset, a hung driver) never re-emits an old frame:
    its readers see the last frame age, so a policy skips its ticks (max_observation_age_s) and the arm's
    watchdog holds. After `timeout_s` without a frame the node reopens the device (`watch_stream`), with
    backoff, for up to `reconnect_s`; frames resume when the device is back, and after that long without one
    the node fails, which stops the graph safely. Stalls and reconnects are counted in the report.
    """

    outputs = ("frame",)

    def emit_frame(self, image: np.ndarray) -> None:
        self.emit("frame", image=image)

    # ---- stall watch and reconnect (live cameras) ------------------------------------------------------
    def start_watch(self, timeout_s: float, reconnect_s: float) -> None:
        """Begin watching the stream (end of setup): no frame for `timeout_s` is a stall."""
        self._watch = (timeout_s, reconnect_s)
        self._last_frame_t = time.monotonic()
        self._stall_t: float | None = None  # when the current stall was detected
        self._attempts = 0
        self._next_attempt_t = 0.0
        self.stream_counts = {"stalls": 0, "reconnects": 0, "reconnect_attempts": 0}

    def frame_arrived(self, what: str) -> None:
        """A new frame came from the device: a stall, if any, is over."""
        now = time.monotonic()
        if self._stall_t is not None:
            self.log("%s delivering again after %.1f s without a frame", what, now - self._last_frame_t)
            self._stall_t = None
        self._last_frame_t = now

    def watch_stream(self, what: str, hint: str, reopen: Callable[[], None]) -> None:
        """A tick without a new frame: past `timeout_s` call `reopen()` (raises when the device is not
        back) with backoff, and fail once `timeout_s + reconnect_s` have passed without a frame."""
        timeout_s, reconnect_s = self._watch
        now = time.monotonic()
        silent = now - self._last_frame_t
        if silent <= timeout_s:
            return
        if self._stall_t is None:
            self._stall_t, self._attempts, self._next_attempt_t = now, 0, now
            self.stream_counts["stalls"] += 1
            if reconnect_s > 0:
                self.log("%s: no frame for %.1f s: reopening it, for up to %g s", what, silent, reconnect_s)
        if silent > timeout_s + reconnect_s:
            tried = f"; {self._attempts} reopen attempt(s) failed" if self._attempts else ""
            raise RuntimeError(f"{what}: no frame for {timeout_s + reconnect_s:g} s ({hint}){tried}")
        if now < self._next_attempt_t:
            return
        self._attempts += 1
        self.stream_counts["reconnect_attempts"] += 1
        self._next_attempt_t = now + RECONNECT_BACKOFF_S[min(self._attempts - 1, len(RECONNECT_BACKOFF_S) - 1)]
        try:
            reopen()
        except RuntimeError as e:
            self.log("%s: reopen attempt %d failed: %s", what, self._attempts, str(e).splitlines()[0][:200])
            return
        self.stream_counts["reconnects"] += 1
        self.log("%s: reopened (attempt %d), waiting for frames", what, self._attempts)


# ---- teleop device ------------------------------------------------------------------------------------


class TeleopDeviceNode(Node):
    """A teleop device (`teleop.keyboard`, `.spacemouse`, `.gamepad`, `.webxr`, `.scripted`): it stands in
    for the arm's and gripper's commander, so a policy node can take its place in a graph.

    Input `state`: the arm's measured state (the target starts from its `ee_pose`, so connecting a device
    never moves the arm). Outputs: `ee_target` {`ee_pose` (7,)} an absolute EE target, to the arm's
    `ee_target`; `grip` {`width` 0..1}, to the gripper's `target`. While the device is lost it emits
    neither (the arm keeps, or its watchdog holds, the last target).

    Take-over (a policy graph with a `control.arbiter`, robotflow/drivers/arbiter.py): the device also emits
    `takeover` {`active`: bool} every tick it is alive, True while the operator holds the device's take-over
    button or clutch. The optional, delayed input `control` is the arbiter's `control` output
    {`source`: "policy" | "human", `ee_pose` (7,), `width`}: what the arm is being sent now. While the policy
    drives, the device keeps its target and grip at that command (`follow_control`), so a take-over starts
    exactly where the arm is headed and never jumps.
    """

    inputs = {"state": Input(), "control": Input(delayed=True, required=False)}
    outputs = ("ee_target", "grip", "takeover")

    def emit_target(self, ee_pose: np.ndarray, width: float) -> None:
        """Emit an EE target and a grip (a fresh pose array each time: receivers hold views of it)."""
        self.emit("ee_target", ee_pose=ee_pose)
        self.emit("grip", width=float(width))

    def emit_takeover(self, active: bool) -> None:
        """Whether the operator claims the arm now (the arbiter hands it over while this is True)."""
        self.emit("takeover", active=bool(active))

    def policy_command(self) -> tuple[np.ndarray, float] | None:
        """The (EE pose, width) the arbiter sends while the policy drives, or None: no arbiter in the graph,
        nothing sent yet, or the operator has the arm."""
        msg = self.read("control")
        if msg is None or msg["source"] != "policy" or msg.get("ee_pose") is None or msg.get("width") is None:
            return None
        return np.asarray(msg["ee_pose"], float).copy(), float(msg["width"])
