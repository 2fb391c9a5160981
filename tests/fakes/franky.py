"""A fake `franky` (franky-control 2.0) for tests without a robot.

It defines only what robotflow.drivers.franka uses, under the real names and with the real parameter
names (tests/test_drivers_fakes.py checks every public name here against the installed franky).
Motions take time: the measured state moves toward the running target at Franka's velocity limits scaled
by the dynamics factor, `join_motion` waits, stop motions and `stop()` decelerate before the arm rests.
Test hooks start with `_`.
"""

from __future__ import annotations

import builtins
import os
import threading
import time

import numpy as np

# ---- exceptions (same hierarchy as franky._franky) -------------------------------------------------


class Exception(builtins.Exception):  # noqa: A001 - franky's own base class has this name
    """Base class for all exceptions used by libfranka."""


class ControlException(Exception):
    """Raised for errors during motion generation or control (reflexes, limit violations)."""


class NetworkException(Exception):
    """Raised when the connection cannot be established or times out."""


class CommandException(Exception):
    """Raised when a command fails."""


class InvalidMotionTypeException(builtins.Exception):
    """Raised when a motion's control signal type differs from the running one."""


# ---- value types ------------------------------------------------------------------------------------


class ReferenceType:
    def __init__(self, value):
        self._value = int(value)

    def __repr__(self):
        return f"ReferenceType.{'Absolute' if self._value == 0 else 'Relative'}"


ReferenceType.Absolute = ReferenceType(0)
ReferenceType.Relative = ReferenceType(1)


class RealtimeConfig:
    def __init__(self, value):
        self._value = int(value)


RealtimeConfig.Enforce = RealtimeConfig(0)
RealtimeConfig.Ignore = RealtimeConfig(1)


class RobotMode:
    """The robot's mode, as franky's enum (the values are libfranka's)."""

    def __init__(self, value):
        self._value = int(value)

    def __eq__(self, other):
        return isinstance(other, RobotMode) and other._value == self._value

    def __hash__(self):
        return self._value

    def __repr__(self):
        return f"RobotMode.{_ROBOT_MODES[self._value]}"


_ROBOT_MODES = ("Other", "Idle", "Move", "Guiding", "Reflex", "UserStopped", "AutomaticErrorRecovery")
for _i, _n in enumerate(_ROBOT_MODES):
    setattr(RobotMode, _n, RobotMode(_i))


class Errors:
    """The robot's error flags (franky's Errors: one bool property per libfranka error). The fake sets the
    ones its test hooks raise; repr lists the true ones as libfranka prints them: `["cartesian_reflex"]`."""

    _NAMES = ("cartesian_reflex", "joint_reflex", "communication_constraints_violation")

    def __init__(self):
        self._true: set[str] = set()

    def __repr__(self):
        return "[" + ", ".join(f'"{n}"' for n in self._NAMES if n in self._true) + "]"

    @property
    def cartesian_reflex(self):
        return "cartesian_reflex" in self._true

    @property
    def joint_reflex(self):
        return "joint_reflex" in self._true

    @property
    def communication_constraints_violation(self):
        return "communication_constraints_violation" in self._true


def _errors(*names):
    e = Errors()
    e._true = set(names)
    return e


class RobotState:
    """What `Robot.state` returns (the fields robotflow reads or a test checks)."""

    def __init__(self, q, dq, O_T_EE, robot_mode, current_errors, last_motion_errors):  # noqa: N803 - franky's name
        self._q, self._dq, self._O_T_EE = q, dq, O_T_EE
        self._robot_mode, self._current, self._last = robot_mode, current_errors, last_motion_errors

    @property
    def q(self):
        return self._q.copy()

    @property
    def dq(self):
        return self._dq.copy()

    @property
    def O_T_EE(self):  # noqa: N802 - franky's name
        return self._O_T_EE

    @property
    def robot_mode(self):
        return self._robot_mode

    @property
    def current_errors(self):
        return self._current

    @property
    def last_motion_errors(self):
        return self._last


class RelativeDynamicsFactor:
    def __init__(self, velocity, acceleration, jerk):
        for v in (velocity, acceleration, jerk):
            if not 0.0 < float(v) <= 1.0:
                raise ValueError("relative dynamics factors must be in (0, 1]")
        self._v, self._a, self._j = float(velocity), float(acceleration), float(jerk)

    @property
    def velocity(self):
        return self._v

    @property
    def acceleration(self):
        return self._a

    @property
    def jerk(self):
        return self._j


