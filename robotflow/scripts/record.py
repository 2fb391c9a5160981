"""Data collection commands: record, info, replay, recover."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from robotflow.recording.format import episode_name
from robotflow.runtime.graph import GraphError, GraphSpec, load_graph, parse_graph
from robotflow.storage import BackgroundUploader, Cache, StorageError, is_remote, list_dir, local_input, publish

RECORDER_TYPE = "record.hdf5"


def _load(graph: str, sets) -> GraphSpec:
    try:
        return load_graph(graph, tuple(sets))
    except GraphError as e:
        raise click.ClickException(str(e)) from None


def with_recorder(spec: GraphSpec, sets: tuple[str, ...], recorder_params: dict) -> tuple[GraphSpec, str]:
    """The graph with a recorder: the one it has, or a `recorder` node reading every channel.

    By default every output of every node is recorded (driver outputs and commands alike); the episode
    input is wired to the node that publishes `episode` events, when there is one.
    """
    existing = [n for n in spec.nodes if n.type_name == RECORDER_TYPE]
    doc = yaml.safe_load(spec.text)
    if existing:
        name = existing[0].name
    else:
        name = "recorder"
        taken = {n.name for n in spec.nodes}
        while name in taken:
            name += "_"
        inputs = {}
        sources = [f"{n.name}/episode" for n in spec.nodes if "episode" in n.outputs]
        # A teleop device in a sim graph publishes `episode` too, into the sim task's `control` input; the
        # episodes themselves (seeded, with outcomes) are the task's: a source wired into a control is skipped.
        controls = {i.source for n in spec.nodes for i in n.inputs.values() if i.port == "control"}
        source = next((s for s in reversed(sources) if s not in controls), sources[-1] if sources else None)
        for n in spec.nodes:
            for o in n.outputs:
                port = f"{n.name}.{o}"
                if f"{n.name}/{o}" == source:
                    inputs["episode"] = {"source": source, "delivery": "queue"}
                else:
                    inputs[port] = {"source": f"{n.name}/{o}", "delivery": "queue", "queue_size": 2048}
        node = {"name": name, "type": RECORDER_TYPE, "rate": 50, "inputs": inputs, "params": {}}
        if spec.clock == "wall":
            # h5py holds the GIL while it writes; in its own process the recorder cannot delay a control loop
            # (measured: p99 period error x4.5 in-process, x1.3 as a process group; benchmarks/recording.py).
            node["process"] = "recorder"
        doc["nodes"].append(node)
    sets = tuple(sets) + tuple(f"{name}.{k}={json.dumps(v)}" for k, v in recorder_params.items())
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        return parse_graph(text, spec.path, sets), name
    except GraphError as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--episodes", type=int, required=True, help="Number of episodes to record.")
@click.option(
    "--output-dir",
    required=True,
    help="Where episode files go: a directory, or a URL (s3://...) each is uploaded to once it closes.",
)
@click.option("--task", default="", help="Task text stored with each episode (e.g. 'stack the green cube').")
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE", help="Override a node param (repeatable).")
@click.option("--image-encoding", type=click.Choice(["jpeg", "raw"]), default="jpeg", show_default=True)
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True)
@click.option("--stats", is_flag=True, help="Print the runtime stats table at exit.")
def record(graph, episodes, output_dir, task, sets, image_encoding, jpeg_quality, stats):
    """Record N episodes of GRAPH into HDF5 episode files.

    Episodes start and stop from the graph's episode source: the simulated task (success or timeout) or
    the teleop device's start/stop/discard keys. A live line shows the episode, its duration, frames per
    stream, drops and the writer backlog; a table of episodes follows at the end.
    """
    from robotflow.scripts.cli import exit_for, run_and_report

    if episodes < 1:
        raise click.ClickException("--episodes must be at least 1")
    spec = _load(graph, sets)
    extra = [
        f"{n.name}.episodes={episodes}"
        for n in spec.nodes
        if "episodes" in getattr(n.params, "__dataclass_fields__", {}) and n.type_name != RECORDER_TYPE
    ]
    rec_params = {
        "output_dir": str(output_dir),
        "image_encoding": image_encoding,
        "jpeg_quality": jpeg_quality,
        "progress": sys.stderr.isatty(),
    }
    if task:
        rec_params["task"] = task
    if not extra:  # no task node counts episodes: the recorder ends the run after N
        rec_params["max_episodes"] = episodes
    rec_url = str(output_dir) if is_remote(str(output_dir)) else None
    uploader = None
    if rec_url is not None:
        # Written locally, uploaded by a background process as each episode closes; the local copy stays until
        # its upload succeeded.
        rec_params["output_dir"] = str(Cache().output_dir(rec_url))
        rec_params["first_index"] = _next_remote_index(rec_url)
    spec, rec_name = with_recorder(_load(graph, tuple(sets) + tuple(extra)), tuple(sets) + tuple(extra), rec_params)
    if rec_url is not None:
        uploader = BackgroundUploader(Path(rec_params["output_dir"]), rec_url)
    try:
        result, sched = run_and_report(spec, duration=None, stats=stats, quiet=True)
    finally:
        upload = uploader.finish() if uploader is not None else None
    rep = sched.reports.get(rec_name, {})
    _print_episode_table(rep.get("episodes", []))
    click.echo(
        f"episodes in {output_dir}: {len(rep.get('episodes', []))} recorded this run, "
        f"writer backlog max {rep.get('backlog_max', 0)} messages"
    )
    uploaded = rec_url is None or upload_episodes(rec_params["output_dir"], rec_url, upload)
    exit_for(result)
    if not uploaded:
        sys.exit(1)


def _next_remote_index(url: str) -> int:
    """One past the highest episode number in a remote directory, so episodes never overwrite remote ones."""
    try:
        names = list_dir(url)
    except StorageError as e:
        click.echo(f"warning: {e}; recording locally, upload after the run", err=True)
        return 0
    indices = [int(n[len("episode_") :].split(".")[0]) for n in names if n.startswith("episode_") and n.endswith(".h5")]
    return max(indices, default=-1) + 1


def upload_episodes(local_dir: str | Path, url: str, done_already: tuple[list[str], str | None] | None = None) -> bool:
    """Upload the closed episodes in `local_dir` (this run's and any left by an earlier failed upload) to `url`,
    unless `done_already` holds the outcome of a background upload of them.

    Prints one line either way; on failure the episodes stay in `local_dir`, which the cache never evicts.
    """
    done, error = done_already or publish(Path(local_dir), url, overwrite=False)
    if error is not None:
        click.echo(
            f"error: {error}; the episodes are kept in {local_dir} and uploaded by the next run to {url}", err=True
        )
        return False
    click.echo(f"uploaded {len(done)} file(s) to {url}")
    return True


def _print_episode_table(episodes: list[dict]) -> None:
    if not episodes:
        click.echo("no episode recorded")
        return
    click.echo(f"{'episode':>7}  {'outcome':<9} {'duration s':>10} {'gaps':>5}  frames")
    for e in episodes:
        frames = " ".join(f"{ch}={n}" for ch, n in sorted(e["frames"].items()))
        click.echo(f"{e['index']:>7}  {e['outcome']:<9} {e['duration_s']:>10.2f} {e['gaps']:>5}  {frames}")


def _local_path(path: str, what: str) -> str:
    """A local path for an argument that may be a URL (downloaded into the cache); a missing one is an error."""
    try:
        local = local_input(path)
    except StorageError as e:
        raise click.ClickException(str(e)) from None
    if not local.exists():
        raise click.ClickException(f"{what} {path} does not exist")
    return str(local)


@click.command()
@click.argument("directory")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(directory, as_json):
    """Summarise the episodes in DIRECTORY (a directory or a URL): durations, outcomes, streams with rates, gaps."""
    from robotflow.recording.summary import summarize_episodes

    directory = _local_path(directory, "directory")
    summary = summarize_episodes(directory, warn=lambda m: click.echo(f"warning: {m}", err=True))
    rows, streams, outcomes = summary["episodes"], summary["streams"], summary["outcomes"]
    total, partials = summary["total_duration_s"], summary["partial_files"]
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{len(rows)} episodes, {total:.1f} s, outcomes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none")
    )
    if rows:
        click.echo(f"\n{'episode':>7}  {'outcome':<9} {'duration s':>10} {'seed':>6} {'gaps':>5}  task")
        for r in rows:
            click.echo(
                f"{r['index']:>7}  {r['outcome']:<9} {r['duration_s']:>10.2f} {r['seed']:>6} {r['gaps']:>5}  {r['task']}"
            )
    if streams:
        w = max(len("stream"), *(len(c) for c in streams))
        click.echo(f"\n{'stream':<{w}}  {'messages':>9} {'rate Hz':>8} {'nominal':>8} {'gaps':>5}")
        for ch, s in sorted(streams.items()):
            nominal = "-" if s["nominal_hz"] is None else f"{s['nominal_hz']:g}"
            rate = "-" if s["rate_hz"] is None else f"{s['rate_hz']:.1f}"
            click.echo(f"{ch:<{w}}  {s['messages']:>9} {rate:>8} {nominal:>8} {s['gaps']:>5}")
    for p in partials:
        click.echo(f"warning: {p} is an unfinished episode; run `robotflow recover {directory}`", err=True)


@click.command()
@click.argument("episode")
@click.option(
    "--graph",
    "graph_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Graph with a record.replay node to drive (default: graphs/sim_stack_cubes_replay.yaml).",
)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Playback speed factor.")
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE")
@click.option(
    "--rerun",
    "rerun_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the episode to a Rerun recording (.rrd) instead of running a graph.",
)
def replay(episode, graph_file, speed, sets, rerun_file):
    """Publish EPISODE's (a file or a URL) recorded channels into a graph with their original timing."""
    from robotflow.scripts.cli import exit_for, run_and_report

    if speed <= 0:
        raise click.ClickException("--speed must be positive")
    episode = _local_path(episode, "episode")
    if rerun_file:
        _to_rerun(episode, rerun_file)
        return
    graph_file = graph_file or "graphs/sim_stack_cubes_replay.yaml"
    spec = _load(graph_file, sets)
    nodes = [n for n in spec.nodes if n.type_name == "record.replay"]
    if not nodes:
        raise click.ClickException(f"{graph_file} has no record.replay node to feed the episode into")
    extra = [f"{nodes[0].name}.episode={json.dumps(str(episode))}", f"{nodes[0].name}.speed={speed}"]
    from robotflow.recording.reader import EpisodeError, EpisodeFile

    try:
        with EpisodeFile(episode) as ep:
            seed = ep.info.seed
    except EpisodeError as e:
        raise click.ClickException(str(e)) from None
    # A simulated task node resets the scene with the episode's own seed, so objects start where they did.
    user_set = {s.split("=", 1)[0] for s in sets}
    for n in spec.nodes:
        if n.type_name == "sim.task" and seed >= 0 and f"{n.name}.seed" not in user_set:
            extra.append(f"{n.name}.seed={seed}")
    spec = _load(graph_file, tuple(sets) + tuple(extra))
    result, sched = run_and_report(spec, duration=None, stats=False, quiet=True)
    click.echo(f"replay finished: {result.reason}")
    from robotflow.scripts.cli import _print_episodes, episode_nodes

    results = [r for node in episode_nodes(sched) for r in node.results]
    if results:
        _print_episodes(results)
    exit_for(result)


def _to_rerun(episode: str, out: str) -> None:
    """Log every recorded stream into a .rrd file (open with `rerun FILE`); `robotflow view` shows it live."""
    from robotflow.views.rerun import log_episode, open_stream

    rec = open_stream(out, "robotflow-replay")
    try:
        log_episode(rec, episode)
    finally:
        rec.flush(timeout_sec=30.0)
        rec.disconnect()
    click.echo(f"wrote {out}")


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def recover(directory):
    """Turn unfinished episodes (*.h5.partial) in DIRECTORY into episodes marked aborted.

    A partial file that HDF5 can still read keeps everything flushed before the crash; one that cannot be
    read is moved to DIRECTORY/unrecoverable/ (never deleted) with a message.
    """
    from robotflow.recording.recover import recover_partials

    results = recover_partials(directory)
    if not results:
        click.echo(f"nothing to recover in {directory}")
    for r in results:
        if r.ok:
            click.echo(f"recovered {r.path.name}: {r.messages} messages, marked aborted")
        else:
            click.echo(f"{r.source.name} is not readable ({r.error}); moved to {r.path}", err=True)


__all__ = ["record", "info", "replay", "recover", "with_recorder", "episode_name"]
