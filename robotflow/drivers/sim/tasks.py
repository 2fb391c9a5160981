"""Simulated tasks: object randomisation from a seed, success checks and the episode cycle.

`TaskRunner` is pure (no runtime code): the `sim.task` node calls it once per tick and publishes what it
returns. Episode k of a run uses seed `seed + k`, so any episode can be replayed on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from robotflow.geometry import canonical_quat, yaw_quat

from .scene import BIN_HALF, BIN_HEIGHT, CUBE_HALF, TABLE_TOP, TASKS
from .world import SimWorld

# Where objects are placed (base frame, m): comfortably inside the Panda's top-down workspace.
X_RANGE = (0.40, 0.62)
Y_RANGE = (-0.22, 0.22)
YAW_RANGE = (-np.pi / 4, np.pi / 4)
REST_SPEED = 0.02  # m/s: below this an object counts as resting


def cube_yaw(quat: np.ndarray) -> float:
    """Yaw (rad) of a box from its quaternion, taken from where its x axis points."""
    w, x, y, z = quat
    xa = np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z)])
    return float(np.arctan2(xa[1], xa[0]))


@dataclass
class EpisodeResult:
    """One finished episode, as the CLI's `--summary` writes it."""

    index: int
    seed: int
    success: bool
    outcome: str
    duration_s: float
    label: str = ""  # the operator's label (success, failure, discarded), beside the scorer's outcome

    def as_dict(self) -> dict:
        return asdict(self)


class TaskRunner:
    """Runs episodes of `task` on a world (a `SimWorld`, or the Franka twin's world with the same object API): reset, randomise, check success (resting for hold_s) or timeout.

    `update(now_s)` returns the episode events to publish (dicts with the fields of `task/episode`).
    """

    def __init__(
        self, world: SimWorld, task: str, seed: int = 0, episodes: int = 1, timeout_s: float = 20.0, hold_s: float = 1.0
    ):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if world.task != task:
            raise ValueError(
                f"task {task!r} needs a world built for it, but the world's scene is {world.task!r}; "
                f"set the world's `task` param to {task!r}"
            )
        self.world, self.task, self.seed = world, task, int(seed)
        self.episodes, self.timeout_s, self.hold_s = int(episodes), float(timeout_s), float(hold_s)
        self.results: list[EpisodeResult] = []
        self.index = -1  # current episode index (counts discarded ones too)
        self.active = False
        self.start_s = 0.0
        self.episode_seed = self.seed
        self._ok_since: float | None = None

    @property
    def done(self) -> bool:
        return sum(r.outcome != "discarded" for r in self.results) >= self.episodes

    # ---- randomisation --------------------------------------------------------------------------
    def randomize(self, seed: int) -> None:
        """Place the task objects from `seed` (non-overlapping, random yaw) and settle the scene."""
        rng = np.random.default_rng(seed)
        names = [o.name for o in self.world.objects]
        kinds = {o.name: o.kind for o in self.world.objects}
        placed: list[tuple[np.ndarray, float]] = []
        for name in names:
            radius = BIN_HALF + 0.02 if kinds[name] == "bin" else CUBE_HALF * 1.5
            for _ in range(1000):
                xy = np.array([rng.uniform(*X_RANGE), rng.uniform(*Y_RANGE)])
                if all(np.linalg.norm(xy - p) > radius + r + 0.04 for p, r in placed):
                    break
            placed.append((xy, radius))
            yaw = rng.uniform(*YAW_RANGE)
            z = TABLE_TOP if kinds[name] == "bin" else TABLE_TOP + CUBE_HALF
            self.world.set_object_pose(name, np.concatenate([xy, [z], yaw_quat(yaw)]))
        self.world.forward()

    # ---- success --------------------------------------------------------------------------------
    def success_now(self) -> bool:
        """Whether the goal configuration holds at this instant (objects resting, robot not touching)."""
        w = self.world
        if self.task == "stack_cubes":
            top, bottom = w.object_pose("red_cube"), w.object_pose("green_cube")
            dxy = np.linalg.norm(top[:2] - bottom[:2])
            dz = top[2] - bottom[2]
            placed = dxy < CUBE_HALF and abs(dz - 2 * CUBE_HALF) < 0.006 and bottom[2] < TABLE_TOP + CUBE_HALF + 0.005
            moving = max(w.object_speed("red_cube"), w.object_speed("green_cube")) > REST_SPEED
            return bool(placed and not moving and not w.touching_robot("red_cube"))
        cube, bin_ = w.object_pose("cube"), w.object_pose("bin")
        yaw = cube_yaw(bin_[3:])
        c, s = np.cos(yaw), np.sin(yaw)
        d = cube[:2] - bin_[:2]
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])  # cube centre in the bin's frame
        inside = np.all(np.abs(local) < BIN_HALF) and cube[2] < bin_[2] + BIN_HEIGHT
        return bool(inside and w.object_speed("cube") < REST_SPEED and not w.touching_robot("cube"))

    # ---- episode cycle --------------------------------------------------------------------------
    def start(self, now_s: float) -> dict:
        self.index += 1
        self.episode_seed = self.seed + sum(r.outcome != "discarded" for r in self.results)
        self.world.reset_robot()
        self.randomize(self.episode_seed)
        self.active, self.start_s, self._ok_since = True, now_s, None
        return {
            "event": "start",
            "index": self.index,
            "seed": self.episode_seed,
            "outcome": "",
            "label": "",
            "duration_s": 0.0,
            "task": self.task,
        }

    def end(self, now_s: float, outcome: str, label: str = "") -> dict:
        duration = now_s - self.start_s
        self.results.append(
            EpisodeResult(self.index, self.episode_seed, outcome == "success", outcome, duration, label)
        )
        self.active = False
        return {
            "event": "end",
            "index": self.index,
            "seed": self.episode_seed,
            "outcome": outcome,
            "label": label,
            "duration_s": duration,
            "task": self.task,
        }

    def update(self, now_s: float, label: str | None = None, ready: bool = True) -> list[dict]:
        """Advance the episode cycle to `now_s`. `label` is the operator ending the episode with a label
        (success, failure or discarded): a discarded episode is dropped from the results; any other ends now,
        scored by the task (success if the goal holds now, else aborted), the label kept beside the score.
        `ready` False holds the next start back (the Franka twin homes its arm through franky first)."""
        events: list[dict] = []
        if self.active:
            outcome = None
            if label == "discarded":
                outcome = "discarded"
            elif label is not None:
                outcome = "success" if self.success_now() else "aborted"
            elif self.success_now():
                self._ok_since = now_s if self._ok_since is None else self._ok_since
                if now_s - self._ok_since >= self.hold_s - 1e-9:
                    outcome = "success"
            else:
                self._ok_since = None
            if outcome is None and now_s - self.start_s >= self.timeout_s:
                outcome = "failure"
            if outcome is not None:
                events.append(self.end(now_s, outcome, label or ""))
        if not self.active and not self.done and ready:
            events.append(self.start(now_s))
        return events

    def objects(self) -> tuple[str, np.ndarray]:
        """Privileged object state: comma-separated names and (K, 7) poses."""
        poses = self.world.object_poses()
        for p in poses:
            p[3:] = canonical_quat(p[3:])
        return ",".join(o.name for o in self.world.objects), poses