class Affine:
    """Translation [m] and rotation quaternion in [x, y, z, w] order, as franky's Affine."""

    def __init__(self, translation=None, quaternion=None):
        self._t = np.zeros(3) if translation is None else np.asarray(translation, float).reshape(3).copy()
        q = np.array([0.0, 0.0, 0.0, 1.0]) if quaternion is None else np.asarray(quaternion, float).reshape(4)
        self._q = q / np.linalg.norm(q)

    @property
    def translation(self):
        return self._t.copy()

    @property
    def quaternion(self):
        return self._q.copy()

    @property
    def matrix(self):
        x, y, z, w = self._q
        m = np.eye(4)
        m[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
        m[:3, 3] = self._t
        return m


class RobotPose:
    def __init__(self, end_effector_pose, elbow_state=None):
        self._ee = end_effector_pose

    @property
    def end_effector_pose(self):
        return self._ee


class CartesianState:
    def __init__(self, pose):
        self._pose = pose if isinstance(pose, RobotPose) else RobotPose(pose)

    @property
    def pose(self):
        return self._pose


class JointState:
    def __init__(self, position, velocity):
        self._p = np.asarray(position, float).reshape(7).copy()
        self._v = np.asarray(velocity, float).reshape(7).copy()

    @property
    def position(self):
        return self._p.copy()

    @property
    def velocity(self):
        return self._v.copy()


class CartesianReference:
    def __init__(self, target=None, target_twist=None, target_acceleration=None):
        self._target = Affine() if target is None else target

    @property
    def target(self):
        return self._target


# ---- motions ----------------------------------------------------------------------------------------


class _TargetMotion:
    """What franky's target motions have in common: target, reference type, whether move() waits."""

    @property
    def target(self):
        return self._target

    @property
    def reference_type(self):
        return self._reference_type

    @property
    def return_when_finished(self):
        return self._return


class CartesianMotion(_TargetMotion):
    _signal = "pose"

    def __init__(
        self,
        target,
        reference_type=ReferenceType.Absolute,
        relative_dynamics_factor=1.0,
        return_when_finished=True,
        ee_frame=None,
    ):
        self._target = target if isinstance(target, CartesianState) else CartesianState(target)
        self._reference_type = reference_type
        self._return = bool(return_when_finished)


class JointMotion(_TargetMotion):
    _signal = "joints"

    def __init__(
        self, target, reference_type=ReferenceType.Absolute, relative_dynamics_factor=1.0, return_when_finished=True
    ):
        self._target = target if isinstance(target, JointState) else JointState(target, np.zeros(7))
        self._reference_type = reference_type
        self._return = bool(return_when_finished)


class CartesianImpedanceTrackingMotion:
    _signal = "torque"

    def __init__(self, translational_stiffness=500, rotational_stiffness=50):
        self._stiffness = (float(translational_stiffness), float(rotational_stiffness))
        self._reference = None

    def set_reference(self, reference):
        self._reference = reference

    def get_reference(self):
        return self._reference


class CartesianStopMotion:
    _signal = "pose"

    def __init__(self, relative_dynamics_factor=1.0):
        pass


class JointStopMotion:
    _signal = "joints"

    def __init__(self, relative_dynamics_factor=1.0):
        pass


class TorqueStopMotion:
    _signal = "torque"

    def __init__(self, damping=None):
        pass


_STOP_MOTIONS = (CartesianStopMotion, JointStopMotion, TorqueStopMotion)
READY = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])


# ---- robot ------------------------------------------------------------------------------------------


def _slerp_xyzw(a, b, max_angle):
    """From quaternion a toward b by at most max_angle (rad); returns (quaternion, whether b was reached)."""
    dot = float(np.dot(a, b))
    if dot < 0:
        b, dot = -b, -dot
    angle = 2.0 * np.arccos(min(1.0, dot))
    if angle <= max_angle or angle < 1e-12:
        return b.copy(), True
    s, theta = max_angle / angle, angle / 2
    q = (np.sin((1 - s) * theta) * a + np.sin(s * theta) * b) / np.sin(theta)
    return q / np.linalg.norm(q), False


