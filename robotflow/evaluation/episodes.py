"""Policy evaluation in simulation: seeded episodes in parallel workers, Wilson intervals, failure videos.

Every episode runs in a graph of its own (a fresh world, policy state and recorder), seeded with its
seed. So an episode's outcome depends on its seed and the checkpoint only, never on which episodes ran
before it in the same process: one worker or N give the same per-seed results (tested), and any failed
seed can be re-run alone. A worker is a spawned process that imports torch, LeRobot and MuJoCo once and
then runs its share of episodes one after another, each with one torch thread.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("robotflow.evaluation")

# Two-sided 95% normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n, which
    is where a policy's success rate usually sits.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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
    """What every worker needs to run an episode: the graph, its overrides and where to record."""

    graph_file: str
    sets: tuple[str, ...]  # --set overrides, the policy's checkpoint included
    task_node: str  # the node with `seed` and `episodes` params
    record_dir: str | None  # None: do not record
    torch_threads: int | None = None  # per worker process (None: leave torch's default)


class EvalError(RuntimeError):
    """An episode's graph failed (a node raised, or the graph could not be built); one line."""


def run_episode(plan: EvalPlan, job: EpisodeJob) -> EpisodeOutcome:
    """Run one seeded episode in a fresh graph; record it as `episode_<index>.h5` in `plan.record_dir`."""
    from robotflow.runtime.graph import GraphError, load_graph
    from robotflow.runtime.scheduler import Scheduler

    sets = (*plan.sets, f"{plan.task_node}.seed={job.seed}", f"{plan.task_node}.episodes=1")
    try:
        spec = load_graph(plan.graph_file, sets)
    except GraphError as e:
        raise EvalError(str(e)) from None
    staging = None
    if plan.record_dir is not None:
        import click

        from robotflow.scripts.record import with_recorder

        # Each episode records into its own staging dir (workers never race for a file number), with the
        # file number it will have in the final dir; the file is moved there once it is closed.
        staging = Path(plan.record_dir) / f".episode-{job.index:06d}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            spec, _ = with_recorder(
                spec, sets, {"output_dir": str(staging), "progress": False, "first_index": job.index}
            )
        except click.ClickException as e:
            raise EvalError(e.message) from None
    sched = Scheduler(spec)
    result = sched.run()
    if result.failed_node:
        raise EvalError(f"seed {job.seed}: node {result.failed_node!r} failed: {result.error}")
    if not result.ok:
        raise EvalError(f"seed {job.seed}: {result.reason}")
    episodes = [r for n in sched.nodes.values() if hasattr(n, "results") for r in n.results]
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
    if plan.torch_threads:
        import torch

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
        if plan.torch_threads:
            import torch

            saved = torch.get_num_threads()
            torch.set_num_threads(plan.torch_threads)
        try:
            for job in jobs:
                out.append(run_episode(plan, job))
                if progress is not None:
                    progress(out[-1])
        finally:
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


def format_table(outcomes: Sequence[EpisodeOutcome]) -> str:
    """The per-seed table and the success rate with its 95% Wilson interval."""
    lines = [f"{'episode':>7}  {'seed':>6}  {'outcome':<8}  {'duration s':>10}"]
    for o in outcomes:
        lines.append(f"{o.index:>7}  {o.seed:>6}  {o.outcome:<8}  {o.duration_s:>10.2f}")
    lines.append(summary_line(outcomes))
    return "\n".join(lines)


def summary_line(outcomes: Sequence[EpisodeOutcome]) -> str:
    n = len(outcomes)
    k = sum(o.success for o in outcomes)
    lo, hi = wilson_interval(k, n)
    rate = k / n if n else 0.0
    return f"success rate: {rate:.1%} ({k}/{n}), 95% Wilson interval {lo:.1%} - {hi:.1%}"


def write_failure_videos(
    outcomes: Sequence[EpisodeOutcome], channel: str = "front_camera/frame", fps: float | None = None
) -> list[Path]:
    """An mp4 of `channel` beside each failed episode's recording (`episode_000003.front_camera.mp4`).

    Episodes recorded without that channel (a camera-less low-dim graph) get none. The frame rate is the
    channel's measured rate unless `fps` is given.
    """
    from robotflow.recording.reader import EpisodeFile

    written: list[Path] = []
    for o in outcomes:
        if o.success or not o.recording:
            continue
        path = Path(o.recording)
        with EpisodeFile(path) as ep:
            if not ep.has_channel(channel):
                continue
            ts = ep.timestamps(channel)
            if len(ts) == 0:
                continue
            rate = fps or ((len(ts) - 1) / ((ts[-1] - ts[0]) * 1e-9) if len(ts) > 1 and ts[-1] > ts[0] else 15.0)
            dest = path.with_name(f"{path.stem}.{channel.split('/')[0]}.mp4")
            _write_mp4(dest, ep, channel, len(ts), rate)
            written.append(dest)
    return written


def _write_mp4(dest: Path, ep, channel: str, n: int, fps: float) -> None:
    from fractions import Fraction

    import av

    h, w, _ = ep.image_shape(channel)
    tmp = dest.with_suffix(".mp4.partial")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for start in range(0, n, 64):
            for img in ep.images(channel, list(range(start, min(n, start + 64)))):
                frame = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width], format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, dest)
