"""The `robotflow` command line."""

from __future__ import annotations

import logging
from typing import Any

import click

from robotflow.recording.summary import write_outcomes
from robotflow.runtime.graph import GraphSpec
from robotflow.runtime.graph_format import graph_dot, graph_text
from robotflow.runtime.scheduler import Scheduler
from robotflow.scripts.common import echo_episode_results, exit_for, load, report_run, sets_option, user_errors
from robotflow.scripts.options import build, dataclass_options
from robotflow.views.options import LiveViewOptions


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug details (node tracebacks included).")
@click.version_option(package_name="robotflow")
def main(verbose: bool) -> None:
    """robotflow: a real-time robotics runtime for data collection, training and deployment."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.argument("graph", type=click.Path(dir_okay=False))
@sets_option()
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Stop after this many seconds (graph clock time).",
)
@click.option("--stats", is_flag=True, help="Print live stats every few seconds and a table at exit.")
@click.option(
    "--episodes", type=click.IntRange(1), default=None, help="Number of episodes for graphs with a task node."
)
@click.option("--summary", type=click.Path(dir_okay=False), default=None, help="Write episode outcomes as JSON here.")
@click.option("--viewer", is_flag=True, help="Open MuJoCo's viewer (needs a display).")
@click.option("--realtime", is_flag=True, help="Pace simulated time to the wall clock.")
@click.option(
    "--rerun",
    "rerun_target",
    is_flag=False,
    flag_value="spawn",
    default=None,
    metavar="[FILE.rrd|spawn]",
    help="Stream channels to Rerun while the graph runs: into FILE.rrd, or a viewer it spawns (the default).",
)
@dataclass_options(LiveViewOptions)
def launch(graph, sets, duration, stats, episodes, summary, viewer, realtime, rerun_target, **view_params: Any) -> None:
    """Run GRAPH until a node finishes it, --duration elapses, Ctrl-C or a node fails."""
    spec = _with_flags(load(graph, sets), episodes, viewer, realtime)
    live = build(LiveViewOptions, view_params)
    if rerun_target is not None or live.channels:
        from robotflow.views.rerun import with_view  # rerun-sdk only when a view is asked for

        with user_errors():
            spec = with_view(spec, rerun_target or "spawn", live.channels, live.rate)
    sched = Scheduler(spec, duration_s=duration, stats_every_s=3.0 if stats else None)
    result = sched.run()
    report_run(result, sched.reports, stats_table=True)
    results = [r for node in sched.nodes.values() if hasattr(node, "results") for r in node.results]
    echo_episode_results(results)
    if summary:
        write_outcomes(summary, results, {})
    exit_for(result)


def _with_flags(spec: GraphSpec, episodes: int | None, viewer: bool, realtime: bool) -> GraphSpec:
    """--episodes, --viewer and --realtime set on every node with that param."""
    if episodes is not None and not any(n.has_param("episodes") for n in spec.nodes):
        raise click.ClickException(f"--episodes: no node in {spec.path} has an `episodes` param (add a task node)")
    flags = {"episodes": episodes, "viewer": viewer or None, "realtime": realtime or None}
    with user_errors():
        for n in spec.nodes:
            params = {k: v for k, v in flags.items() if v is not None and n.has_param(k)}
            if params:
                spec = spec.set_params(n.name, params)
    return spec


@main.group()
def graph() -> None:
    """Inspect graph files."""


@graph.command("check")
@click.argument("graph_file", metavar="GRAPH", type=click.Path(dir_okay=False))
@sets_option(help=None)
def graph_check(graph_file, sets):
    """Validate GRAPH without starting anything."""
    spec = load(graph_file, sets)
    click.echo(f"{graph_file}: ok ({len(spec.nodes)} nodes, {len(spec.channel_names())} channels, {spec.clock} clock)")


@graph.command("show")
@click.argument("graph_file", metavar="GRAPH", type=click.Path(dir_okay=False))
@sets_option(help=None)
@click.option("--dot", is_flag=True, help="Print Graphviz dot instead of text.")
def graph_show(graph_file, sets, dot):
    """Print GRAPH's nodes and channels in start order (text or Graphviz dot)."""
    spec = load(graph_file, sets)
    click.echo(graph_dot(spec) if dot else graph_text(spec))


# The other commands live beside their subject; they are imported here, after `main` exists, and attached.
from robotflow.scripts.convert import convert  # noqa: E402
from robotflow.scripts.episodes import episodes  # noqa: E402
from robotflow.scripts.record import info, record, recover, replay  # noqa: E402
from robotflow.scripts.rollout import rollout  # noqa: E402
from robotflow.scripts.serve import serve  # noqa: E402
from robotflow.scripts.train import train_command  # noqa: E402
from robotflow.scripts.view import view  # noqa: E402

for _name, _command in [
    ("record", record),
    ("info", info),
    ("replay", replay),
    ("recover", recover),
    ("episodes", episodes),
    ("convert", convert),
    ("train", train_command),
    ("rollout", rollout),
    ("view", view),
    ("serve", serve),
]:
    main.add_command(_command, _name)

if __name__ == "__main__":  # pragma: no cover
    main()
