"""`robotflow rollout`: run a trained policy in a graph for N seeded episodes, recording every one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from robotflow.runtime.graph import GraphError, load_graph
from robotflow.storage import Cache, StorageError, fetch_checkpoint, is_remote, join, remote_checkpoints


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
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE", help="Override a node param (repeatable).")
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
    if server is not None:
        if checkpoints_dir is not None or step is not None or list_only:
            raise click.UsageError("--server replaces --checkpoints-dir / --checkpoint / --list: give one or the other")
        return _rollout_remote(
            server,
            model,
            token,
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
        )
    if checkpoints_dir is None:
        raise click.UsageError("give --checkpoints-dir (a training run) or --server ws://HOST:PORT")
    from robotflow.codecs import CodecError, CodecMismatchError, checkpoint_codec
    from robotflow.policies.checkpoints import CheckpointError, list_checkpoints, resolve_checkpoint
    from robotflow.policies.nodes import LeRobotNodeParams
    from robotflow.scripts.record import upload_episodes

    if is_remote(checkpoints_dir):
        # A run in object storage: list it there, download only the checkpoint that is rolled out.
        try:
            if list_only:
                remote = remote_checkpoints(checkpoints_dir)
                if not remote:
                    raise click.ClickException(f"no checkpoints in {checkpoints_dir}")
                for s, url in remote:
                    click.echo(f"{s:>10}  {url}")
                return
            model_dir = fetch_checkpoint(checkpoints_dir, step)
        except StorageError as e:
            raise click.ClickException(str(e)) from None
        run_dir = None
    else:
        run_dir = Path(checkpoints_dir)
        try:
            checkpoints = list_checkpoints(run_dir)
        except (CheckpointError, FileNotFoundError) as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
        if list_only:
            if not checkpoints:
                raise click.ClickException(f"no checkpoints in {run_dir}")
            for c in checkpoints:
                click.echo(f"{c.step:>10}  {c.path}")
            return
        try:
            model_dir = resolve_checkpoint(run_dir, step)
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
    step_name = model_dir.parent.name

    try:
        spec = load_graph(graph_file, tuple(sets))
    except GraphError as e:
        raise click.ClickException(str(e)) from None
    policies = [n for n in spec.nodes if isinstance(n.params, LeRobotNodeParams)]
    if not policies:
        raise click.ClickException(f"{graph_file} has no policy.act/policy.lerobot node to load the checkpoint into")
    pol = policies[0]
    if codec is not None:  # the graph's policy node runs with the named codec
        sets = (*sets, f"{pol.name}.codec={codec}")
        try:
            pol = next(n for n in load_graph(graph_file, sets).nodes if n.name == pol.name)
        except GraphError as e:
            raise click.ClickException(str(e)) from None
    # The same check the node makes at setup, here before any node starts.
    try:
        found = checkpoint_codec(model_dir, pol.params.codec, cameras=pol.params.camera_names())
    except CodecMismatchError as e:
        raise click.ClickException(f"{e}; use --codec or --set {pol.name}.cameras=[...] to match") from None
    except CodecError as e:
        raise click.ClickException(str(e)) from None
    extra = [f"{pol.name}.checkpoint={json.dumps(str(model_dir))}"]
    tasks = [n for n in spec.nodes if "episodes" in getattr(n.params, "__dataclass_fields__", {})]
    if not tasks:
        raise click.ClickException(f"{graph_file} has no task node with an `episodes` param")
    extra.append(f"{tasks[0].name}.episodes={episodes}")
    if seed is not None:
        extra.append(f"{tasks[0].name}.seed={seed}")
    sets = tuple(sets) + tuple(extra)
    try:
        spec = load_graph(graph_file, sets)
    except GraphError as e:
        raise click.ClickException(str(e)) from None
    rec_url = None  # set when the rollouts go to object storage
    if output_dir:
        rec_dir, rec_url = Path(output_dir), (output_dir if is_remote(output_dir) else None)
    elif run_dir is not None:
        rec_dir = run_dir / "rollouts" / step_name
    else:
        rec_url = join(checkpoints_dir, "rollouts", step_name)
    if rec_url is not None:
        rec_dir = Cache().output_dir(rec_url)  # recorded locally, uploaded once the episodes are closed
    click.echo(
        f"rolling out {model_dir} (codec {found.name} from {found.source}) for {episodes} episodes"
        + (f" in {workers} worker processes" if workers > 1 else "")
        + ("" if no_record else f", recording to {rec_url or rec_dir}")
    )
    outcomes = _evaluate(
        graph_file, sets, tasks[0], episodes, seed, None if no_record else rec_dir, workers, video_channel, realtime
    )
    if rec_url is not None and not no_record:
        upload_episodes(rec_dir, rec_url)
    if summary:
        _write_eval_summary(
            summary,
            outcomes,
            workers,
            checkpoint=str(model_dir),
            step=step_name,
            codec=pol.params.codec,
            graph=str(graph_file),
            recorded_to=None if no_record else str(rec_url or rec_dir),
            realtime=realtime,
        )


def _evaluate(graph_file, sets, task_node, episodes, seed, rec_dir, workers, video_channel, realtime=False) -> list:
    """Each seeded episode in a graph of its own (robotflow.evaluation), in `workers` processes; prints the table."""
    from robotflow.evaluation import EpisodeJob, EvalError, EvalPlan, format_table, run_episodes, write_failure_videos

    if realtime:
        sets = (*sets, *_realtime_sets(graph_file, sets))

    first = task_node.params.seed if seed is None else seed
    jobs = [EpisodeJob(i, first + i) for i in range(episodes)]
    plan = EvalPlan(
        str(graph_file),
        tuple(s for s in sets if not s.startswith((f"{task_node.name}.episodes=", f"{task_node.name}.seed="))),
        task_node.name,
        None if rec_dir is None else str(rec_dir),
        # Workers share the cores: one torch thread each (more only oversubscribes them).
        torch_threads=1 if workers > 1 else None,
    )
    done = []

    def progress(o) -> None:
        done.append(o)
        click.echo(f"  [{len(done)}/{episodes}] seed {o.seed}: {o.outcome} after {o.duration_s:.1f} s", err=True)

    try:
        outcomes = run_episodes(plan, jobs, workers, progress)
    except EvalError as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_table(outcomes))
    if rec_dir is not None and video_channel:
        for path in write_failure_videos(outcomes, video_channel):
            click.echo(f"failed episode video: {path}")
    return outcomes


def _realtime_sets(graph_file, sets) -> tuple[str, ...]:
    """--realtime: every node with a `realtime` param (sim.world) paced to the wall clock, every policy node
    with `async_inference` inferring on its worker thread: the timing the robot sees."""
    try:
        spec = load_graph(graph_file, tuple(sets))
    except GraphError as e:
        raise click.ClickException(str(e)) from None
    out = []
    for n in spec.nodes:
        fields = getattr(n.params, "__dataclass_fields__", {})
        out += [f"{n.name}.{f}=true" for f in ("realtime", "async_inference") if f in fields]
    if not any(s.endswith(".realtime=true") for s in out):
        raise click.ClickException(f"--realtime: no node of {graph_file} has a `realtime` param (a sim.world)")
    return tuple(out)


def _write_eval_summary(path, outcomes, workers, **extra) -> None:
    from robotflow.evaluation import wilson_interval
    from robotflow.scripts.cli import write_summary

    k = sum(o.success for o in outcomes)
    lo, hi = wilson_interval(k, len(outcomes))
    write_summary(
        path,
        [o.as_dict() for o in outcomes],
        successes=k,
        wilson_95=[round(lo, 4), round(hi, 4)],
        workers=workers,
        outcomes=[o.as_dict() for o in outcomes],
        **extra,
    )


def _rollout_remote(
    server,
    model,
    token,
    graph_file,
    episodes,
    output_dir,
    summary,
    seed,
    sets,
    no_record,
    workers,
    video_channel,
    realtime=False,
):
    """The graph's policy node becomes `policy.remote` on the same ports, pointed at the server; the episodes
    then run exactly as a checkpoint's do (each seed in a graph of its own)."""
    import tempfile

    import yaml

    from robotflow.serving.client import session_url

    try:
        session_url(server)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--server") from None
    if output_dir is None and not no_record:
        raise click.UsageError("with --server, give --output-dir for the recordings (or --no-record)")
    try:
        spec = load_graph(graph_file, tuple(sets))
    except GraphError as e:
        raise click.ClickException(str(e)) from None
    policies = [n for n in spec.nodes if n.type_name.startswith("policy.")]
    if not policies:
        raise click.ClickException(f"{graph_file} has no policy.* node to replace with policy.remote")
    pol = policies[0]
    tasks = [n for n in spec.nodes if "episodes" in getattr(n.params, "__dataclass_fields__", {})]
    if not tasks:
        raise click.ClickException(f"{graph_file} has no task node with an `episodes` param")
    doc = yaml.safe_load(spec.text)
    node = next(n for n in doc["nodes"] if n.get("name") == pol.name)
    node["type"] = "policy.remote"
    node["params"] = {"server": server, "codec": pol.params.codec, "model": model, "token": token}
    if getattr(pol.params, "cameras", None) is not None:
        node["params"]["cameras"] = list(pol.params.cameras)
    # Overrides of the policy node were for the local policy's params; the task/camera ones still apply.
    sets = tuple(s for s in sets if not s.startswith(f"{pol.name}.") or s.startswith(f"{pol.name}.rate="))
    click.echo(
        f"rolling out the policy served at {server} (codec {pol.params.codec}) for {episodes} episodes"
        + (f" in {workers} worker processes" if workers > 1 else "")
        + ("" if no_record else f", recording to {output_dir}")
    )
    with tempfile.TemporaryDirectory(prefix="robotflow-rollout-") as tmp:
        # Every episode's graph is loaded from a file (worker processes too): the remote variant of the graph.
        remote_graph = Path(tmp) / f"{Path(graph_file).stem}.remote.yaml"
        remote_graph.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            task = load_graph(remote_graph, sets).node(tasks[0].name)
        except GraphError as e:
            raise click.ClickException(str(e)) from None
        rec = None if no_record else Path(output_dir)
        outcomes = _evaluate(remote_graph, sets, task, episodes, seed, rec, workers, video_channel, realtime)
    if summary:
        _write_eval_summary(
            summary,
            outcomes,
            workers,
            server=server,
            model=model,
            codec=pol.params.codec,
            graph=str(graph_file),
            recorded_to=None if no_record else str(output_dir),
            realtime=realtime,
        )
