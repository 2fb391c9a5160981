"""`robotflow rollout`: run a trained policy in a graph for N seeded episodes, recording every one."""

from __future__ import annotations

import click

from robotflow.evaluation import RolloutOptions, list_run_checkpoints
from robotflow.evaluation import rollout as run_rollout
from robotflow.scripts.common import sets_option, user_errors


@click.command()
@click.option(
    "--checkpoints-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A training run directory (OUTPUT_DIR/RUN_NAME from `robotflow train`).",
)
@click.option(
    "--server",
    default=None,
    metavar="ws://HOST:PORT",
    help="Roll out a policy served over Protocol v1 (`robotflow serve`, OpenPI, GR00T) instead of a checkpoint.",
)
@click.option("--model", default=None, help="With --server: the model id (checkpoint step) to ask for.")
@click.option(
    "--token", default=None, envvar="ROBOTFLOW_TOKEN", help="With --server: bearer token (or ROBOTFLOW_TOKEN)."
)
@click.option("--checkpoint", "step", default=None, help="Checkpoint step to load (default: the latest).")
@click.option(
    "--codec",
    default=None,
    help="Codec of the policy node (default: the graph's). A checkpoint trained by plain lerobot-train whose dataset "
    "is not on this machine runs with it; a checkpoint with a stored codec must match it.",
)
@click.option("--list", "list_only", is_flag=True, help="List the run's checkpoints and exit.")
@click.option(
    "--graph",
    "graph_file",
    type=click.Path(dir_okay=False),
    default="graphs/sim_stack_cubes_policy.yaml",
    show_default=True,
    help="Graph with a policy.* node in place of the teleop node.",
)
@click.option("--episodes", type=int, default=10, show_default=True)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Record every rollout episode here (default: CHECKPOINTS_DIR/rollouts/<step>).",
)
@click.option("--summary", type=click.Path(dir_okay=False), default=None, help="Write the outcomes as JSON here.")
@click.option("--seed", type=int, default=None, help="Seed of the first episode (default: the graph's).")
@sets_option()
@click.option("--no-record", is_flag=True, help="Do not record the rollouts.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Episodes run in this many processes, each its own sim and policy; the per-seed results do not depend on it.",
)
@click.option(
    "--video-channel",
    default="front_camera/frame",
    show_default=True,
    help="Camera channel written as an mp4 beside each failed episode's recording ('' for none).",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="The on-robot path: the simulator paced to the wall clock, the policy inferring asynchronously (chunks "
    "on a worker thread, each tick acting on the action for now). Default: virtual time, inference in lock-step.",
)
def rollout(
    checkpoints_dir,
    server,
    model,
    token,
    step,
    codec,
    list_only,
    graph_file,
    episodes,
    output_dir,
    summary,
    seed,
    sets,
    no_record,
    workers,
    video_channel,
    realtime,
):
    """Roll out a policy checkpoint (or a served policy, --server) for N seeded episodes; print a success table."""
    if server is not None and list_only:
        raise click.UsageError("--server replaces --checkpoints-dir / --checkpoint / --list: give one or the other")
    if list_only and checkpoints_dir is not None:
        with user_errors():
            for s, where in list_run_checkpoints(checkpoints_dir):
                click.echo(f"{s:>10}  {where}")
        return
    opts = RolloutOptions(
        checkpoints_dir=checkpoints_dir,
        step=step,
        codec=codec,
        server=server,
        model=model,
        token=token,
        graph_file=graph_file,
        episodes=episodes,
        output_dir=output_dir,
        summary=summary,
        seed=seed,
        sets=tuple(sets),
        no_record=no_record,
        workers=workers,
        video_channel=video_channel,
        realtime=realtime,
    )
    with user_errors():
        run_rollout(opts, echo=click.echo)
