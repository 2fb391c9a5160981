"""Damped least-squares differential inverse kinematics on MuJoCo Jacobians.

Pure functions over a MuJoCo model and a scratch `MjData`: the arm node solves on its own scratch data so
the IK never touches the simulated state. Poses are `[x, y, z, qw, qx, qy, qz]` in the base (world) frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robotflow.geometry import canonical_quat, pose_from_pos_mat, quat_error, rotation_angle


@dataclass
class IKConfig:
    """Tuning of the differential IK.

    damping: lambda of the damped pseudo-inverse (m); keeps steps bounded near singularities.
    max_step: largest joint change per iteration (rad), so one iteration never leaps across the workspace.
    nullspace_gain: pull toward the rest posture in the Jacobian's null space (the Panda is redundant).
    limit_margin: distance kept from joint limits (rad).
    """

    damping: float = 0.02
    max_step: float = 0.2
    nullspace_gain: float = 0.05
    limit_margin: float = 0.01
    rot_weight: float = 1.0


class DiffIK:
    """Differential IK for one site driven by a subset of hinge joints."""

    def __init__(
        self,
        model: mujoco.MjModel,
        site: str,
        joints: tuple[str, ...],
        rest: np.ndarray,
        config: IKConfig | None = None,
    ):
        self.model = model
        self.data = mujoco.MjData(model)  # scratch: kinematics only, never stepped
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        rng = model.jnt_range[jids]
        self.config = config or IKConfig()
        self.lo = rng[:, 0] + self.config.limit_margin
        self.hi = rng[:, 1] - self.config.limit_margin
        self.rest = np.asarray(rest, float).copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Site pose for joint positions `q` (other joints as in the scratch data)."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self._site_pose()

    def _site_pose(self) -> np.ndarray:
        return pose_from_pos_mat(self.data.site_xpos[self.site_id], self.data.site_xmat[self.site_id])

    def iterate(self, q: np.ndarray, target: np.ndarray, iterations: int = 1) -> tuple[np.ndarray, float, float]:
        """Run DLS iterations from `q` toward `target`; returns (q, position error m, angle error rad)."""
        cfg = self.config
        q = np.clip(np.asarray(q, float).copy(), self.lo, self.hi)
        tpos, tquat = np.asarray(target[:3], float), canonical_quat(target[3:7])
        n = len(q)
        pos_err = rot_err = np.inf
        for _ in range(max(1, iterations)):
            self.data.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)  # mj_jacSite needs the com-based quantities
            cur = self._site_pose()
            e_pos = tpos - cur[:3]
            e_rot = quat_error(tquat, cur[3:])
            pos_err, rot_err = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
            if pos_err < 1e-5 and rot_err < 1e-4:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dadr], cfg.rot_weight * self._jacr[:, self.dadr]])
            err = np.concatenate([e_pos, cfg.rot_weight * e_rot])
            jjt = jac @ jac.T + (cfg.damping**2) * np.eye(6)
            jpinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
            dq = jpinv @ err
            # Secondary task: stay near the rest posture without disturbing the EE (null-space projection).
            dq += (np.eye(n) - jpinv @ jac) @ (cfg.nullspace_gain * (self.rest - q))
            biggest = np.max(np.abs(dq))
            if biggest > cfg.max_step:
                dq *= cfg.max_step / biggest
            q = np.clip(q + dq, self.lo, self.hi)
        return q, pos_err, rot_err

    def solve(
        self, target: np.ndarray, q0: np.ndarray, iterations: int = 200, tol_pos: float = 1e-4, tol_rot: float = 1e-3
    ) -> tuple[np.ndarray, float, float]:
        """Iterate to convergence (kinematics only); returns (q, position error m, angle error rad)."""
        q = np.asarray(q0, float)
        for _ in range(iterations):
            q, pe, re = self.iterate(q, target, 1)
            if pe < tol_pos and re < tol_rot:
                break
        pose = self.fk(q)
        return q, float(np.linalg.norm(pose[:3] - target[:3])), rotation_angle(target[3:], pose[3:])
