"""The safety layer every arm and gripper command passes, whatever sends it (teleop, policy, remote policy,
replay), in `franka.arm` / `franka.gripper` and in `sim.arm` / `sim.gripper` alike.

A fresh command is validated once (`ArmSafety.command_ee` / `command_joints`): NaN, inf or a wrong shape
is rejected and never forwarded; an EE position is clamped to the workspace box and the tool axis to a
cone around its nominal direction; a joint target is clamped inside the joint limits and rejected when its
forward kinematics leaves the box or the cone. The result is the *desired* target. Every tick
(`ArmSafety.tick`), the command actually sent is the desired target limited to `max_step_m` /
`max_step_deg` (and `max_joint_step_rad`) from the *measured* state, like LeRobot's
`max_relative_target`: a far target is approached a step at a time and, in impedance mode, never pulled at
full stiffness. The box and the cone are applied last, so nothing outside them is ever sent.

The watchdog: when no fresh command has arrived for `command_timeout_s` the layer reports a timeout
once (the node stops the motion and holds), and forwards nothing until a fresh command arrives.

Every rejection, clamp, step limit and timeout is counted (`counts`, in the node's report and the exit
table).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robotflow.geometry import pose_toward, quat_from_axis_angle, quat_mul, quat_z_axis, rotation_angle
from robotflow.runtime.params import ParamError, in_range, positive

log = logging.getLogger("robotflow.safety")

# Franka Hand limits (datasheet): continuous grasp force 70 N, finger speed up to 0.1 m/s (both fingers).
FRANKA_HAND_MAX_FORCE_N = 70.0
FRANKA_HAND_MAX_SPEED_MPS = 0.1


@dataclass(kw_only=True)
class ArmSafetyParams:
    """Limits of an arm node (flat graph params). Defaults suit a Franka on a table; measure yours first.

    workspace_min / workspace_max: EE position box, base frame (m); its floor above the table.
    tool_axis: nominal direction of the tool's z axis in the base frame (the flange pointing down).
    max_tilt_deg: the tool axis stays within this cone around tool_axis (yaw about it is free).
    max_step_m / max_step_deg: how far a sent target may lead the measured EE pose, per tick.
    max_joint_step_rad: how far a sent joint target may lead the measured joints, per joint and tick.
    command_timeout_s: no fresh command for this long -> stop the motion and hold until the next one.
    """

    workspace_min: list[float] = field(default_factory=lambda: [0.2, -0.5, 0.01])
    workspace_max: list[float] = field(default_factory=lambda: [0.8, 0.5, 0.6])
    tool_axis: list[float] = field(default_factory=lambda: [0.0, 0.0, -1.0])
    max_tilt_deg: float = in_range(0, 180, 45.0, min_open=True)
    max_step_m: float = positive(0.05)
    max_step_deg: float = positive(15.0)
    max_joint_step_rad: float = positive(0.2)
    command_timeout_s: float = positive(0.5)

    def __post_init__(self) -> None:
        lo, hi = self.workspace_min, self.workspace_max
        for name, corner in (("workspace_min", lo), ("workspace_max", hi)):
            if len(corner) != 3:
                raise ParamError(name, f"must be [x, y, z], got {corner!r}")
        if not all(a < b for a, b in zip(lo, hi)):
            raise ParamError(
                "workspace_max", f"must be above workspace_min on every axis, got min {lo!r} and max {hi!r}"
            )
        if len(self.tool_axis) != 3 or not np.linalg.norm(self.tool_axis) > 0:
            raise ParamError("tool_axis", f"must be a non-zero [x, y, z] direction, got {self.tool_axis}")


# ---- the arm layer ------------------------------------------------------------------------------------


class ArmSafety:
    """Validates, clamps and rate-limits the commands of one arm; the watchdog of its command stream.

    joint_limits: (lo, hi) joint position bounds commands are clamped into. fk: joints -> EE pose, used to
    check joint targets against the box and the cone.
    """

    COUNTS = ("commands", "rejected", "clamped", "step_limited", "timeouts")

    def __init__(
        self,
        params: ArmSafetyParams,
        joint_limits: tuple[np.ndarray, np.ndarray],
        fk: Callable[[np.ndarray], np.ndarray],
        name: str = "arm",
    ):
        self.p = params
        self.name = name
        self.lo, self.hi = np.asarray(params.workspace_min, float), np.asarray(params.workspace_max, float)
        self.axis = np.asarray(params.tool_axis, float) / np.linalg.norm(params.tool_axis)
        self.max_tilt = np.radians(params.max_tilt_deg)
        self.max_rot = np.radians(params.max_step_deg)
        self.q_lo, self.q_hi = (np.asarray(v, float) for v in joint_limits)
        self.fk = fk
        self.counts = dict.fromkeys(self.COUNTS, 0)
        self.rejected_by: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the desired target (the robot was reset, or the node holds): nothing is sent until a fresh
        command arrives."""
        self.mode: str | None = None  # "ee" | "joints": the kind of the desired target
        self.desired: np.ndarray | None = None
        self.last_command_ns: int | None = None

    def report(self) -> dict:
        return {**self.counts, "rejected_by": dict(self.rejected_by)}

    # ---- fresh commands -----------------------------------------------------------------------------
    def _reject(self, reason: str, detail: str) -> None:
        self.counts["rejected"] += 1
        n = self.rejected_by[reason] = self.rejected_by.get(reason, 0) + 1
        if n in (1, 10, 100, 1000, 10000):
            log.warning("[%s] command rejected (%s, %d so far): %s", self.name, reason, n, detail)

    def _valid(self, value, size: int, what: str) -> np.ndarray | None:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self._reject("malformed", f"{what} is not numeric: {value!r}")
            return None
        if arr.shape != (size,):
            self._reject("shape", f"{what} must have shape ({size},), got {arr.shape}")
            return None
        if not np.all(np.isfinite(arr)):
            self._reject("non_finite", f"{what} has NaN or inf: {arr.tolist()}")
            return None
        return arr

    def _in_cone(self, quat: np.ndarray) -> np.ndarray:
        """quat with its tool axis rotated back into the cone (the smallest rotation that does it)."""
        z = quat_z_axis(quat)
        tilt = float(np.arccos(np.clip(z @ self.axis, -1.0, 1.0)))
        if tilt <= self.max_tilt + 1e-9:
            return quat
        k = np.cross(z, self.axis)
        n = np.linalg.norm(k)
        if n < 1e-9:  # pointing exactly away: any axis perpendicular to tool_axis
            k = np.cross(self.axis, [1.0, 0.0, 0.0] if abs(self.axis[0]) < 0.9 else [0.0, 1.0, 0.0])
            n = np.linalg.norm(k)
        q = quat_mul(quat_from_axis_angle(k / n, tilt - self.max_tilt), quat)
        q /= np.linalg.norm(q)
        return -q if q[0] < 0 else q

    def command_ee(self, pose, now_ns: int) -> bool:
        """A fresh EE target `[x, y, z, qw, qx, qy, qz]`; False when rejected (never forwarded)."""
        self.counts["commands"] += 1
        pose = self._valid(pose, 7, "ee_pose")
        if pose is None:
            return False
        qn = np.linalg.norm(pose[3:])
        if qn < 1e-6:
            self._reject("non_finite", f"ee_pose quaternion has zero length: {pose[3:].tolist()}")
            return False
        quat = pose[3:] / qn
        quat = -quat if quat[0] < 0 else quat
        pos = np.clip(pose[:3], self.lo, self.hi)
        cone = self._in_cone(quat)
        if not np.array_equal(pos, pose[:3]) or cone is not quat:
            self.counts["clamped"] += 1
        self.mode, self.desired, self.last_command_ns = "ee", np.concatenate([pos, cone]), now_ns
        return True

    def command_joints(self, q, now_ns: int) -> bool:
        """A fresh joint target (7,); False when rejected (never forwarded)."""
        self.counts["commands"] += 1
        q = self._valid(q, len(self.q_lo), "joint_pos")
        if q is None:
            return False
        clamped = np.clip(q, self.q_lo, self.q_hi)
        reason = self._outside(self.fk(clamped))
        if reason:
            self._reject("workspace", f"joint target {np.round(clamped, 3).tolist()}: {reason}")
            return False
        if not np.array_equal(clamped, q):
            self.counts["clamped"] += 1
        self.mode, self.desired, self.last_command_ns = "joints", clamped, now_ns
        return True

    def _excess(self, pose: np.ndarray) -> tuple[float, float]:
        """How far a pose is outside the box (m) and beyond the cone (rad); zeros inside both."""
        out = float(np.max(np.maximum(self.lo - pose[:3], pose[:3] - self.hi)))
        tilt = float(np.arccos(np.clip(quat_z_axis(pose[3:]) @ self.axis, -1.0, 1.0)))
        return max(0.0, out), max(0.0, tilt - self.max_tilt)

    def _outside(self, pose: np.ndarray) -> str | None:
        if np.any(pose[:3] < self.lo - 1e-9) or np.any(pose[:3] > self.hi + 1e-9):
            return f"EE at {np.round(pose[:3], 3).tolist()} is outside the workspace box"
        tilt = float(np.arccos(np.clip(quat_z_axis(pose[3:]) @ self.axis, -1.0, 1.0)))
        if tilt > self.max_tilt + 1e-6:
            return f"tool tilted {np.degrees(tilt):.0f} deg, above max_tilt_deg {self.p.max_tilt_deg:g}"
        return None

    # ---- every tick ---------------------------------------------------------------------------------
    def tick(self, measured_pose, measured_q, now_ns: int) -> tuple[str, np.ndarray] | None | bool:
        """This tick's command: `(mode, target)` to send, None when there is nothing to send, or False
        when the watchdog fired just now (stop the motion and hold; reported once per timeout)."""
        if self.desired is None:
            return None
        if now_ns - self.last_command_ns > self.p.command_timeout_s * 1e9:
            self.counts["timeouts"] += 1
            log.warning(
                "[%s] no fresh command for %.2f s (command_timeout_s): holding position until the next one",
                self.name,
                (now_ns - self.last_command_ns) / 1e9,
            )
            self.reset()
            return False
        if self.mode == "ee":
            return "ee", self._limit_ee(np.asarray(measured_pose, float))
        return "joints", self._limit_joints(np.asarray(measured_q, float))

    def _limit_ee(self, measured: np.ndarray) -> np.ndarray:
        pose, limited = pose_toward(measured, self.desired, self.p.max_step_m, self.max_rot)
        if not limited:
            return pose
        self.counts["step_limited"] += 1
        # The box and the cone win over the step (they matter when the measured pose is outside them).
        pos, quat = np.clip(pose[:3], self.lo, self.hi), pose[3:]
        return np.concatenate([pos, self._in_cone(-quat if quat[0] < 0 else quat)])

    def _limit_joints(self, measured_q: np.ndarray) -> np.ndarray:
        want = self.desired
        d = d0 = np.clip(want - measured_q, -self.p.max_joint_step_rad, self.p.max_joint_step_rad)
        limited = not np.array_equal(measured_q + d, want)
        # The joint step also bounds the Cartesian one: shrink it until the EE moves no more than max_step.
        here = self.fk(measured_q)
        # Joint motion is not straight in Cartesian space: the arm may be a little outside the box (or the
        # cone) on its way. Then a step is allowed when it goes no farther out than the arm already is.
        box_here, cone_here = self._excess(here)

        def safe(q: np.ndarray) -> bool:
            there = self.fk(q)
            dp = there[:3] - here[:3]
            box, cone = self._excess(there)
            return (
                float(np.sqrt(dp @ dp)) <= self.p.max_step_m
                and rotation_angle(here[3:], there[3:]) <= self.max_rot
                and box <= box_here + 1e-12
                and cone <= cone_here + 1e-9
            )

        for _ in range(12):
            q = np.clip(measured_q + d, self.q_lo, self.q_hi)
            if safe(q):
                break
            d = d * 0.5
            limited = True
        else:
            q = self._joint_by_joint(measured_q, d0, safe)
        if limited:
            self.counts["step_limited"] += 1
        return q

    def _joint_by_joint(self, measured_q: np.ndarray, d: np.ndarray, safe: Callable[[np.ndarray], bool]) -> np.ndarray:
        """A step that moves the joints one at a time, each as far as it safely can, largest error first.

        The straight joint-space step toward the target can leave the box even where the target is inside it:
        from the box's ceiling (z 0.45), homing an arm whose shortest joint path rises first found no safe
        step at all, and the arm stayed there for good (2 of 129 random starts; franky-sim's homing timed out).
        Moving one joint at a time lets the joints that bring the EE back inside go first; with none safe,
        the arm stays where it is."""
        q = np.clip(measured_q, self.q_lo, self.q_hi)
        for j in np.argsort(-np.abs(d)):
            step = d[j]
            for _ in range(6):
                trial = q.copy()
                trial[j] = np.clip(q[j] + step, self.q_lo[j], self.q_hi[j])
                if safe(trial):
                    q = trial
                    break
                step *= 0.5
        return q


