"""Run a simulated task with the scripted expert without the runtime: for tuning, benchmarks and tests.

It calls the same pure pieces the sim nodes wrap (SimWorld, ArmController, GripperController, TaskRunner,
ScriptedExpert) at the rates of graphs/sim_*.yaml and in the graph's order, with the teleop -> arm and
teleop -> gripper edges delayed by one tick as in the graph. No rendering. The graph-level equivalent is
exercised in tests/test_sim_graph.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expert import ScriptedExpert
from .tasks import EpisodeResult, TaskRunner
from .world import ArmController, GripperController, SimWorld


@dataclass
class HarnessRates:
    world: float = 500.0
    arm: float = 100.0
    gripper: float = 100.0
    task: float = 50.0
    teleop: float = 50.0


def run_expert(
    task: str,
    seed: int = 0,
    episodes: int = 1,
    timeout_s: float = 20.0,
    hold_s: float = 0.5,
    noise: float = 0.0,
    rates: HarnessRates | None = None,
    world: SimWorld | None = None,
    trace: list | None = None,
) -> list[EpisodeResult]:
    """Run `episodes` episodes of `task` (seeds seed, seed+1, ...) with the scripted expert."""
    r = rates or HarnessRates()
    world = world or SimWorld(task, 1.0 / r.world)
    arm, grip = ArmController(world), GripperController(world)
    runner = TaskRunner(world, task, seed, episodes, timeout_s, hold_s)
    expert = ScriptedExpert(task, noise)
    period = {k: int(round(r.world / getattr(r, k))) for k in ("arm", "gripper", "task", "teleop")}
    cmd: tuple[np.ndarray, float] | None = None  # teleop output, seen by arm/gripper one tick later
    tick = 0
    while not runner.done:
        t = tick / r.world
        world.step_to(t)
        if tick % period["arm"] == 0:
            if cmd is not None:
                arm.set_ee_target(cmd[0])
            arm.update(1.0 / r.arm)
        if tick % period["gripper"] == 0 and cmd is not None:
            grip.set_target(cmd[1])
        new_cmd = cmd
        if tick % period["task"] == 0:
            for ev in runner.update(t):
                if ev["event"] == "start":
                    expert.reset()
                    new_cmd = None  # the arm ignores commands from before a reset
            if runner.active and not expert.planned:
                names, poses = runner.objects()
                expert.plan(dict(zip(names.split(","), poses)), world.ee_pose(), t, runner.episode_seed)
        if tick % period["teleop"] == 0 and expert.planned and runner.active:
            names, poses = runner.objects()
            new_cmd = expert.act(t, world.ee_pose(), dict(zip(names.split(","), poses)))
            if trace is not None:
                trace.append((t, world.ee_pose(), world.object_poses(), new_cmd[1]))
        cmd = new_cmd
        tick += 1
    return runner.results
