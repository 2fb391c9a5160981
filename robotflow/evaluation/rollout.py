"""Rollouts: a trained policy (a checkpoint of a training run, or a policy served over the wire protocol) in a
graph for N seeded episodes, each recorded, with a per-seed table and a JSON summary. `robotflow rollout` is
`rollout(RolloutOptions(...))`; it is as callable from Python."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robotflow.codecs import CodecError, CodecMismatchError, checkpoint_codec
from robotflow.policies.checkpoints import CheckpointError, list_checkpoints, remote_checkpoints, resolve_checkpoint
from robotflow.policies.nodes import LeRobotNodeParams
from robotflow.recording.metrics import format_metrics
from robotflow.recording.session import upload_episodes
from robotflow.recording.summary import recorded_metrics, write_outcomes
from robotflow.runtime.graph import SET_OPTION, GraphSpec, NodeDef, NodeSpec, load_graph
from robotflow.runtime.params import check_options, in_range, non_negative, path_problem, path_writable
from robotflow.storage import Cache, StorageError, is_remote, join
from robotflow.wire.client import session_url

from .episodes import EpisodeJob, EpisodeOutcome, EvalError, EvalPlan, run_episodes
from .scoring import format_table, wilson_interval
from .videos import write_failure_videos

# echo(text, err=False): where the rollout's lines go (click.echo's signature; stderr for progress)
Echo = Callable[..., None]


class RolloutUsageError(EvalError):
    """Options that do not go together (the CLI shows it as a usage error)."""


@dataclass(frozen=True)
class RolloutOptions:
    """A rollout: the policy source (`checkpoints_dir` [+ `step`, `codec`] or `server` [+ `model`, `token`]) and
    how its episodes run and are kept. The `robotflow rollout` options are generated from the fields (metadata:
    robotflow.scripts.options)."""

    checkpoints_dir: str | None = field(
        default=None,
        metadata={
            "metavar": "DIRECTORY",
            "help": "A training run directory (OUTPUT_DIR/RUN_NAME from `robotflow train`).",
        },
    )
    server: str | None = field(
        default=None,
        metadata={
            "metavar": "ws://HOST:PORT",
            "help": "Roll out a policy served over Protocol v1 (`robotflow serve`, OpenPI, GR00T) instead of a "
            "checkpoint.",
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "With --server: the model id (checkpoint step) to ask for."}
    )
    token: str | None = field(
        default=None,
        metadata={"envvar": "ROBOTFLOW_TOKEN", "help": "With --server: bearer token (or ROBOTFLOW_TOKEN)."},
    )
    step: str | None = field(
        default=None, metadata={"flag": "--checkpoint", "help": "Checkpoint step to load (default: the latest)."}
    )
    codec: str | None = field(
        default=None,
        metadata={
            "help": "Codec of the policy node (default: the graph's). A checkpoint trained by plain lerobot-train "
            "whose dataset is not on this machine runs with it; a checkpoint with a stored codec must match it."
        },
    )
    graph_file: str = field(
        default="graphs/sim_stack_cubes_policy.yaml",
        metadata={
            "flag": "--graph",
            "metavar": "FILE",
            "help": "Graph with a policy.* node in place of the teleop node.",
        },
    )
    episodes: int = in_range(1, None, 10)
    output_dir: str | None = path_writable(
        None,
        metadata={"metavar": "DIRECTORY"},
        help="Record every rollout episode here (default: CHECKPOINTS_DIR/rollouts/<step>).",
    )  # required with `server`
    summary: str | None = field(
        default=None,
        metadata={"metavar": "FILE", "path": "writable_file", "help": "Write the outcomes as JSON here."},
    )
    seed: int | None = non_negative(None, help="Seed of the first episode (default: the graph's).")
    sets: tuple[str, ...] = field(default=(), metadata=SET_OPTION)
    no_record: bool = field(default=False, metadata={"help": "Do not record the rollouts."})
    workers: int = in_range(
        1,
        64,
        1,
        help="Episodes run in this many processes, each its own sim and policy; the per-seed results do not "
        "depend on it.",
    )
    video_channel: str = field(
        default="front_camera/frame",
        metadata={"help": "Camera channel written as an mp4 beside each failed episode's recording ('' for none)."},
    )
    realtime: bool = field(
        default=False,
        metadata={
            "help": "The on-robot path: the simulator paced to the wall clock, the policy inferring asynchronously "
            "(chunks on a worker thread, each tick acting on the action for now). Default: virtual time, inference "
            "in lock-step."
        },
    )


def _print(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


def list_run_checkpoints(checkpoints_dir: str) -> list[tuple[int, str]]:
    """(step, path or URL) of each checkpoint of a training run, oldest first. Raises EvalError."""
    try:
        if is_remote(checkpoints_dir):
            found = remote_checkpoints(checkpoints_dir)
        else:
            found = [(c.step, str(c.path)) for c in list_checkpoints(Path(checkpoints_dir))]
    except StorageError as e:
        raise EvalError(str(e)) from None
    except (CheckpointError, FileNotFoundError) as e:
        raise EvalError(str(e).splitlines()[0]) from None
    if not found:
        raise EvalError(f"no checkpoints in {checkpoints_dir}")
    return found


def rollout(opts: RolloutOptions, echo: Echo = _print) -> list[EpisodeOutcome]:
    """Run the rollout; the per-seed outcomes. Raises EvalError (RolloutUsageError), GraphError."""
    check_options(opts, RolloutUsageError)
    if opts.server is not None:
        if opts.checkpoints_dir is not None or opts.step is not None:
            raise RolloutUsageError(
                "--server replaces --checkpoints-dir / --checkpoint / --list: give one or the other"
            )
        return _rollout_remote(opts, echo)
    if opts.checkpoints_dir is None:
        raise RolloutUsageError("give --checkpoints-dir (a training run) or --server ws://HOST:PORT")
    return _rollout_checkpoint(opts, echo)


def _resolve_model(checkpoints_dir: str, step: str | None) -> Path:
    """The pretrained_model dir of the checkpoint rolled out; a run in object storage downloads only that one."""
    try:
        return resolve_checkpoint(checkpoints_dir, step).path
    except StorageError as e:
        raise EvalError(str(e)) from None
    except (CheckpointError, ValueError) as e:
        raise EvalError(str(e).splitlines()[0]) from None


def _rollout_checkpoint(opts: RolloutOptions, echo: Echo) -> list[EpisodeOutcome]:
    """A checkpoint of a training run (local or in object storage) loaded into the graph's policy node."""
    model_dir = _resolve_model(opts.checkpoints_dir, opts.step)
    step_name = model_dir.parent.name
    spec = load_graph(opts.graph_file, opts.sets)
    policies = [n for n in spec.nodes if isinstance(n.params, LeRobotNodeParams)]
    if not policies:
        raise EvalError(f"{opts.graph_file} has no policy.act/policy.lerobot node to load the checkpoint into")
    pol = policies[0]
    if opts.codec is not None:  # the graph's policy node runs with the named codec
        spec = spec.set_params(pol.name, {"codec": opts.codec})
        pol = spec.node(pol.name)
    # The same check the node makes at setup, here before any node starts.
    try:
        found = checkpoint_codec(model_dir, pol.params.codec, cameras=pol.params.camera_names())
    except CodecMismatchError as e:
        raise EvalError(f"{e}; use --codec or --set {pol.name}.cameras=[...] to match") from None
    except CodecError as e:
        raise EvalError(str(e)) from None
    spec = spec.set_params(pol.name, {"checkpoint": str(model_dir)})
    task = _task_node(spec)
    rec_dir, rec_url = _recording_dir(opts, step_name)
    recorded_to = None if opts.no_record else str(rec_url or rec_dir)
    _announce(opts, f"{model_dir} (codec {found.name} from {found.source})", recorded_to, echo)
    outcomes = _evaluate(opts, spec, task, None if opts.no_record else rec_dir, echo)
    if rec_url is not None and not opts.no_record:
        up = upload_episodes(rec_dir, rec_url)
        echo(up.message(), err=not up.ok)
    source = {"checkpoint": str(model_dir), "step": step_name, "codec": pol.params.codec}
    _write_summary(opts, outcomes, source, recorded_to)
    return outcomes