class Robot:
    """A robot whose motions take time: the measured state moves toward the running motion's target at
    Franka's velocity limits scaled by `relative_dynamics_factor`; stop motions and `stop()` decelerate at
    its acceleration limits (also scaled) before the arm is at rest. The clock is `time.monotonic()`, so a
    test measures how long anything took on the fake's own time base. Thread-safe like libfranka's Robot:
    `stop()` may come from another thread and preempts a blocking `move`."""

    _instances: list = []
    _refuse_connection = False  # test hook: the constructor raises NetworkException
    _reflex_after_moves: int | None = None  # test hook: the motion of this move (1-based) faults at once
    _recover_fails = False  # test hook: recover_from_errors() returns False and the errors stay
    # libfranka's UDP receive timeout: after `_lose_connection()` a running motion fails this much later.
    _network_timeout_s = 1.0
    # Velocity and deceleration limits at dynamics factor 1 (Franka datasheet, Cartesian and joint).
    _max_linear_speed = 1.7  # m/s
    _max_angular_speed = 2.5  # rad/s
    _max_joint_speed = 2.175  # rad/s
    _max_linear_decel = 13.0  # m/s^2
    _max_joint_decel = 10.0  # rad/s^2

    def __init__(
        self,
        fci_hostname,
        relative_dynamics_factor=1.0,
        default_torque_threshold=20.0,
        default_force_threshold=30.0,
        controller_mode=None,
        realtime_config=None,
    ):
        if Robot._refuse_connection:
            raise NetworkException("libfranka: Connection timeout")
        self._host = fci_hostname
        self._realtime_config = realtime_config
        self._dynamics = relative_dynamics_factor
        self._collision = None
        self._lock = threading.RLock()
        self._q = READY.copy()
        self._pos = np.array([0.4, 0.0, 0.4])
        self._quat = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: flange down
        self._v_lin = np.zeros(3)  # current velocities, from the motion law
        self._v_joint = np.zeros(7)
        self._t = time.monotonic()
        self._moves: list = []  # every motion passed to move(), in order
        self._move_times: list = []  # time.monotonic() of each move()
        self._loop_policies: list = []  # scheduling policy each new control loop's thread starts with
        self._running = None  # the motion in control, None when idle
        self._stop_until: float | None = None  # a stop motion or stop() decelerating until then
        self._error: builtins.Exception | None = None
        self._has_errors = False
        self._recovered = 0
        self._stop_calls = 0
        self._stop_times: list = []  # time.monotonic() at each stop() call
        self._last_motion_errors = Errors()
        self._lost_at: float | None = None  # _lose_connection(): when the robot went silent
        Robot._instances.append(self)

    # ---- test hooks: a lost connection ----------------------------------------------------------
    def _lose_connection(self):
        """The robot goes silent (cable pulled, controller off), as franky-control 2.0 reports it (measured
        against franky-sim killed mid-motion): a running motion fails `_network_timeout_s` later with
        NetworkException('libfranka: UDP receive: Timeout') from poll_motion/join_motion; from then on state
        reads block that long and raise RuntimeError('Net Exception'), and stop()/recover_from_errors() raise
        NetworkException('libfranka: TCP send bytes: I/O error') at once."""
        with self._lock:
            self._advance()
            self._lost_at = time.monotonic()

    def _check_connection(self):
        """Under the lock: fail a running motion once libfranka's timeout has passed since the loss."""
        if self._lost_at is None or time.monotonic() < self._lost_at + Robot._network_timeout_s:
            return
        if self._running is not None:
            self._running, self._stop_until = None, None
            self._error = NetworkException("libfranka: UDP receive: Timeout")

    def _read_lost(self):
        """A state read on a silent robot: while a motion still runs franky returns its cached state; once
        none runs, the read goes out and libfranka's receive times out."""
        if self._lost_at is None:
            return
        with self._lock:
            self._check_connection()
            running = self._running is not None
        if not running:
            time.sleep(Robot._network_timeout_s)
            raise RuntimeError("Net Exception")

    def _send_lost(self):
        if self._lost_at is not None:
            raise NetworkException("libfranka: TCP send bytes: I/O error")

    def _factors(self):
        d = self._dynamics
        if isinstance(d, RelativeDynamicsFactor):
            return d.velocity, d.acceleration
        return float(d), float(d)

    # ---- the motion law -------------------------------------------------------------------------
    def _advance(self):
        """Move the measured state to now (a silent robot's last state stays what franky saw)."""
        if self._lost_at is not None:
            self._check_connection()
            return
        now = time.monotonic()
        if now - self._t < 2e-4:  # nothing measurable moved; the time is kept for the next call
            return
        dt, self._t = now - self._t, now
        if self._stop_until is not None:
            # Decelerating: velocities fall linearly to zero at _stop_until.
            left = self._stop_until - (now - dt)
            step = min(dt, max(0.0, left))
            frac_after = max(0.0, (self._stop_until - now) / left) if left > 0 else 0.0
            self._pos = self._pos + self._v_lin * step * (1 + frac_after) / 2
            self._q = self._q + self._v_joint * step * (1 + frac_after) / 2
            self._v_lin, self._v_joint = self._v_lin * frac_after, self._v_joint * frac_after
            if now >= self._stop_until:
                self._stop_until = None
                self._v_lin[:], self._v_joint[:] = 0.0, 0.0
                if isinstance(self._running, _STOP_MOTIONS):
                    self._running = None
            return
        m = self._running
        vf, _ = self._factors()
        if isinstance(m, CartesianMotion) or isinstance(m, CartesianImpedanceTrackingMotion):
            if isinstance(m, CartesianMotion):
                target = m.target.pose.end_effector_pose
            elif m.get_reference() is not None:
                target = m.get_reference().target
            else:
                return
            d = target.translation - self._pos
            dist, max_d = float(np.linalg.norm(d)), self._max_linear_speed * vf * dt
            if dist <= max_d:
                self._pos, self._v_lin = target.translation, np.zeros(3)
            else:
                self._pos = self._pos + d * (max_d / dist)
                self._v_lin = d / dist * self._max_linear_speed * vf
            self._quat, rot_done = _slerp_xyzw(self._quat, target.quaternion, self._max_angular_speed * vf * dt)
            if dist <= max_d and rot_done and isinstance(m, CartesianMotion) and m.return_when_finished:
                self._running = None
        elif isinstance(m, JointMotion):
            d = m.target.position - self._q
            lim = self._max_joint_speed * vf * dt
            step = np.clip(d, -lim, lim)
            self._q = self._q + step
            done = np.allclose(step, d)
            self._v_joint = np.zeros(7) if done else step / dt
            if done and m.return_when_finished:
                self._running = None

    def _stop_duration(self):
        _, af = self._factors()
        return max(
            float(np.linalg.norm(self._v_lin)) / (self._max_linear_decel * af),
            float(np.max(np.abs(self._v_joint))) / (self._max_joint_decel * af),
        )

    def _decelerate(self):
        self._stop_until = time.monotonic() + self._stop_duration()
        self._t = time.monotonic()

    # ---- franky's API ---------------------------------------------------------------------------
    @property
    def relative_dynamics_factor(self):
        return self._dynamics

    @relative_dynamics_factor.setter
    def relative_dynamics_factor(self, value):
        self._dynamics = value

    @property
    def fci_hostname(self):
        return self._host

    def set_collision_behavior(self, torque_thresholds, force_thresholds):
        self._collision = (torque_thresholds, force_thresholds)

    def recover_from_errors(self):
        self._send_lost()
        with self._lock:
            if Robot._recover_fails:
                return False
            self._has_errors = False
            self._error = None
            self._recovered += 1
            return True

    def move(self, motion, asynchronous=False, limit_rate=False, cutoff_frequency=100.0):
        with self._lock:
            self._advance()
            if self._lost_at is not None and self._running is None:
                # A new control loop starts with a Move command over TCP: franky accepts an asynchronous
                # motion, and its control thread fails on the dead link. (A motion that replaces a running one
                # is handed to the running loop, which fails at the receive timeout: _check_connection.)
                self._error = NetworkException("libfranka: TCP send bytes: I/O error")
                if asynchronous:
                    return
                err, self._error = self._error, None
                raise err
            if self._has_errors:
                raise ControlException("libfranka: Move command rejected: robot has errors; call recover_from_errors")
            if self._running is not None and self._running._signal != motion._signal:
                raise InvalidMotionTypeException("the control signal type must not change during a motion")
            if asynchronous and self._running is None and not isinstance(motion, _STOP_MOTIONS):
                # franky starts a control-loop thread here; it inherits the caller's scheduling.
                self._loop_policies.append(os.sched_getscheduler(0))
            self._moves.append(motion)
            self._move_times.append(time.monotonic())
            if isinstance(motion, _STOP_MOTIONS):
                self._running = motion if self._running is not None else None
                if self._running is not None:
                    self._decelerate()
            else:
                self._stop_until = None
                self._running = motion
            n = Robot._reflex_after_moves
            if n is not None and len(self._moves) == n and self._running is not None:
                self._error = ControlException(
                    'libfranka: Move command aborted: motion aborted by reflex! ["cartesian_reflex"]'
                )
                self._has_errors = True
                self._last_motion_errors = _errors("cartesian_reflex")
                self._running, self._stop_until = None, None
                self._v_lin[:], self._v_joint[:] = 0.0, 0.0
        if not asynchronous:
            # Blocking: until the motion finishes, a reflex, or stop() from another thread preempts it.
            while True:
                with self._lock:
                    self._advance()
                    if self._error is not None:
                        err, self._error = self._error, None
                        raise err
                    if self._running is not motion:
                        return
                time.sleep(0.001)

    def poll_motion(self):
        with self._lock:
            self._advance()
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return self._running is not None

    def join_motion(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._advance()
                if self._error is not None:
                    err, self._error = self._error, None
                    raise err
                if self._running is None:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False  # a held motion (return_when_finished=False) never finishes by itself
            time.sleep(0.001)

    def stop(self):
        """Preempt the running motion: the arm decelerates to rest (this call waits for it), and the motion
        ends with 'Move command preempted'."""
        self._send_lost()
        with self._lock:
            self._stop_calls += 1
            self._stop_times.append(time.monotonic())
            self._advance()
            if self._running is None:
                return
            self._decelerate()
            until = self._stop_until
        time.sleep(max(0.0, until - time.monotonic()))
        with self._lock:
            self._advance()
            if self._running is not None and not isinstance(self._running, _STOP_MOTIONS):
                self._error = ControlException("libfranka: Move command preempted!")
            self._running, self._stop_until = None, None

    @property
    def is_in_control(self):
        with self._lock:
            self._advance()
            return self._running is not None

    @property
    def has_errors(self):
        self._read_lost()
        return self._has_errors

    @property
    def state(self):
        """The full robot state; the fake fills q, dq, O_T_EE, the mode and the error flags."""
        self._read_lost()
        with self._lock:
            self._advance()
            if self._has_errors:
                mode = RobotMode.Reflex
            else:
                mode = RobotMode.Move if self._running is not None else RobotMode.Idle
            current = _errors(*self._last_motion_errors._true) if self._has_errors else Errors()
            return RobotState(
                self._q.copy(),
                self._v_joint.copy(),
                Affine(self._pos.copy(), self._quat.copy()),
                mode,
                current,
                self._last_motion_errors,
            )

    @property
    def current_joint_state(self):
        self._read_lost()
        with self._lock:
            self._advance()
            return JointState(self._q, self._v_joint)

    @property
    def current_cartesian_state(self):
        self._read_lost()
        with self._lock:
            self._advance()
            return CartesianState(RobotPose(Affine(self._pos.copy(), self._quat.copy())))

    def _speed(self):
        """Test hook: the current linear speed (m/s) and the largest joint speed (rad/s)."""
        with self._lock:
            self._advance()
            return float(np.linalg.norm(self._v_lin)), float(np.max(np.abs(self._v_joint)))


# ---- gripper ----------------------------------------------------------------------------------------


class BoolFuture:
    def __init__(self, result=True, done=True):
        self._result = result
        self._done = done

    def wait(self, timeout=None):
        return self._done

    def get(self):
        if isinstance(self._result, builtins.Exception):
            raise self._result
        return self._result


class Gripper:
    """Franka Hand: 0.08 m stroke; a grasp stops on an object `_object_width` wide."""

    _instances: list = []
    _object_width = 0.03
    _hold_commands = False  # test hook: futures stay pending until _finish()

    def __init__(self, fci_hostname):
        self._host = fci_hostname
        self._width = 0.08
        self._max_width = 0.08
        self._commands: list = []  # ("move", width, speed) / ("grasp", width, speed, force, ei, eo) / ("open", speed)
        self._futures: list = []
        self._homed = 0
        Gripper._instances.append(self)

    def _future(self, width):
        self._width = width
        fut = BoolFuture(True, not Gripper._hold_commands)
        self._futures.append(fut)
        return fut

    def _finish(self):
        for f in self._futures:
            f._done = True

    def move_async(self, width, speed):
        self._commands.append(("move", float(width), float(speed)))
        return self._future(float(np.clip(width, 0.0, self._max_width)))

    def grasp_async(self, width, speed, force, epsilon_inner=0.005, epsilon_outer=0.005):
        self._commands.append(("grasp", float(width), float(speed), float(force), epsilon_inner, epsilon_outer))
        return self._future(Gripper._object_width)

    def open_async(self, speed):
        self._commands.append(("open", float(speed)))
        return self._future(self._max_width)

    def homing(self):
        self._homed += 1
        return True

    def stop(self):
        self._commands.append(("stop",))
        return True

    @property
    def width(self):
        return self._width

    @property
    def max_width(self):
        return self._max_width

    @property
    def is_grasped(self):
        return self._width < self._max_width - 0.005
