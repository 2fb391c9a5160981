"""`robotflow rollout`: run a trained policy in a graph for N seeded episodes, recording every one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from robotflow.policies.checkpoints import CheckpointError, remote_checkpoints, resolve_checkpoint
from robotflow.runtime.graph import GraphError, GraphSpec, NodeSpec, load_graph
from robotflow.storage import Cache, StorageError, is_remote, join


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
    opts = RolloutOptions(
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
    if server is not None:
        if checkpoints_dir is not None or step is not None or list_only:
            raise click.UsageError("--server replaces --checkpoints-dir / --checkpoint / --list: give one or the other")
        return _rollout_remote(opts, server, model, token)
    if checkpoints_dir is None:
        raise click.UsageError("give --checkpoints-dir (a training run) or --server ws://HOST:PORT")
    return _rollout_checkpoint(opts, checkpoints_dir, step, codec, list_only)


@dataclass(frozen=True)
class RolloutOptions:
    """The options a checkpoint rollout and a --server rollout share: built once by the click command, so
    that each is spelled once whichever policy source the episodes run against."""

    graph_file: str
    episodes: int
    output_dir: str | None
    summary: str | None
    seed: int | None  # None: the task node's own seed
    sets: tuple[str, ...]
    no_record: bool
    workers: int
    video_channel: str  # '' for no failure videos
    realtime: bool


def _rollout_checkpoint(
    opts: RolloutOptions, checkpoints_dir: str, step: str | None, codec: str | None, list_only: bool
) -> None:
    """A checkpoint of a training run (local or in object storage) loaded into the graph's policy node."""
    from robotflow.codecs import CodecError, CodecMismatchError, checkpoint_codec
    from robotflow.policies.checkpoints import list_checkpoints
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
            model_dir = resolve_checkpoint(checkpoints_dir, step).path
        except (CheckpointError, StorageError) as e:
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
            model_dir = resolve_checkpoint(run_dir, step).path
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            raise click.ClickException(str(e).splitlines()[0]) from None
    step_name = model_dir.parent.name

    graph_file, sets = opts.graph_file, opts.sets
    spec = _load_graph(graph_file, sets)
    policies = [n for n in spec.nodes if isinstance(n.params, LeRobotNodeParams)]
    if not policies:
        raise click.ClickException(f"{graph_file} has no policy.act/policy.lerobot node to load the checkpoint into")
    pol = policies[0]
    if codec is not None:  # the graph's policy node runs with the named codec
        sets = (*sets, f"{pol.name}.codec={codec}")
        pol = _load_graph(graph_file, sets).node(pol.name)
    # The same check the node makes at setup, here before any node starts.
    try:
        found = checkpoint_codec(model_dir, pol.params.codec, cameras=pol.params.camera_names())
    except CodecMismatchError as e:
        raise click.ClickException(f"{e}; use --codec or --set {pol.name}.cameras=[...] to match") from None
    except CodecError as e:
        raise click.ClickException(str(e)) from None
    task = _task_node(spec, graph_file)
    extra = [f"{pol.name}.checkpoint={json.dumps(str(model_dir))}", f"{task.name}.episodes={opts.episodes}"]
    if opts.seed is not None:
        extra.append(f"{task.name}.seed={opts.seed}")
    sets = (*sets, *extra)
    _load_graph(graph_file, sets)  # the overrides validated before any episode starts
    rec_url = None  # set when the rollouts go to object storage
    if opts.output_dir:
        rec_dir, rec_url = Path(opts.output_dir), (opts.output_dir if is_remote(opts.output_dir) else None)
    elif run_dir is not None:
        rec_dir = run_dir / "rollouts" / step_name
    else:
        rec_url = join(checkpoints_dir, "rollouts", step_name)
    if rec_url is not None:
        rec_dir = Cache().output_dir(rec_url)  # recorded locally, uploaded once the episodes are closed
    recorded_to = None if opts.no_record else str(rec_url or rec_dir)
    _announce(opts, f"{model_dir} (codec {found.name} from {found.source})", recorded_to)
    outcomes = _evaluate(opts, graph_file, sets, task, None if opts.no_record else rec_dir)
    if rec_url is not None and not opts.no_record:
        upload_episodes(rec_dir, rec_url)
    _write_eval_summary(
        opts,
        outcomes,
        {"checkpoint": str(model_dir), "step": step_name, "codec": pol.params.codec},
        recorded_to,
    )


def _load_graph(graph_file: str | Path, sets: tuple[str, ...]) -> GraphSpec:
    """load_graph, its errors the command's one-line error."""
    try:
        return load_graph(graph_file, sets)
    except GraphError as e:
        raise click.ClickException(str(e)) from None


def _task_node(spec: GraphSpec, graph_file: str | Path) -> NodeSpec:
    """The node whose `episodes` param the rollout sets: the episodes run as that node counts them."""
    tasks = [n for n in spec.nodes if "episodes" in getattr(n.params, "__dataclass_fields__", {})]
    if not tasks:
        raise click.ClickException(f"{graph_file} has no task node with an `episodes` param")
    return tasks[0]


def _announce(opts: RolloutOptions, what: str, recorded_to: str | None) -> None:
    click.echo(
        f"rolling out {what} for {opts.episodes} episodes"
        + (f" in {opts.workers} worker processes" if opts.workers > 1 else "")
        + ("" if recorded_to is None else f", recording to {recorded_to}")
    )