def _recording_dir(opts: RolloutOptions, step_name: str) -> tuple[Path, str | None]:
    """Where a checkpoint's rollouts are recorded (local dir) and the URL they go to when in object storage."""
    rec_url = None
    if opts.output_dir:
        rec_dir, rec_url = Path(opts.output_dir), (opts.output_dir if is_remote(opts.output_dir) else None)
    elif not is_remote(opts.checkpoints_dir):
        rec_dir = Path(opts.checkpoints_dir) / "rollouts" / step_name
    else:
        rec_url = join(opts.checkpoints_dir, "rollouts", step_name)
    if rec_url is not None:
        rec_dir = Cache().output_dir(rec_url)  # recorded locally, uploaded once the episodes are closed
    problem = None if opts.no_record else path_problem(rec_dir, "writable_dir")
    if problem:
        raise EvalError(f"cannot record the rollouts: {problem} (--output-dir, or --no-record)")
    return rec_dir, rec_url


def _task_node(spec: GraphSpec) -> NodeSpec:
    """The node whose `episodes` param the rollout sets: the episodes run as that node counts them."""
    tasks = [n for n in spec.nodes if n.has_param("episodes")]
    if not tasks:
        raise EvalError(f"{spec.path} has no task node with an `episodes` param")
    return tasks[0]


def _announce(opts: RolloutOptions, what: str, recorded_to: str | None, echo: Echo) -> None:
    echo(
        f"rolling out {what} for {opts.episodes} episodes"
        + (f" in {opts.workers} worker processes" if opts.workers > 1 else "")
        + ("" if recorded_to is None else f", recording to {recorded_to}")
    )


