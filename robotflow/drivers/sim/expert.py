"""The scripted expert: solves the simulated tasks from privileged object poses (sim only).

The plan is a list of waypoints (above the object, grasp, lift, above the goal, release, retreat), followed
by interpolating the EE target at a bounded speed and waiting at key waypoints until the arm is there.
`noise` perturbs the plan per episode (grasp offsets, heights, speeds) so demonstrations vary; it is
seeded from the episode seed, so a run stays deterministic. The `teleop.scripted` node
(robotflow/drivers/teleop_scripted.py) and the harness (harness.py) drive it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robotflow.geometry import quat_conj, quat_mul, yaw_quat

from .scene import BIN_HEIGHT, CUBE_HALF, TABLE_TOP
from .tasks import cube_yaw

# EE orientation at the home pose: pointing down, fingers opening along the world x axis.
DOWN = np.array([0.0, 0.70710678, 0.70710678, 0.0])
# The Franka's EE frame (franky's O_T_EE, the Franka Hand's TCP) pointing down: the flange turned half a turn
# about x. Its fingers open along y instead of x, which a cube's quarter-turn symmetry makes irrelevant.
FRANKA_DOWN = np.array([0.0, 1.0, 0.0, 0.0])
GRASP_DEPTH = 0.0  # pinch point relative to the cube centre when grasping (m)
SAFE_Z = 0.16  # travel height of the pinch point (m)


def wrap_quarter(a: float) -> float:
    """Wrap an angle to (-pi/4, pi/4]: a box looks the same every quarter turn."""
    return float((a + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def ee_orientation(yaw: float, down: np.ndarray = DOWN) -> np.ndarray:
    """The downward EE orientation `down` turned by `yaw` about the vertical."""
    q = quat_mul(yaw_quat(yaw), down)
    return -q if q[0] < 0 else q


@dataclass
class Waypoint:
    pos: np.ndarray
    yaw: float
    grip: float
    speed: float = 0.25  # m/s along the segment leading here
    dwell: float = 0.0  # s to stay after arriving (e.g. for the fingers to close)
    reach_tol: float | None = None  # wait (bounded) until the EE is this close before going on
    at_goal: bool = False  # a waypoint over the goal: shifted by the held object's offset in the hand


class ScriptedExpert:
    """Plans and follows a pick-and-place for `stack_cubes` (red onto green) or `pick_place` (cube into bin)."""

    def __init__(
        self, task: str, noise: float = 0.0, speed: float = 0.25, down: np.ndarray = DOWN, grasp_tol: float = 0.004
    ):
        self.task, self.noise, self.speed = task, float(noise), float(speed)
        self.down = np.asarray(down, float)  # the EE orientation at yaw 0: the robot's tool pointing down
        # How close the EE must get to the grasp and release poses before the gripper acts (bounded wait). Set it
        # above the arm's steady-state tracking error: franky's impedance control on the twin settles 6.5 mm off
        # (median), so with 4 mm every grasp waited out the 1.5 s bound, and a policy trained on those demos,
        # which cannot see how long the arm has waited, never closed the gripper (0/20 through franky).
        self.grasp_tol = float(grasp_tol)
        self.waypoints: list[Waypoint] = []
        self.reset()

    def reset(self) -> None:
        self.waypoints = []
        self._i = 0
        self._seg_start_t = 0.0
        self._seg_from: Waypoint | None = None
        self._arrived_t: float | None = None
        self._held: str | None = None  # the object this plan picks up
        self._carry_yaw = 0.0  # how far the EE turns between grasp and release (rad)

    @property
    def planned(self) -> bool:
        return bool(self.waypoints)

    def plan(
        self,
        objects: dict[str, np.ndarray],
        ee_pose: np.ndarray,
        now_s: float,
        seed: int = 0,
        takeover_width: float | None = None,
    ) -> None:
        """Make the waypoint plan for this episode from object poses and the current EE pose.

        `takeover_width`: the plan starts mid-episode, taking over from another controller whose gripper
        command is this width; the plan then starts from where the arm is (see `_take_over`)."""
        rng = np.random.default_rng(seed + 7919)  # own stream: independent of the task's placement draws
        n = self.noise
        jit = lambda s: float(np.clip(rng.normal(0.0, s * n), -2 * s * n, 2 * s * n)) if n > 0 else 0.0  # noqa: E731
        v = self.speed * (1.0 + jit(0.15))
        if self.task == "stack_cubes":
            self._held = "red_cube"
            obj, goal = objects["red_cube"], objects["green_cube"]
            grasp_yaw = wrap_quarter(cube_yaw(obj[3:]))
            # Turn the held cube onto the lower cube's faces on the way.
            place_yaw = grasp_yaw + wrap_quarter(cube_yaw(goal[3:]) - cube_yaw(obj[3:]))
            place_xy = goal[:2]
            place_z = goal[2] + 2 * CUBE_HALF + 0.006 + GRASP_DEPTH
        elif self.task == "pick_place":
            self._held = "cube"
            obj, goal = objects["cube"], objects["bin"]
            grasp_yaw = wrap_quarter(cube_yaw(obj[3:]))
            place_yaw = grasp_yaw
            place_xy = goal[:2]
            place_z = goal[2] + BIN_HEIGHT + CUBE_HALF + 0.03
        else:
            raise ValueError(f"the scripted expert has no plan for task {self.task!r}")
        # Grasps land up to ~1 cm off the cube's centre (as a learned policy's do); the carry then corrects
        # for where the cube sits in the hand, so the demonstrations show placing the cube, not the hand.
        gxy = obj[:2] + np.array([jit(0.008), jit(0.008)])
        pxy = place_xy + np.array([jit(0.004), jit(0.004)])
        hover = SAFE_Z + jit(0.02)
        grasp_z = max(obj[2] + GRASP_DEPTH, TABLE_TOP + 0.012)
        W = Waypoint
        self.waypoints = [
            W(np.array([*gxy, hover]), grasp_yaw, 1.0, v, reach_tol=0.01),
            W(np.array([*gxy, grasp_z + 0.03]), grasp_yaw, 1.0, v),
            W(np.array([*gxy, grasp_z]), grasp_yaw, 1.0, 0.5 * v, dwell=0.15, reach_tol=self.grasp_tol),
            W(np.array([*gxy, grasp_z]), grasp_yaw, 0.0, v, dwell=0.6),
            W(np.array([*gxy, hover]), grasp_yaw, 0.0, 0.6 * v),
            W(np.array([*pxy, hover]), place_yaw, 0.0, v, reach_tol=0.01, at_goal=True),
            W(np.array([*pxy, place_z]), place_yaw, 0.0, 0.5 * v, dwell=0.2, reach_tol=self.grasp_tol, at_goal=True),
            W(np.array([*pxy, place_z]), place_yaw, 1.0, v, dwell=0.5, at_goal=True),
            W(np.array([*pxy, hover + 0.05]), place_yaw, 1.0, 0.6 * v, at_goal=True),
        ]
        self._carry_yaw = place_yaw - grasp_yaw
        yaw0 = cube_yaw_from_ee(ee_pose, self.down)
        if takeover_width is not None:
            self._take_over(objects[self._held], np.asarray(ee_pose, float), yaw0, grasp_yaw, takeover_width, v)
        self._seg_from = W(np.asarray(ee_pose[:3], float).copy(), yaw0, 1.0)
        self._i = 0
        self._seg_start_t = now_s
        self._arrived_t = None

    def _take_over(
        self, held: np.ndarray, ee_pose: np.ndarray, yaw0: float, grasp_yaw: float, width: float, v: float
    ) -> None:
        """Start the plan from a running episode. With the object in the closed hand (its centre within 3 cm of
        the EE): lift it where it is and carry it on, the goal yaws turned by how the hand holds it now.
        Otherwise: open and rise straight up first (never sweep low across the table), then the full plan."""
        if width < 0.5 and np.linalg.norm(held[:3] - ee_pose[:3]) < 0.03:
            turn = yaw0 - grasp_yaw
            carry = [
                Waypoint(wp.pos.copy(), wp.yaw + turn, wp.grip, wp.speed, wp.dwell, wp.reach_tol, wp.at_goal)
                for wp in self.waypoints[5:]
            ]
            lift = Waypoint(np.array([*ee_pose[:2], self.waypoints[4].pos[2]]), yaw0, 0.0, 0.6 * v)
            self.waypoints = [lift, *carry]
        else:
            rise = Waypoint(np.array([*ee_pose[:2], max(ee_pose[2], self.waypoints[0].pos[2])]), yaw0, 1.0, v)
            self.waypoints = [rise, *self.waypoints]

    @property
    def finished(self) -> bool:
        return self.planned and self._i >= len(self.waypoints)

    def _correct_for_grasp(self, ee_pose: np.ndarray, held: np.ndarray) -> None:
        """Shift the goal waypoints by the held object's offset from the EE, turned as the EE turns on the way,
        so the object (not the EE) ends up over the goal."""
        offset = np.asarray(ee_pose[:2], float) - np.asarray(held[:2], float)
        c, s = np.cos(self._carry_yaw), np.sin(self._carry_yaw)
        shift = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]])
        for wp in self.waypoints:
            if wp.at_goal:
                wp.pos = wp.pos + np.array([*shift, 0.0])

    def act(
        self, now_s: float, ee_pose: np.ndarray | None, objects: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, float]:
        """The EE target pose and gripper width at `now_s`. `objects` (latest poses by name) lets the carry
        correct for where the object sits in the hand."""
        if not self.waypoints:
            raise RuntimeError("ScriptedExpert.act() before plan()")
        if self._i >= len(self.waypoints):
            last = self.waypoints[-1]
            return np.concatenate([last.pos, ee_orientation(last.yaw, self.down)]), last.grip
        wp, frm = self.waypoints[self._i], self._seg_from
        dist = float(np.linalg.norm(wp.pos - frm.pos))
        dur = max(dist / wp.speed, abs(wp.yaw - frm.yaw) / 1.5, 1e-3)
        s = min(1.0, (now_s - self._seg_start_t) / dur)
        s_smooth = s * s * (3 - 2 * s)  # smoothstep: no velocity jumps at the waypoints
        pos = frm.pos + s_smooth * (wp.pos - frm.pos)
        yaw = frm.yaw + s_smooth * (wp.yaw - frm.yaw)
        if s >= 1.0:
            if self._arrived_t is None:
                self._arrived_t = now_s
            reached = (
                wp.reach_tol is None
                or ee_pose is None
                or np.linalg.norm(np.asarray(ee_pose[:3]) - wp.pos) < wp.reach_tol
                or now_s - self._arrived_t > 1.5
            )  # bounded wait: never stall an episode
            if reached and now_s - self._arrived_t >= wp.dwell:
                self._seg_from = wp
                self._i += 1
                nxt = self.waypoints[self._i] if self._i < len(self.waypoints) else None
                if nxt is not None and nxt.at_goal and not wp.at_goal and ee_pose is not None and objects:
                    self._correct_for_grasp(ee_pose, objects[self._held])  # lifted: the object is in the hand
                self._seg_start_t = now_s
                self._arrived_t = None
        return np.concatenate([pos, ee_orientation(yaw, self.down)]), wp.grip


def cube_yaw_from_ee(ee_pose: np.ndarray, down: np.ndarray = DOWN) -> float:
    """The yaw, in the expert's convention, of an EE orientation (0 at `down`, the home pose's)."""
    rel = quat_mul(np.asarray(ee_pose[3:7], float), quat_conj(down))
    return cube_yaw(rel)
