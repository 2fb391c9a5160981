"""The simulated world and the controllers that drive it, free of any runtime code.

`SimWorld` owns a MuJoCo model and data. `ArmController` turns absolute EE or joint targets into joint
position commands (differential IK, joint limits, joint speed limits); `GripperController` maps the
normalised width (0 = closed, 1 = open) onto the 2F-85 actuator. The nodes in nodes.py are thin wrappers
around these classes, and tests and benchmarks can drive them directly.
"""

from __future__ import annotations

import copy
import functools

import mujoco
import numpy as np

from robotflow.geometry import pose_from_pos_mat

from .ik import DiffIK, IKConfig
from .scene import (
    ARM_ACTUATORS,
    ARM_JOINTS,
    EE_SITE,
    GRIPPER_ACTUATOR,
    HOME_QPOS,
    ROBOT_ROOT,
    TASK_OBJECTS,
    build_model,
)

# Franka Panda joint speed limits (rad/s, datasheet); commands are slowed to half of them.
PANDA_MAX_JOINT_VEL = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
GRIPPER_CTRL_CLOSED = 255.0  # the 2F-85 actuator: 0 = open, 255 = closed
GRIPPER_DRIVER_CLOSED = 0.79  # driver joint angle (rad) of the empty gripper fully closed


@functools.lru_cache(maxsize=4)
def _compiled(task: str, timestep: float, visual_cell: float) -> mujoco.MjModel:
    # Compiling the Panda meshes takes seconds; worlds in one process share a pristine copy.
    return build_model(task, timestep, visual_cell)


class SceneObjects:
    """The task objects of a MuJoCo world, read and placed: shared by `SimWorld` and the Franka twin's world.

    A subclass provides `model`, `data`, `objects` (the task's objects), `object_body` (name -> body id) and
    `robot_geoms` (the geoms of the robot subtree, see `robot_geoms_of`).
    """

    model: mujoco.MjModel
    data: mujoco.MjData
    object_body: dict[str, int]
    robot_geoms: frozenset[int]

    def object_pose(self, name: str) -> np.ndarray:
        b = self.object_body[name]
        q = self.data.xquat[b].copy()
        return np.concatenate([self.data.xpos[b], -q if q[0] < 0 else q])

    def object_poses(self) -> np.ndarray:
        return np.stack([self.object_pose(o.name) for o in self.objects])

    def object_speed(self, name: str) -> float:
        """Linear speed (m/s) of a free object; 0 for fixed ones."""
        b = self.object_body[name]
        if self.model.body_mocapid[b] >= 0:
            return 0.0
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, b, vel, 0)
        return float(np.linalg.norm(vel[3:]))

    def set_object_pose(self, name: str, pose: np.ndarray) -> None:
        b = self.object_body[name]
        mocap = self.model.body_mocapid[b]
        if mocap >= 0:
            self.data.mocap_pos[mocap] = pose[:3]
            self.data.mocap_quat[mocap] = pose[3:7]
        else:
            jnt = self.model.body_jntadr[b]
            adr, dadr = self.model.jnt_qposadr[jnt], self.model.jnt_dofadr[jnt]
            self.data.qpos[adr : adr + 7] = pose
            self.data.qvel[dadr : dadr + 6] = 0.0

    def touching_robot(self, name: str) -> bool:
        """Whether any robot geom is in contact with object `name`."""
        b = self.object_body[name]
        d, m = self.data, self.model
        for i in range(d.ncon):
            g1, g2 = d.contact.geom1[i], d.contact.geom2[i]
            if (m.geom_bodyid[g1] == b and g2 in self.robot_geoms) or (
                m.geom_bodyid[g2] == b and g1 in self.robot_geoms
            ):
                return True
        return False


