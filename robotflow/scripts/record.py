"""Data collection commands: record, info, replay, recover."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from robotflow.recording.graph_transform import with_replay
from robotflow.recording.recover import recover_partials
from robotflow.recording.session import RecordOptions
from robotflow.recording.session import record as record_episodes
from robotflow.recording.summary import format_episode_table, format_summary, summarize_episodes
from robotflow.runtime.scheduler import Scheduler
from robotflow.scripts.common import (
    echo_episode_results,
    exit_for,
    load,
    local_path,
    report_run,
    sets_option,
    user_errors,
)
from robotflow.scripts.options import build, dataclass_options


@click.command()
@click.argument("graph", type=click.Path(dir_okay=False))
@dataclass_options(RecordOptions)
def record(graph: str, **params: Any) -> None:
    """Record N episodes of GRAPH into HDF5 episode files.

    Episodes start and stop from the graph's episode source: the simulated task (success or timeout) or
    the teleop device's start/stop/discard keys. A live line shows the episode, its duration, frames per
    stream, drops and the writer backlog; a table of episodes follows at the end.
    """
    opts = build(RecordOptions, params, graph_file=graph, progress=sys.stderr.isatty())
    with user_errors():
        run = record_episodes(opts, warn=lambda m: click.echo(f"warning: {m}", err=True))
    report_run(run.result, run.reports, stats_table=opts.stats)
    columns = ("episode", "outcome", "duration", "gaps", "frames")
    click.echo(format_episode_table(run.episodes, columns) if run.episodes else "no episode recorded")
    backlog = run.reports.get(run.recorder, {}).get("backlog_max", 0)
    click.echo(
        f"episodes in {opts.output_dir}: {len(run.episodes)} recorded this run, writer backlog max {backlog} messages"
    )
    if run.upload is not None:
        click.echo(run.upload.message(), err=not run.upload.ok)
    exit_for(run.result)
    if run.upload is not None and not run.upload.ok:
        sys.exit(1)


@click.command()
@click.argument("directory")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--show-dropped", is_flag=True, help="List dropped episodes in the table too (marked dropped).")
def info(directory, as_json, show_dropped):
    """Summarise the episodes in DIRECTORY (a directory or a URL): durations, outcomes and labels, success with its
    95% Wilson interval, interventions and time under human control, faults, streams with rates, gaps.

    Episodes dropped with `robotflow episodes drop` are left out of everything but a list of their names (JSON:
    `dropped`); a label edited with `robotflow episodes label` replaces the recorded one (marked *).
    """
    directory = local_path(directory, "directory")
    with user_errors():
        summary = summarize_episodes(directory, warn=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary, show_dropped))
    if as_json:
        return
    for p in summary["partial_files"]:
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
@sets_option(help=None)
@click.option(
    "--rerun",
    "rerun_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the episode to a Rerun recording (.rrd) instead of running a graph.",
)
def replay(episode, graph_file, speed, sets, rerun_file):
    """Publish EPISODE's (a file or a URL) recorded channels into a graph with their original timing."""
    if speed <= 0:
        raise click.ClickException("--speed must be positive")
    episode = local_path(episode, "episode")
    if rerun_file:
        _to_rerun(episode, rerun_file)
        return
    spec = load(graph_file or "graphs/sim_stack_cubes_replay.yaml", sets)
    # A task node whose seed the user set keeps it; others restart with the episode's seed.
    keep_seed = {s.split("=", 1)[0].rpartition(".")[0] for s in sets if s.split("=", 1)[0].endswith(".seed")}
    with user_errors():
        spec = with_replay(spec, episode, speed, keep_seed)
    sched = Scheduler(spec)
    result = sched.run()
    report_run(result, sched.reports, stats_table=False)
    click.echo(f"replay finished: {result.reason}")
    echo_episode_results([r for node in sched.nodes.values() if hasattr(node, "results") for r in node.results])
    exit_for(result)


def _to_rerun(episode: str, out: str) -> None:
    """Log every recorded stream into a .rrd file (open with `rerun FILE`); `robotflow view` shows it live."""
    from robotflow.views.rerun import log_episode, open_stream  # rerun-sdk only for --rerun

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
    results = recover_partials(directory)
    if not results:
        click.echo(f"nothing to recover in {directory}")
    for r in results:
        if r.ok:
            click.echo(f"recovered {r.path.name}: {r.messages} messages, marked aborted")
        elif r.in_use:
            click.echo(
                f"{r.source.name} is open in another process (a recording still running?); left as it is", err=True
            )
        else:
            click.echo(f"{r.source.name} is not readable ({r.error}); moved to {r.path}", err=True)