def _evaluate(
    opts: RolloutOptions, graph_file: str | Path, sets: tuple[str, ...], task_node: NodeSpec, rec_dir: Path | None
) -> list:
    """Each seeded episode in a graph of its own (robotflow.evaluation), in `opts.workers` processes; prints the
    table. `graph_file` and `sets` are the graph as run (the checkpoint's overrides added, or the remote variant
    of opts.graph_file), not opts' own."""
    from robotflow.evaluation import EpisodeJob, EvalError, EvalPlan, format_table, run_episodes, write_failure_videos

    if opts.realtime:
        sets = (*sets, *_realtime_sets(graph_file, sets))

    first = task_node.params.seed if opts.seed is None else opts.seed
    jobs = [EpisodeJob(i, first + i) for i in range(opts.episodes)]
    plan = EvalPlan(
        str(graph_file),
        tuple(s for s in sets if not s.startswith((f"{task_node.name}.episodes=", f"{task_node.name}.seed="))),
        task_node.name,
        None if rec_dir is None else str(rec_dir),
        # Workers share the cores: one torch thread each (more only oversubscribes them).
        torch_threads=1 if opts.workers > 1 else None,
    )
    done = []

    def progress(o) -> None:
        done.append(o)
        click.echo(f"  [{len(done)}/{opts.episodes}] seed {o.seed}: {o.outcome} after {o.duration_s:.1f} s", err=True)

    try:
        outcomes = run_episodes(plan, jobs, opts.workers, progress)
    except EvalError as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_table(outcomes))
    if rec_dir is not None and opts.video_channel:
        for path in write_failure_videos(outcomes, opts.video_channel):
            click.echo(f"failed episode video: {path}")
    return outcomes


def _realtime_sets(graph_file, sets) -> tuple[str, ...]:
    """--realtime: every node with a `realtime` param (sim.world) paced to the wall clock, every policy node
    with `async_inference` inferring on its worker thread: the timing the robot sees."""
    spec = _load_graph(graph_file, tuple(sets))
    out = []
    for n in spec.nodes:
        fields = getattr(n.params, "__dataclass_fields__", {})
        out += [f"{n.name}.{f}=true" for f in ("realtime", "async_inference") if f in fields]
    if not any(s.endswith(".realtime=true") for s in out):
        raise click.ClickException(f"--realtime: no node of {graph_file} has a `realtime` param (a sim.world)")
    return tuple(out)


def _write_eval_summary(
    opts: RolloutOptions, outcomes: list, source: dict[str, str | None], recorded_to: str | None
) -> None:
    """--summary: the outcomes, the policy's `source` (checkpoint or server; its keys go in as given) and the
    options they ran under. Nothing without --summary."""
    if not opts.summary:
        return
    from robotflow.evaluation import wilson_interval
    from robotflow.scripts.cli import write_summary

    k = sum(o.success for o in outcomes)
    lo, hi = wilson_interval(k, len(outcomes))
    write_summary(
        opts.summary,
        [o.as_dict() for o in outcomes],
        successes=k,
        wilson_95=[round(lo, 4), round(hi, 4)],
        workers=opts.workers,
        outcomes=[o.as_dict() for o in outcomes],
        **source,
        graph=str(opts.graph_file),
        recorded_to=recorded_to,
        realtime=opts.realtime,
    )


def _rollout_remote(opts: RolloutOptions, server: str, model: str | None, token: str | None) -> None:
    """The graph's policy node becomes `policy.remote` on the same ports, pointed at the server; the episodes
    then run exactly as a checkpoint's do (each seed in a graph of its own)."""
    import tempfile

    import yaml

    from robotflow.wire.client import session_url

    try:
        session_url(server)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--server") from None
    if opts.output_dir is None and not opts.no_record:
        raise click.UsageError("with --server, give --output-dir for the recordings (or --no-record)")
    spec = _load_graph(opts.graph_file, opts.sets)
    policies = [n for n in spec.nodes if n.type_name.startswith("policy.")]
    if not policies:
        raise click.ClickException(f"{opts.graph_file} has no policy.* node to replace with policy.remote")
    pol = policies[0]
    task_name = _task_node(spec, opts.graph_file).name
    doc = yaml.safe_load(spec.text)
    node = next(n for n in doc["nodes"] if n.get("name") == pol.name)
    node["type"] = "policy.remote"
    node["params"] = {"server": server, "codec": pol.params.codec, "model": model, "token": token}
    if getattr(pol.params, "cameras", None) is not None:
        node["params"]["cameras"] = list(pol.params.cameras)
    # Overrides of the policy node were for the local policy's params; the task/camera ones still apply.
    sets = tuple(s for s in opts.sets if not s.startswith(f"{pol.name}.") or s.startswith(f"{pol.name}.rate="))
    recorded_to = None if opts.no_record else str(opts.output_dir)
    _announce(opts, f"the policy served at {server} (codec {pol.params.codec})", recorded_to)
    with tempfile.TemporaryDirectory(prefix="robotflow-rollout-") as tmp:
        # Every episode's graph is loaded from a file (worker processes too): the remote variant of the graph.
        remote_graph = Path(tmp) / f"{Path(opts.graph_file).stem}.remote.yaml"
        remote_graph.write_text(yaml.safe_dump(doc, sort_keys=False))
        task = _load_graph(remote_graph, sets).node(task_name)
        rec = None if opts.no_record else Path(opts.output_dir)
        outcomes = _evaluate(opts, remote_graph, sets, task, rec)
    _write_eval_summary(opts, outcomes, {"server": server, "model": model, "codec": pol.params.codec}, recorded_to)