def robot_geoms_of(model: mujoco.MjModel, root: int) -> frozenset[int]:
    """The geoms of every body under `root` (the robot's subtree)."""

    def under(body: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = int(model.body_parentid[body])
        return False

    return frozenset(g for g in range(model.ngeom) if under(int(model.geom_bodyid[g])))


class SimWorld(SceneObjects):
    """A MuJoCo model + data for one task scene, with the robot and objects addressed by name."""

    def __init__(self, task: str = "stack_cubes", timestep: float = 0.002, visual_cell: float = 0.004):
        self.task = task
        self.model: mujoco.MjModel = copy.deepcopy(_compiled(task, float(timestep), float(visual_cell)))
        self.data = mujoco.MjData(self.model)
        m = self.model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        self.arm_qadr = np.array([m.jnt_qposadr[j] for j in jid])
        self.arm_dadr = np.array([m.jnt_dofadr[j] for j in jid])
        self.arm_act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in ARM_ACTUATORS])
        self.grip_act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, GRIPPER_ACTUATOR)
        self.driver_qadr = np.array(
            [
                m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]
                for j in ("right_driver_joint", "left_driver_joint")
            ]
        )
        self.ee_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        self.objects = TASK_OBJECTS[task]
        self.object_body = {o.name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in self.objects}
        self.robot_geoms = robot_geoms_of(m, mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, ROBOT_ROOT))
        self.reset_count = 0  # bumped by reset_robot(); controllers drop their state when it changes
        self.reset_robot()

    # ---- time -----------------------------------------------------------------------------------
    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def step(self, n: int = 1) -> None:
        mujoco.mj_step(self.model, self.data, nstep=n) if n > 1 else mujoco.mj_step(self.model, self.data)

    def step_to(self, t: float) -> int:
        """Step physics until sim time reaches `t` (s), to within half a timestep; returns the steps taken."""
        n = int(np.floor((t - self.data.time) / self.timestep + 0.5))
        if n > 0:
            self.step(n)
        return max(n, 0)

    # ---- robot ----------------------------------------------------------------------------------
    def reset_robot(self, qpos: np.ndarray | None = None) -> None:
        """Put the arm at `qpos` (home by default) at rest with the gripper open; objects are left alone."""
        q = HOME_QPOS if qpos is None else np.asarray(qpos, float)
        d = self.data
        d.qpos[self.arm_qadr] = q
        d.qvel[self.arm_dadr] = 0.0
        d.ctrl[self.arm_act] = q
        # Gripper: every joint of the robot subtree that is not an arm joint belongs to the 2F-85.
        arm = set(self.arm_qadr.tolist())
        for j in range(self.model.njnt):
            if self.model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE and self.model.jnt_qposadr[j] not in arm:
                d.qpos[self.model.jnt_qposadr[j]] = self.model.qpos0[self.model.jnt_qposadr[j]]
                d.qvel[self.model.jnt_dofadr[j]] = 0.0
        d.ctrl[self.grip_act] = 0.0
        d.act[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, d)
        self.reset_count += 1

    def arm_qpos(self) -> np.ndarray:
        return self.data.qpos[self.arm_qadr].copy()

    def arm_qvel(self) -> np.ndarray:
        return self.data.qvel[self.arm_dadr].copy()

    def ee_pose(self) -> np.ndarray:
        """The pinch point between the pads: [x, y, z, qw, qx, qy, qz], w >= 0."""
        return pose_from_pos_mat(self.data.site_xpos[self.ee_site], self.data.site_xmat[self.ee_site])

    def gripper_width(self) -> float:
        """Normalised opening: 1 fully open, 0 fully closed (from the 2F-85 driver joints)."""
        q = float(np.mean(self.data.qpos[self.driver_qadr]))
        return float(np.clip(1.0 - q / GRIPPER_DRIVER_CLOSED, 0.0, 1.0))

    def set_gripper(self, width: float) -> None:
        self.data.ctrl[self.grip_act] = (1.0 - float(np.clip(width, 0.0, 1.0))) * GRIPPER_CTRL_CLOSED

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)


class ArmController:
    """Joint position commands for the Panda from absolute EE targets (differential IK) or joint targets.

    Each `update(dt)` runs a few damped least-squares iterations, warm-started from the previous
    solution, then moves the commanded joint positions toward it no faster than the joint speed limit,
    so a far or sudden target gives a smooth, limited motion instead of a jump of the position servos.
    Before the first command, and after a world reset, the arm holds its position.
    """

    def __init__(self, world: SimWorld, ik_iterations: int = 3, speed_scale: float = 0.5, ik: IKConfig | None = None):
        self.world = world
        self.ik = DiffIK(world.model, EE_SITE, ARM_JOINTS, HOME_QPOS, ik)
        self.ik_iterations = ik_iterations
        self.max_vel = PANDA_MAX_JOINT_VEL * speed_scale
        self.reset()

    def reset(self) -> None:
        self._seen_reset = self.world.reset_count
        self.q_cmd = self.world.arm_qpos()
        self.q_goal = self.q_cmd.copy()
        self.mode = "hold"
        self.target: np.ndarray | None = None

    def set_ee_target(self, pose: np.ndarray) -> None:
        self._sync()
        self.mode = "ee"
        self.target = np.asarray(pose, float).copy()

    def set_joint_target(self, q: np.ndarray) -> None:
        self._sync()
        self.mode = "joints"
        self.target = np.clip(np.asarray(q, float), self.ik.lo, self.ik.hi)

    def hold(self) -> None:
        """Stop at the joints commanded now and drop the target (the command watchdog fired)."""
        self._sync()
        self.mode = "hold"
        self.target = None
        self.q_goal = self.q_cmd.copy()

    def _sync(self) -> None:
        if self.world.reset_count != self._seen_reset:
            self.reset()

    def update(self, dt: float) -> None:
        """Advance the command by `dt` seconds and write it to the position actuators."""
        self._sync()
        if self.mode == "ee":
            self.q_goal, _, _ = self.ik.iterate(self.q_goal, self.target, self.ik_iterations)
        elif self.mode == "joints":
            self.q_goal = self.target
        lim = self.max_vel * dt
        self.q_cmd = self.q_cmd + np.clip(self.q_goal - self.q_cmd, -lim, lim)
        self.world.data.ctrl[self.world.arm_act] = self.q_cmd


class GripperController:
    """Normalised gripper width target (0 closed .. 1 open) onto the 2F-85 actuator."""

    def __init__(self, world: SimWorld):
        self.world = world
        self.reset()

    def reset(self) -> None:
        self._seen_reset = self.world.reset_count
        self.target = 1.0  # reset_robot() opens the gripper

    def set_target(self, width: float) -> None:
        if self.world.reset_count != self._seen_reset:
            self.reset()
        self.target = float(np.clip(width, 0.0, 1.0))
        self.world.set_gripper(self.target)