# ---- the gripper layer --------------------------------------------------------------------------------


class GripperSafety:
    """Validates normalised gripper width targets (0 closed .. 1 open): NaN, inf or a wrong shape is rejected
    and never forwarded; values outside [0, 1] are clamped and counted."""

    def __init__(self, name: str = "gripper"):
        self.name = name
        self.counts = {"commands": 0, "rejected": 0, "clamped": 0}

    def command(self, width) -> float | None:
        self.counts["commands"] += 1
        try:
            arr = np.asarray(width, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array([np.nan])
        if arr.size != 1 or arr.ndim > 1 or not np.isfinite(arr).all():
            self.counts["rejected"] += 1
            if self.counts["rejected"] in (1, 10, 100, 1000, 10000):
                log.warning("[%s] gripper target rejected (%d so far): %r", self.name, self.counts["rejected"], width)
            return None
        w = float(arr.reshape(()))
        if not 0.0 <= w <= 1.0:
            self.counts["clamped"] += 1
            w = min(1.0, max(0.0, w))
        return w

    def report(self) -> dict:
        return dict(self.counts)


def check_gripper_limits(force: float, speed: float) -> None:
    """Refuse grasp force / finger speed params beyond the Franka Hand's limits (a one-line error)."""
    if not 0 < force <= FRANKA_HAND_MAX_FORCE_N:
        raise ParamError("force", f"must be in (0, {FRANKA_HAND_MAX_FORCE_N:g}] N (Franka Hand), got {force}")
    if not 0 < speed <= FRANKA_HAND_MAX_SPEED_MPS:
        raise ParamError("speed", f"must be in (0, {FRANKA_HAND_MAX_SPEED_MPS:g}] m/s (Franka Hand), got {speed}")


def format_safety(reports: dict[str, dict]) -> str:
    """One line per node whose report has a `safety` section, for the exit table."""
    lines = []
    for node, rep in reports.items():
        s = rep.get("safety") if isinstance(rep, dict) else None
        if s:
            keys = [k for k in ("commands", "rejected", "clamped", "step_limited", "timeouts") if k in s]
            lines.append(f"safety {node}: " + ", ".join(f"{k} {s[k]}" for k in keys))
    return "\n".join(lines)
