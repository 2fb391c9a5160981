"""Franka arm and gripper nodes over franky (`pip install franky-control`).

The 1 kHz control loop stays inside franky's C++ (libfranka + Ruckig or franky's impedance controller).
These nodes only hand it a new target when one arrives (at the graph's rate, 30-100 Hz) and publish the
robot state, so Python jitter never reaches the real-time loop: a late tick delays a target update, it
never starves the controller.

Conventions (docs/contracts.md): EE pose `[x, y, z, qw, qx, qy, qz]` in the robot base frame; franky's
`Affine` takes and returns quaternions as `[x, y, z, w]`, converted in `quat_wxyz_from_xyzw` /
`quat_xyzw_from_wxyz` only. Gripper width is normalised 0 (closed) .. 1 (open, `gripper.max_width`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from robotflow.drivers.base import ArmNode, GripperNode
from robotflow.geometry import panda_fk
from robotflow.runtime.node import StopGraph
from robotflow.runtime.params import ParamError, in_range, non_negative, positive
from robotflow.safety import ArmSafetyParams, check_gripper_limits

log = logging.getLogger("robotflow")

# Franka's "ready" pose (rad): elbow up, flange pointing down.
READY_JOINTS = [0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4]

# Joint position limits (rad) from Franka's datasheets; targets are clamped a little inside them.
JOINT_LIMITS = {
    "panda": (
        np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
        np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
    ),
    "fr3": (
        np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]),
        np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159]),
    ),
}
JOINT_LIMIT_MARGIN = 0.05  # rad kept away from each limit


def import_franky():
    """franky, imported on first use so graphs without a Franka never need it."""
    try:
        import franky
    except ImportError as e:
        raise RuntimeError(
            f"the Franka nodes need franky: pip install franky-control (matching your robot's libfranka version) [{e}]"
        ) from None
    return franky


@contextlib.contextmanager
def keep_thread_scheduling():
    """Undo what libfranka does to the calling thread's scheduling.

    Constructing a `franky.Robot` (even with `RealtimeConfig.Ignore`) or running a blocking motion raises
    the calling thread to SCHED_FIFO 99 where the process may (root, CAP_SYS_NICE) and leaves it there. The
    1 kHz loop runs in franky's own thread and keeps its priority; the caller here is a node's Python thread
    (or a test's main thread): left at 99 it outranks every other thread on the machine, and every thread and
    process it starts inherits that (a browser started by a later test span both cores at RT 99). The node's
    own `priority:` is applied by the scheduler after setup.
    """
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # not Linux
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, param)


@contextlib.contextmanager
def starting_threads_at(priority: int):
    """Threads started inside this block start at SCHED_FIFO `priority` (they inherit the caller's scheduling),
    where the process may (root, CAP_SYS_NICE); the caller's own scheduling is restored after. 0: no change.

    franky runs each control loop (1 kHz) in a thread it starts when a motion begins. With a PREEMPT_RT kernel
    (`realtime_kernel: true`) libfranka raises that thread itself; with `RealtimeConfig.Ignore` it stays at
    normal priority (measured: SCHED_OTHER), and on a loaded machine it misses cycles.
    """
    if priority <= 0:
        yield
        return
    with keep_thread_scheduling():
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        yield


# ---- quaternion convention: the one place franky's [x, y, z, w] meets our [w, x, y, z] -------------


def quat_wxyz_from_xyzw(q_xyzw) -> np.ndarray:
    """franky/Eigen `[x, y, z, w]` -> robotflow `[w, x, y, z]`, unit length, sign with w >= 0."""
    q = np.asarray(q_xyzw, dtype=np.float64).reshape(4)
    out = np.array([q[3], q[0], q[1], q[2]])
    n = np.linalg.norm(out)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    out /= n
    return -out if out[0] < 0 else out


def quat_xyzw_from_wxyz(q_wxyz) -> np.ndarray:
    """robotflow `[w, x, y, z]` -> franky/Eigen `[x, y, z, w]`, unit length, sign with w >= 0."""
    q = np.asarray(q_wxyz, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    q = q / n
    if q[0] < 0:
        q = -q
    return np.array([q[1], q[2], q[3], q[0]])


def connect(open_connection: Callable[[], Any], timeout_s: float) -> Any:
    """`open_connection()`, retried for up to `timeout_s` while it fails (a robot, or the Franka twin's
    process group, still starting up); the last failure raises."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return open_connection()
        except Exception:  # noqa: BLE001 - franky's connection errors have several types
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def pose_from_affine(affine) -> np.ndarray:
    """franky `Affine` -> EE pose `[x, y, z, qw, qx, qy, qz]` (a fresh array)."""
    return np.concatenate(
        [np.asarray(affine.translation, dtype=np.float64).reshape(3), quat_wxyz_from_xyzw(affine.quaternion)]
    )


def affine_from_pose(franky, pose) -> Any:
    """EE pose `[x, y, z, qw, qx, qy, qz]` -> franky `Affine`."""
    pose = np.asarray(pose, dtype=np.float64).reshape(7)
    return franky.Affine(pose[:3].copy(), quat_xyzw_from_wxyz(pose[3:]))


# ---- arm --------------------------------------------------------------------------------------------


@dataclass
class FrankaArmParams(ArmSafetyParams):
    """The arm's params; the safety limits (workspace box, tilt cone, step per tick, command watchdog) come
    from ArmSafetyParams (robotflow/safety.py)."""

    host: str  # FCI address of the robot (Desk > Settings > Network)
    # Scales franky's velocity, acceleration and jerk limits, (0, 1]: one value or [velocity, accel, jerk].
    dynamics_factor: float | list[float] = in_range(0, 1, 0.1, min_open=True)
    # cartesian: franky's time-optimal (Ruckig) pose motions, each new target replaces the running one.
    # impedance: franky's Cartesian impedance tracking controller, compliant on contact.
    control: Literal["cartesian", "impedance"] = "cartesian"
    translational_stiffness: float = positive(500.0)  # impedance only (N/m)
    rotational_stiffness: float = positive(50.0)  # impedance only (Nm/rad)
    robot_model: Literal["panda", "fr3"] = "panda"  # selects the joint limits joint targets are clamped to
    home_joints: list[float] = field(default_factory=lambda: list(READY_JOINTS))
    home_on_start: bool = False  # move to home_joints (blocking) before the graph starts
    recover_on_start: bool = True  # clear a previous reflex (robot.recover_from_errors)
    # After a fault during the run (a reflex or limit violation, or a motion franky could not plan): False stops
    # the graph (read the error first); True clears it with robot.recover_from_errors(), holds, and goes on with
    # the next fresh command. Either way the state of that tick carries the fault (the recorder ends the episode
    # there). A lost connection always stops the graph.
    auto_recover: bool = False
    torque_threshold: float = positive(20.0)  # collision reflex threshold, all joints (Nm)
    force_threshold: float = positive(30.0)  # collision reflex threshold, Cartesian (N)
    stop_timeout_s: float = positive(3.0)  # a stop waits this long for the arm to come to rest
    realtime_kernel: bool = True  # False: let franky run without a PREEMPT_RT kernel
    # SCHED_FIFO priority of franky's 1 kHz control thread where the process may (0: leave it to libfranka). A
    # starved loop misses cycles; each streamed target then starts a new plan from a commanded state that jumped,
    # and franky aborts the motion ("Motion planner failed with error code -101/-110/-111"). Measured against
    # franky-sim with `realtime_kernel: false` at a load of 12-16 (benchmarks.franka): 2 of 3 runs aborted at
    # normal priority, 0 of 3 at SCHED_FIFO 80 (docs/hardware.md, "What is verified").
    control_thread_priority: int = in_range(0, 99, 80)
    connect_timeout_s: float = non_negative(
        0.0
    )  # keep retrying the connection this long (the twin starts with the graph)

    def __post_init__(self) -> None:
        super().__post_init__()
        df = self.dynamics_factor if isinstance(self.dynamics_factor, list) else [self.dynamics_factor]
        if len(df) not in (1, 3):
            raise ParamError(
                "dynamics_factor", f"must be one value or [velocity, accel, jerk]; got {self.dynamics_factor!r}"
            )
        if len(self.home_joints) != 7:
            raise ParamError("home_joints", f"needs 7 values, got {len(self.home_joints)}")


class FrankaArmNode(ArmNode):
    """A Franka Panda/FR3 arm through franky: absolute EE or joint targets in, robot state out.

    Every target passes the safety layer (robotflow/safety.py): malformed ones are rejected, the rest are
    clamped to the workspace box, the tilt cone and the joint limits, and each tick the target sent leads
    the measured pose by at most one step; without a fresh command for `command_timeout_s` the arm stops
    and holds. Targets go to franky as asynchronous motions that replace each other; an unchanged target is
    not re-sent. When the graph stops, `stop_hardware` stops the arm first (robot.stop(), before any other
    node's teardown); a stop that fails fails the run. Ports and command precedence: `ArmNode`
    (robotflow/drivers/base.py).

    Faults: any franky error (a reflex or limit violation raised by the running motion, a lost connection)
    puts the arm in mode "fault": no command is sent from then on, and the state of that tick carries the
    error (`fault`), so a recorder with `stop_on_fault` ends its episode with the outcome "fault". Then the
    node stops the graph with one line that names the robot and the fix, unless `auto_recover` clears the
    error (robot.recover_from_errors()) and the arm holds until the next fresh command. A lost connection
    shows as libfranka's UDP timeout (1 s) during a motion, or as a state read that fails; the robot stops
    itself when its controller hears nothing, so the node sends no stop and sends the last measured state
    with the fault.
    """

    Params = FrankaArmParams

    def setup(self) -> None:
        p = self.params
        self.franky = franky = import_franky()
        self.robot = None
        self._mode: str | None = None  # running motion: "ee" (cartesian), "impedance", "joints"
        self._motion = None  # the impedance tracking motion, updated in place
        self._target: np.ndarray | None = None
        self.counts = {"targets": 0, "unchanged": 0, "mode_switches": 0, "holds": 0, "faults": 0, "recoveries": 0}
        self._lost = False  # the connection to the robot is gone: no call reaches it any more
        self._measured: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # last (q, dq, pose)
        # step() applies commands under this lock; stop_hardware() takes it to make sure none follows a stop.
        self._hw_lock = threading.Lock()
        self._halted = False
        if p.control == "impedance" and not hasattr(franky, "CartesianImpedanceTrackingMotion"):
            raise RuntimeError(
                "control: impedance needs franky-control >= 2.0 (CartesianImpedanceTrackingMotion); "
                "upgrade franky or use control: cartesian"
            )
        lo, hi = JOINT_LIMITS[p.robot_model]
        self._q_lo, self._q_hi = lo + JOINT_LIMIT_MARGIN, hi - JOINT_LIMIT_MARGIN
        self.init_safety((self._q_lo, self._q_hi), panda_fk)
        with keep_thread_scheduling():
            self._connect_and_home()

    def _connect_and_home(self) -> None:
        p, franky = self.params, self.franky
        try:
            if p.realtime_kernel:
                self.robot = connect(lambda: franky.Robot(p.host), p.connect_timeout_s)
            else:
                rt = franky.RealtimeConfig.Ignore
                self.robot = connect(lambda: franky.Robot(p.host, realtime_config=rt), p.connect_timeout_s)
        except Exception as e:  # noqa: BLE001 - any connection failure gets the same advice
            raise RuntimeError(
                f"cannot connect to the Franka at {p.host!r}: {type(e).__name__}: {e}; check the "
                f"network, that FCI is activated in Desk and the joints are unlocked"
            ) from None
        robot = self.robot
        if p.recover_on_start:
            robot.recover_from_errors()
        df = p.dynamics_factor if isinstance(p.dynamics_factor, list) else [p.dynamics_factor] * 3
        robot.relative_dynamics_factor = franky.RelativeDynamicsFactor(*[float(v) for v in df])
        robot.set_collision_behavior(p.torque_threshold, p.force_threshold)
        if p.home_on_start:
            home = np.clip(np.asarray(p.home_joints, float), self._q_lo, self._q_hi)
            self.log("moving to home joints %s", np.round(home, 3).tolist())
            try:
                robot.move(franky.JointMotion(home, franky.ReferenceType.Absolute), asynchronous=False)
            except Exception:
                if self._halted:  # Ctrl-C / SIGTERM / a failure elsewhere: stop_hardware preempted the homing
                    raise StopGraph("homing aborted") from None
                raise

    # ---- targets --------------------------------------------------------------------------------
    def apply_ee(self, target: np.ndarray) -> None:
        franky = self.franky
        mode = "impedance" if self.params.control == "impedance" else "ee"
        if self._mode == mode and self._target is not None and np.max(np.abs(target - self._target)) <= 1e-6:
            self.counts["unchanged"] += 1
            return
        affine = affine_from_pose(franky, target)
        if self._mode != mode:
            self._switch_from()
            if self._halted:  # stop_hardware ran while the old motion was being stopped: nothing more
                return
        if mode == "impedance":
            if self._motion is None:  # first target, or after a hold replaced the tracking motion
                p = self.params
                self._motion = franky.CartesianImpedanceTrackingMotion(
                    translational_stiffness=p.translational_stiffness, rotational_stiffness=p.rotational_stiffness
                )
                self._motion.set_reference(franky.CartesianReference(target=affine))
                self._move(self._motion)
            else:
                self._motion.set_reference(franky.CartesianReference(target=affine))
        else:
            # return_when_finished=False: hold the target until the next one replaces this motion.
            motion = franky.CartesianMotion(affine, franky.ReferenceType.Absolute, return_when_finished=False)
            self._move(motion)
        self._mode = mode
        self._target = target
        self.counts["targets"] += 1

    def apply_joints(self, target: np.ndarray) -> None:
        franky = self.franky
        if self._mode == "joints" and self._target is not None and np.max(np.abs(target - self._target)) <= 1e-6:
            self.counts["unchanged"] += 1
            return
        if self._mode != "joints":
            self._switch_from()
            if self._halted:
                return
        motion = franky.JointMotion(target, franky.ReferenceType.Absolute, return_when_finished=False)
        self._move(motion)
        self._mode = "joints"
        self._target = target
        self.counts["targets"] += 1

    def _move(self, motion) -> None:
        """Start or replace the running motion (asynchronous); a control loop franky starts for it runs at
        `control_thread_priority`."""
        with starting_threads_at(self.params.control_thread_priority):
            self.robot.move(motion, asynchronous=True)

    def _switch_from(self) -> None:
        if self._mode is not None:
            self.counts["mode_switches"] += 1
            self.log("switching control from %s targets: stopping the running motion first", self._mode)
            self._stop_motion()

    def _stop_kind(self, mode: str):
        franky = self.franky
        return {
            "ee": franky.CartesianStopMotion,
            "joints": franky.JointStopMotion,
            "impedance": franky.TorqueStopMotion,
        }[mode]

    def hold(self) -> None:
        """The watchdog fired: bring the running motion to rest (not waiting for it) and hold there. The
        next fresh command replaces the stop motion (same control signal type) or switches mode."""
        self.counts["holds"] += 1
        if self._mode is not None and self.robot.is_in_control:
            self.robot.move(self._stop_kind(self._mode)(), asynchronous=True)
        self._motion, self._target = None, None

    def _stop_motion(self) -> None:
        """Bring a running motion to rest with the stop motion of its control signal type, then join it.

        franky cannot change the control signal type (pose, joints, torque) of a running motion, so a
        switch between EE and joint targets passes through here, as does teardown.
        """
        robot = self.robot
        mode, self._mode, self._motion, self._target = self._mode, None, None, None
        if mode is None or robot is None:
            return
        if robot.is_in_control:
            robot.move(self._stop_kind(mode)(), asynchronous=True)
        if not robot.join_motion(self.params.stop_timeout_s):
            log.warning(
                "[%s] arm did not stop within %.1f s: preempting with robot.stop()",
                self.name,
                self.params.stop_timeout_s,
            )
            robot.stop()
            try:
                robot.join_motion(1.0)
            except Exception as e:  # noqa: BLE001 - the preemption itself surfaces as a ControlException
                log.warning("[%s] after robot.stop(): %s: %s", self.name, type(e).__name__, e)

    # ---- faults ---------------------------------------------------------------------------------
    def _is_lost(self, error: Exception) -> bool:
        """Whether an error means the connection is gone (not a reflex the robot can recover from)."""
        return isinstance(error, self.franky.NetworkException)

    def _fault_message(self, error: Exception) -> str:
        """The one line the graph stops with: what happened to which robot, and what to do."""
        what = " ".join(f"{type(error).__name__}: {error}".split())
        host = self.params.host
        if self._lost:
            return (
                f"lost the connection to the Franka at {host} ({what}); the robot stops by itself when its "
                f"controller hears nothing. Check the network cable and that FCI is active in Desk, then restart "
                f"the graph"
            )
        if isinstance(error, self.franky.ControlException):
            return (
                f"the Franka at {host} faulted ({what}); the arm is held. Check for obstacles, then restart the "
                f"graph (recover_on_start clears the error), or set auto_recover: true to clear reflexes and go on"
            )
        # franky's own failures (its motion planner, a rejected command): the motion ended, the robot has no reflex.
        return (
            f"the Franka at {host} stopped: franky's motion failed ({what}); the arm is held. Restart the graph, "
            f"or set auto_recover: true to go on with the next target"
        )

    def _recover(self) -> bool:
        """auto_recover: clear a reflex with robot.recover_from_errors(); the arm then holds. False when the
        robot cannot recover (the error stays, or the call itself fails)."""
        try:
            ok = bool(self.robot.recover_from_errors()) and not self.robot.has_errors
        except Exception as e:  # noqa: BLE001 - a failed recovery stops the graph with the fault
            log.warning("[%s] recover_from_errors(): %s: %s", self.name, type(e).__name__, e)
            self._lost = self._lost or self._is_lost(e)
            return False
        if ok:
            self.counts["recoveries"] += 1
            log.warning("[%s] %s; auto_recover: recovered, holding until a fresh command", self.name, self.arm_fault)
            self._mode, self._motion, self._target = None, None, None
            self.clear_fault()
        return ok

    def _motion_error(self) -> Exception | None:
        """What the last motion ended with, if anything (franky keeps it for poll_motion)."""
        try:
            self.robot.poll_motion()
        except Exception as e:  # noqa: BLE001
            return e
        return None

    def _read_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        js = self.robot.current_joint_state
        cs = self.robot.current_cartesian_state
        q = np.array(js.position, dtype=np.float64).reshape(7)
        dq = np.array(js.velocity, dtype=np.float64).reshape(7)
        return q, dq, pose_from_affine(cs.pose.end_effector_pose)

    # ---- tick -----------------------------------------------------------------------------------
    def step(self) -> None:
        robot = self.robot
        if self._halted:  # stop_hardware ran: what the stopped motion reports now is the stop itself
            return
        error: Exception | None = None
        try:
            robot.poll_motion()  # re-raises what the running async motion hit (reflex, limits, network)
        except Exception as e:  # noqa: BLE001 - every franky error is a fault of the arm
            error = e
        self._lost = error is not None and self._is_lost(error)
        if not self._lost:
            try:
                self._measured = self._read_state()
            except Exception as e:  # noqa: BLE001 - franky 2.0: RuntimeError("Net Exception") after libfranka's 1 s timeout
                # The motion may have ended meanwhile with the more telling error (libfranka's UDP timeout).
                error, self._lost = error or self._motion_error() or e, True
        if self._measured is None:  # lost before the first state: nothing measured to publish
            raise RuntimeError(self._fault_message(error))
        q, dq, pose = self._measured
        if error is None:
            now = self.now_ns()
            self.take_command(now)
            with self._hw_lock:
                if not self._halted:
                    try:
                        self.apply_safety_tick(pose, q, now)
                    except Exception as e:  # noqa: BLE001 - a motion the robot refuses (it has errors, or is gone)
                        error = e
                        self._lost = self._is_lost(e)
        if error is not None:
            if self._halted:
                return
            self.counts["faults"] += 1
            self.enter_fault(f"{type(error).__name__}: {error}")
        # The state of a faulted tick carries the fault: the recorder ends its episode on it, before any stop.
        self.emit_state(q, dq, pose, mode=self.arm_mode, fault=self.arm_fault)
        self.emit_command("ee" if self._mode == "impedance" else self._mode, self._target)
        if error is None:
            return
        if not (self.params.auto_recover and not self._lost and self._recover()):
            raise RuntimeError(self._fault_message(error))

    def stop_hardware(self) -> None:
        """Stop the arm now (robot.stop(): it decelerates to rest and the running motion ends), from the
        scheduler's thread, before any other teardown; no command follows. Raises when it does not stop."""
        lock = getattr(self, "_hw_lock", None)
        if lock is None:
            return
        locked = lock.acquire(timeout=0.05)  # a step() stuck in franky must not delay the stop
        self._halted = True
        if locked:
            lock.release()
        robot = self.robot
        if robot is None:
            return
        if self._lost:  # no call reaches the robot; its controller stopped the arm when the commands stopped
            log.warning("[%s] connection lost: no robot.stop() possible; the robot stops by itself", self.name)
            return
        try:
            robot.stop()
            # The preempted motion reports "Move command preempted" from poll_motion or join_motion, whichever
            # comes first (real franky does both; the fake never did): that is the stop itself, not a fault.
            try:
                robot.poll_motion()
                stopped = not robot.is_in_control or robot.join_motion(self.params.stop_timeout_s)
            except self.franky.ControlException:
                stopped = not robot.is_in_control or robot.join_motion(self.params.stop_timeout_s)
            if not stopped:
                raise RuntimeError(f"still in control {self.params.stop_timeout_s:g} s after robot.stop()")
        except Exception as e:
            raise RuntimeError(
                f"could not stop the Franka at {self.params.host}: {type(e).__name__}: {e}; use the external "
                f"activation device (the stop button)"
            ) from e
        self._mode, self._motion, self._target = None, None, None

    def teardown(self) -> None:
        if getattr(self, "robot", None) is None:
            return
        if self._lost:
            self.robot = None
            return
        try:
            self._stop_motion()
        except Exception as e:  # noqa: BLE001 - a faulted motion re-raises here; make sure nothing runs on
            log.warning("[%s] stopping the arm: %s: %s", self.name, type(e).__name__, e)
            try:
                if self.robot.is_in_control:
                    self.robot.stop()
            except Exception as e2:  # noqa: BLE001
                log.warning("[%s] robot.stop(): %s: %s", self.name, type(e2).__name__, e2)
        # Disconnect: libfranka serves one controlling client, so the connection must not outlive the graph
        # (a process that runs a second graph, or a Desk session, would otherwise wait for it).
        self.robot = None

    def report(self) -> dict | None:
        if not hasattr(self, "counts"):
            return None
        return {**self.counts, "safety": self.safety.report()}


# ---- gripper ----------------------------------------------------------------------------------------


@dataclass
class FrankaGripperParams:
    host: str  # FCI address of the robot the gripper is attached to
    speed: float = positive(0.1)  # finger speed (m/s)
    force: float = positive(20.0)  # grasp force (N)
    # binary: a target below close_below grasps (with `force`, whatever the object's size), one above
    # open_above opens; the band between is hysteresis, so a noisy policy output does not chatter.
    # continuous: move to target * max_width, re-issued only when the target moves more than deadband.
    binary: bool = True
    close_below: float = in_range(0, 1, 0.4)
    open_above: float = in_range(0, 1, 0.6)
    deadband: float = non_negative(0.05)
    homing_on_start: bool = False  # home the fingers first (needed after changing fingers)
    max_width_m: float = positive(0.08)  # used when the gripper reports max_width 0 (never homed)
    connect_timeout_s: float = non_negative(
        0.0
    )  # keep retrying the connection this long (the twin starts with the graph)

    def __post_init__(self) -> None:
        if not self.close_below <= self.open_above:
            raise ParamError("open_above", f"must be >= close_below ({self.close_below}), got {self.open_above}")
        check_gripper_limits(self.force, self.speed)


class FrankaGripperNode(GripperNode):
    """The Franka Hand through franky: normalised width target (0 closed .. 1 open) in, width out.

    libfranka runs one gripper command at a time and a `move` cannot be interrupted, so commands are
    issued only when the decision changes (hysteresis), and a newer decision waits for the running
    command to finish instead of queueing behind it. Ports and safety: `GripperNode`
    (robotflow/drivers/base.py).
    """

    Params = FrankaGripperParams

    def setup(self) -> None:
        p = self.params
        franky = import_franky()
        self.gripper = None
        self._future = None
        self._pending: tuple[str, float] | None = None  # decided, not yet issued
        self._issued: tuple[str, float] | None = None  # last command sent
        self._closed: bool | None = None
        self.counts = {"commands": 0, "targets": 0, "failed": 0}
        self.init_safety()
        self._halted = False  # set by stop_hardware: no new command is issued
        try:
            with keep_thread_scheduling():
                self.gripper = connect(lambda: franky.Gripper(p.host), p.connect_timeout_s)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(
                f"cannot connect to the Franka Hand at {p.host!r}: {type(e).__name__}: {e}; check "
                f"the network and that the hand is enabled in Desk"
            ) from None
        if p.homing_on_start:
            self.log("homing the gripper")
            with keep_thread_scheduling():
                self.gripper.homing()
        self.max_width = float(self.gripper.max_width)
        if self.max_width <= 0:
            self.log("gripper reports max_width 0 (not homed): normalising with %.3f m", p.max_width_m)
            self.max_width = p.max_width_m

    def _decide(self, target: float) -> tuple[str, float] | None:
        p = self.params
        target = float(np.clip(target, 0.0, 1.0))
        if p.binary:
            if target < p.close_below and self._closed is not True:
                self._closed = True
                return ("grasp", 0.0)
            if target > p.open_above and self._closed is not False:
                self._closed = False
                return ("open", 1.0)
            if self._closed is None:  # first target inside the band: take the nearer side
                self._closed = target < 0.5
                return ("grasp", 0.0) if self._closed else ("open", 1.0)
            return None
        last = self._pending or self._issued
        if last is None or abs(target - last[1]) > p.deadband:
            return ("move", target)
        return None

    def _issue(self, cmd: tuple[str, float]) -> None:
        kind, width = cmd
        g, p = self.gripper, self.params
        if kind == "grasp":
            # width 0 with an outer tolerance of the full stroke: holds any object with `force`.
            self._future = g.grasp_async(0.0, p.speed, p.force, epsilon_inner=0.005, epsilon_outer=self.max_width)
        elif kind == "open":
            self._future = g.open_async(p.speed)
        else:
            self._future = g.move_async(width * self.max_width, p.speed)
        self._issued = cmd
        self.counts["commands"] += 1

    def _check_future(self) -> bool:
        """True when no command is running; re-raises a command's exception."""
        if self._future is None:
            return True
        if not self._future.wait(0.0):
            return False
        fut, self._future = self._future, None
        ok = fut.get()
        if not ok and self._issued and self._issued[0] != "grasp":
            self.counts["failed"] += 1
            self.log("gripper command %s did not succeed", self._issued)
        return True

    def step(self) -> None:
        try:
            idle = self._check_future()
            width = self.take_target()
            if width is not None:
                self.counts["targets"] += 1
                cmd = self._decide(width)
                if cmd is not None:
                    self._pending = cmd
            if self._pending is not None and idle and not self._halted:
                if self._pending != self._issued:
                    self._issue(self._pending)
                self._pending = None
            width = float(self.gripper.width)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"Franka Hand at {self.params.host}: {type(e).__name__}: {e}") from e
        self.emit_state(float(np.clip(width / self.max_width, 0.0, 1.0)))
        if self._issued is not None:
            self.emit_command(float(self._issued[1]))

    def stop_hardware(self) -> None:
        """No new gripper command from now on. A running one is left to finish: stopping the hand would
        release a grasp and drop what the arm holds."""
        self._halted = True

    def teardown(self) -> None:
        # A running command is allowed to finish (bounded); the hand is not opened or stopped, because
        # stop() releases a grasp and would drop what the arm is holding.
        fut = getattr(self, "_future", None)
        if fut is not None:
            try:
                if not fut.wait(2.0):
                    log.warning("[%s] gripper command still running at shutdown", self.name)
            except Exception as e:  # noqa: BLE001
                log.warning("[%s] gripper: %s: %s", self.name, type(e).__name__, e)
        self.gripper = None  # disconnect, as the arm does

    def report(self) -> dict | None:
        return {**self.counts, "safety": self.safety.report()} if hasattr(self, "counts") else None