def with_realtime(spec: GraphSpec) -> GraphSpec:
    """--realtime: every node with a `realtime` param (sim.world) paced to the wall clock, every policy node
    with `async_inference` inferring on its worker thread: the timing the robot sees."""
    if not any(n.has_param("realtime") for n in spec.nodes):
        raise EvalError(f"--realtime: no node of {spec.path} has a `realtime` param (a sim.world)")
    for n in spec.nodes:
        flags = {f: True for f in ("realtime", "async_inference") if n.has_param(f)}
        if flags:
            spec = spec.set_params(n.name, flags)
    return spec


def _evaluate(
    opts: RolloutOptions, spec: GraphSpec, task_node: NodeSpec, rec_dir: Path | None, echo: Echo
) -> list[EpisodeOutcome]:
    """Each seeded episode in a graph of its own (episodes.run_episodes), in `opts.workers` processes; echoes
    the table. `spec` is the graph as run (the checkpoint set, or the policy node served remotely)."""
    if opts.realtime:
        spec = with_realtime(spec)
    first = task_node.params.seed if opts.seed is None else opts.seed
    jobs = [EpisodeJob(i, first + i) for i in range(opts.episodes)]
    plan = EvalPlan(
        spec,
        task_node.name,
        None if rec_dir is None else str(rec_dir),
        # Workers share the cores: one torch thread each (more only oversubscribes them).
        torch_threads=1 if opts.workers > 1 else None,
    )
    done = []

    def progress(o: EpisodeOutcome) -> None:
        done.append(o)
        echo(f"  [{len(done)}/{opts.episodes}] seed {o.seed}: {o.outcome} after {o.duration_s:.1f} s", err=True)

    outcomes = run_episodes(plan, jobs, opts.workers, progress)
    echo(format_table(outcomes))
    metrics = _recorded(outcomes)
    for line in format_metrics(metrics, with_outcome=False) if metrics else ():
        echo(line)
    if rec_dir is not None and opts.video_channel:
        for path in write_failure_videos(outcomes, opts.video_channel):
            echo(f"failed episode video: {path}")
    return outcomes


def _recorded(outcomes: list[EpisodeOutcome]) -> dict | None:
    """What the recorded episodes say beyond the scorer's outcome (operator labels, interventions and time under
    human control from an arbiter's control channel, faults); None when nothing was recorded."""
    paths = [o.recording for o in outcomes if o.recording]
    return recorded_metrics(paths) if paths else None


def _write_summary(
    opts: RolloutOptions, outcomes: list[EpisodeOutcome], source: dict[str, str | None], recorded_to: str | None
) -> None:
    """The outcomes, the policy's `source` (checkpoint or server; its keys go in as given) and the options they
    ran under, as JSON in `opts.summary`. Nothing without one."""
    if not opts.summary:
        return
    k = sum(o.success for o in outcomes)
    lo, hi = wilson_interval(k, len(outcomes))
    extra = {
        "successes": k,
        "wilson_95": [round(lo, 4), round(hi, 4)],
        "workers": opts.workers,
        "outcomes": [o.as_dict() for o in outcomes],
        **source,
        "graph": str(opts.graph_file),
        "recorded_to": recorded_to,
        "realtime": opts.realtime,
        "recordings": _recorded(outcomes),
    }
    write_outcomes(opts.summary, [o.as_dict() for o in outcomes], extra)


def _rollout_remote(opts: RolloutOptions, echo: Echo) -> list[EpisodeOutcome]:
    """The graph's policy node becomes `policy.remote` on the same ports, pointed at the server; the episodes
    then run exactly as a checkpoint's do (each seed in a graph of its own)."""
    try:
        session_url(opts.server)
    except ValueError as e:
        raise RolloutUsageError(f"Invalid value for '--server': {e}") from None
    if opts.output_dir is None and not opts.no_record:
        raise RolloutUsageError("with --server, give --output-dir for the recordings (or --no-record)")
    spec = load_graph(opts.graph_file, opts.sets)
    policies = [n for n in spec.nodes if n.type_name.startswith("policy.")]
    if not policies:
        raise EvalError(f"{opts.graph_file} has no policy.* node to replace with policy.remote")
    pol = policies[0]
    params = {"server": opts.server, "codec": pol.params.codec, "model": opts.model, "token": opts.token}
    if getattr(pol.params, "cameras", None) is not None:
        params["cameras"] = list(pol.params.cameras)
    # --set items of the policy node were for the local policy's params (its rate stays); the task/camera ones
    # still apply, and the node keeps its wiring.
    remote = NodeDef.of(pol)
    spec = spec.replace_node(
        NodeDef(
            pol.name,
            "policy.remote",
            params,
            remote.rate,
            remote.trigger,
            remote.inputs,
            remote.process,
            remote.priority,
        )
    )
    recorded_to = None if opts.no_record else str(opts.output_dir)
    _announce(opts, f"the policy served at {opts.server} (codec {pol.params.codec})", recorded_to, echo)
    rec = None if opts.no_record else Path(opts.output_dir)
    outcomes = _evaluate(opts, spec, _task_node(spec), rec, echo)
    source = {"server": opts.server, "model": opts.model, "codec": pol.params.codec}
    _write_summary(opts, outcomes, source, recorded_to)
    return outcomes
