"""The `robotflow` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from robotflow.runtime.graph import GraphError, GraphSpec, load_graph
from robotflow.runtime.scheduler import RunResult, Scheduler
from robotflow.safety import format_safety
from robotflow.scripts.stats_table import format_table


def _load(graph: str, sets: tuple[str, ...]) -> GraphSpec:
    try:
        return load_graph(graph, sets)
    except GraphError as e:
        raise click.ClickException(str(e)) from None


def episode_nodes(sched: Scheduler) -> list:
    """Nodes that run episodes and keep their outcomes (the simulation's task node)."""
    return [n for n in sched.nodes.values() if hasattr(n, "results")]


def run_and_report(
    graph: GraphSpec, *, duration: float | None, stats: bool, quiet: bool = False
) -> tuple[RunResult, Scheduler]:
    """Run a graph, print the stats table, and turn a failure into a one-line error and exit code."""
    sched = Scheduler(graph, duration_s=duration, stats_every_s=3.0 if stats else None)
    result = sched.run()
    if stats or not quiet:
        click.echo(format_table(result.stats), err=True)
    safety = format_safety(sched.reports)  # clamped / rejected / timed-out commands of every arm and gripper
    if safety:
        click.echo(safety, err=True)
    return result, sched


def exit_for(result: RunResult) -> None:
    if result.failed_node:
        click.echo(f"error: node {result.failed_node!r} failed: {result.error}", err=True)
    elif result.signal is not None:
        click.echo(f"stopped: {result.reason}", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


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
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE", help="Override a node param (repeatable).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (graph clock time).")
@click.option("--stats", is_flag=True, help="Print live stats every few seconds and a table at exit.")
@click.option("--episodes", type=int, default=None, help="Number of episodes for graphs with a task node.")
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
@click.option(
    "--rerun-channel",
    "rerun_channels",
    multiple=True,
    metavar="NODE/OUTPUT",
    help="A channel for --rerun (repeatable; default: every channel but episode events).",
)
@click.option(
    "--rerun-rate",
    "rerun_rate",
    type=float,
    default=10.0,
    show_default=True,
    metavar="HZ",
    help="The most messages a second --rerun shows of each channel (the newest one; full resolution).",
)
def launch(graph, sets, duration, stats, episodes, summary, viewer, realtime, rerun_target, rerun_channels, rerun_rate):
    """Run GRAPH until a node finishes it, --duration elapses, Ctrl-C or a node fails."""
    spec = _load(graph, sets)
    extra = []
    for n in spec.nodes:
        fields = getattr(n.params, "__dataclass_fields__", {})
        if episodes is not None and "episodes" in fields:
            extra.append(f"{n.name}.episodes={episodes}")
        if viewer and "viewer" in fields:
            extra.append(f"{n.name}.viewer=true")
        if realtime and "realtime" in fields:
            extra.append(f"{n.name}.realtime=true")
    if episodes is not None and not any(x.endswith(f"episodes={episodes}") for x in extra):
        raise click.ClickException(f"--episodes: no node in {graph} has an `episodes` param (add a task node)")
    sets = tuple(sets) + tuple(extra)
    if extra:
        spec = _load(graph, sets)
    if rerun_target is not None or rerun_channels:
        from robotflow.views.rerun import with_view

        try:
            spec = with_view(spec, rerun_target or "spawn", tuple(rerun_channels), rerun_rate)
        except GraphError as e:
            raise click.ClickException(str(e)) from None
    result, sched = run_and_report(spec, duration=duration, stats=stats)
    results = [r for node in episode_nodes(sched) for r in node.results]
    if results:
        _print_episodes(results)
    if summary:
        write_summary(summary, results)
    exit_for(result)


def _print_episodes(results: list[dict]) -> None:
    click.echo(f"{'episode':>7}  {'seed':>6}  {'success':>7}  {'duration s':>10}")
    for i, r in enumerate(results):
        click.echo(f"{i:>7}  {r['seed']:>6}  {str(bool(r['success'])):>7}  {r['duration_s']:>10.2f}")
    rate = sum(bool(r["success"]) for r in results) / len(results)
    click.echo(f"success rate: {rate:.0%} ({sum(bool(r['success']) for r in results)}/{len(results)})")


def write_summary(path: str, results: list[dict], **extra) -> dict:
    doc = {
        "episodes": [
            {"seed": int(r["seed"]), "success": bool(r["success"]), "duration_s": float(r["duration_s"])}
            for r in results
        ],
        "success_rate": (sum(bool(r["success"]) for r in results) / len(results)) if results else 0.0,
        **extra,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


@main.group()
def graph() -> None:
    """Inspect graph files."""


@graph.command("check")
@click.argument("graph_file", metavar="GRAPH", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE")
def graph_check(graph_file, sets):
    """Validate GRAPH without starting anything."""
    spec = _load(graph_file, sets)
    click.echo(f"{graph_file}: ok ({len(spec.nodes)} nodes, {len(spec.channel_names())} channels, {spec.clock} clock)")


@graph.command("show")
@click.argument("graph_file", metavar="GRAPH", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="NODE.PARAM=VALUE")
@click.option("--dot", is_flag=True, help="Print Graphviz dot instead of text.")
def graph_show(graph_file, sets, dot):
    """Print GRAPH's nodes and channels in start order (text or Graphviz dot)."""
    spec = _load(graph_file, sets)
    click.echo(graph_dot(spec) if dot else graph_text(spec))


def graph_text(spec: GraphSpec) -> str:
    lines = [f"graph {spec.path} ({spec.clock} clock)"]
    for n in spec.nodes:
        when = f"{n.rate:g} Hz" if n.rate else f"on {n.trigger}"
        proc = f" [process {n.process}]" if n.process else ""
        lines.append(f"  {n.name} ({n.type_name}, {when}){proc}")
        for port, i in n.inputs.items():
            flags = ", ".join(x for x in (i.delivery, "delayed" if i.delayed else "") if x)
            lines.append(f"    <- {port}: {i.source} ({flags})")
        for o in n.outputs:
            lines.append(f"    -> {o}")
    return "\n".join(lines)


def graph_dot(spec: GraphSpec) -> str:
    lines = ["digraph robotflow {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for n in spec.nodes:
        when = f"{n.rate:g} Hz" if n.rate else f"on {n.trigger}"
        lines.append(f'  "{n.name}" [label="{n.name}\\n{n.type_name}\\n{when}"];')
    for n in spec.nodes:
        for port, i in n.inputs.items():
            style = ", style=dashed" if i.delayed else ""
            lines.append(f'  "{i.source_node}" -> "{n.name}" [label="{i.source_output} -> {port}"{style}];')
    lines.append("}")
    return "\n".join(lines)


def _attach_optional_commands() -> None:
    """Commands owned by other subpackages; attached when their module is present."""
    import importlib

    for mod_name, attr, name in [
        ("robotflow.scripts.record", "record", "record"),
        ("robotflow.scripts.record", "info", "info"),
        ("robotflow.scripts.record", "replay", "replay"),
        ("robotflow.scripts.record", "recover", "recover"),
        ("robotflow.scripts.convert", "convert", "convert"),
        ("robotflow.scripts.train", "train_command", "train"),
        ("robotflow.scripts.rollout", "rollout", "rollout"),
        ("robotflow.scripts.view", "view", "view"),
        ("robotflow.scripts.serve", "serve", "serve"),
    ]:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue
            raise
        cmd = getattr(mod, attr, None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd, name)


_attach_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
