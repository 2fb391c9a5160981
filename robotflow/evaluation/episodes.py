"""Seeded episodes of a policy in simulation, each in a graph of its own, in parallel worker processes.

Every episode runs in a graph of its own (a fresh world, policy state and recorder), seeded with its
seed. So an episode's outcome depends on its seed and the checkpoint only, never on which episodes ran
before it in the same process: one worker or N give the same per-seed results (tested), and any failed
seed can be re-run alone. A worker is a spawned process that imports torch, LeRobot and MuJoCo once and
then takes seeds from a queue and runs them one after another, each with one torch thread. It loads
the policy once: a policy node releases its policy when its graph ends, and the worker hands the same one,
reset, to the next episode's node (robotflow.policies.loading.keep_loaded_policies).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from robotflow.recording.graph_transform import with_recorder
from robotflow.runtime.graph import GraphError, GraphSpec
from robotflow.runtime.scheduler import Scheduler

log = logging.getLogger("robotflow.evaluation")


@dataclass(frozen=True)
class EpisodeJob:
    """One seeded episode of an evaluation: `index` is its position (and its recording's number)."""

    index: int
    seed: int


@dataclass
class EpisodeOutcome:
    index: int
    seed: int
    success: bool
    outcome: str  # success | failure | aborted
    duration_s: float
    recording: str | None = None  # the episode file, when recorded

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalPlan:
    """What every worker needs to run an episode: the graph and where to record."""

    graph: GraphSpec  # validated, the policy's checkpoint set (pickled to each worker)
    task_node: str  # the node with `seed` and `episodes` params
    record_dir: str | None  # None: do not record
    torch_threads: int | None = None  # per worker process (None: leave torch's default)


class EvalError(RuntimeError):
    """An episode's graph failed (a node raised, or the graph could not be built); one line."""


def run_episode(plan: EvalPlan, job: EpisodeJob) -> EpisodeOutcome:
    """Run one seeded episode in a fresh graph; record it as `episode_<index>.h5` in `plan.record_dir`."""
    try:
        spec = plan.graph.set_params(plan.task_node, {"seed": job.seed, "episodes": 1})
        staging = None
        if plan.record_dir is not None:
            # Each episode records into its own staging dir (workers never race for a file number), with the
            # file number it will have in the final dir; the file is moved there once it is closed.
            staging = Path(plan.record_dir) / f".episode-{job.index:06d}"
            shutil.rmtree(staging, ignore_errors=True)
            spec, _ = with_recorder(spec, {"output_dir": str(staging), "progress": False, "first_index": job.index})
    except GraphError as e:
        raise EvalError(str(e)) from None
    sched = Scheduler(spec)
    result = sched.run()
    if result.failed_node:
        raise EvalError(f"seed {job.seed}: node {result.failed_node!r} failed: {result.error}")
    if not result.ok:
        raise EvalError(f"seed {job.seed}: {result.reason}")
    # The task node's report carries its results from any process group (the Franka twin's task runs in one).
    episodes = list(sched.reports.get(plan.task_node, {}).get("results", []))
    if len(episodes) != 1:
        raise EvalError(f"seed {job.seed}: expected one episode result from {plan.task_node!r}, got {len(episodes)}")
    r = episodes[0]
    recording = None
    if staging is not None:
        files = sorted(staging.glob("*.h5"))
        if files:
            dest = Path(plan.record_dir) / files[0].name
            os.replace(files[0], dest)
            recording = str(dest)
        shutil.rmtree(staging, ignore_errors=True)
    return EpisodeOutcome(
        job.index, int(r["seed"]), bool(r["success"]), str(r["outcome"]), float(r["duration_s"]), recording
    )


_PLAN: EvalPlan | None = None


def _init_worker(plan: EvalPlan) -> None:
    global _PLAN
    _PLAN = plan
    logging.basicConfig(level=logging.WARNING)
    from robotflow.policies.loading import keep_loaded_policies  # torch and LeRobot: only where policies run

    keep_loaded_policies()
    if plan.torch_threads:
        import torch  # torch only where a policy sets its threads

        torch.set_num_threads(plan.torch_threads)


def _work(job: EpisodeJob) -> EpisodeOutcome:
    assert _PLAN is not None
    return run_episode(_PLAN, job)


def run_episodes(plan: EvalPlan, jobs: Sequence[EpisodeJob], workers: int = 1, progress=None) -> list[EpisodeOutcome]:
    """Run `jobs` in `workers` spawned processes (1: in this process); outcomes in job order.

    `progress(outcome)` is called as each episode finishes (in completion order).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if plan.record_dir is not None:
        Path(plan.record_dir).mkdir(parents=True, exist_ok=True)
    out: list[EpisodeOutcome] = []
    if workers == 1 or len(jobs) <= 1:
        from robotflow.policies.loading import keep_loaded_policies  # torch and LeRobot: only where policies run

        if plan.torch_threads:
            import torch  # torch only where a policy sets its threads

            saved = torch.get_num_threads()
            torch.set_num_threads(plan.torch_threads)
        keep_loaded_policies()
        try:
            for job in jobs:
                out.append(run_episode(plan, job))
                if progress is not None:
                    progress(out[-1])
        finally:
            keep_loaded_policies(False)  # this process may go on to other work: free the policies
            if plan.torch_threads:
                torch.set_num_threads(saved)
    else:
        # spawn, not fork: the parent may hold torch/OpenMP and MuJoCo/EGL state that must not be copied.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(plan,)) as pool:
            for outcome in pool.imap_unordered(_work, jobs):
                out.append(outcome)
                if progress is not None:
                    progress(outcome)
    return sorted(out, key=lambda o: o.index)
