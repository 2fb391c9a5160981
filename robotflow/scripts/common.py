"""What the commands share: the `--set` option, robotflow errors as one-line messages, the exit report."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import click

from robotflow.evaluation import EvalError, RolloutUsageError
from robotflow.recording import EpisodeError
from robotflow.recording.edits import EditError
from robotflow.recording.session import RecordError
from robotflow.recording.summary import format_episode_table, success_line
from robotflow.runtime.graph import SET_OPTION, GraphError, GraphSpec, load_graph
from robotflow.runtime.scheduler import RunResult
from robotflow.runtime.stats_table import format_stats_table
from robotflow.safety import format_safety
from robotflow.storage import StorageError, local_input

# Errors a user causes (a bad graph, a missing checkpoint, an unreadable episode): one line, no traceback.
USER_ERRORS = (GraphError, EvalError, RecordError, EpisodeError, EditError, StorageError)
EPISODE_RESULT_COLUMNS = ("episode", "seed", "success", "duration")  # a task node's results


def sets_option(help: str | None = SET_OPTION["help"]) -> Any:
    """The `--set NODE.PARAM=VALUE` option (repeatable), passed to the command as `sets`, for a command without
    an options dataclass (one with a dataclass gives its `sets` field `metadata=SET_OPTION`)."""
    return click.option(SET_OPTION["flag"], "sets", multiple=True, metavar=SET_OPTION["metavar"], help=help)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """robotflow's own errors become the command's one-line error (option conflicts a usage error)."""
    try:
        yield
    except RolloutUsageError as e:
        raise click.UsageError(str(e)) from None
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None


def load(graph: str, sets: Sequence[str]) -> GraphSpec:
    with user_errors():
        return load_graph(graph, tuple(sets))


def local_path(path: str, what: str = "") -> str:
    """A local path for an argument that may be a URL (downloaded into the cache); a missing one is an error."""
    with user_errors():
        local = local_input(path)
    if not local.exists():
        raise click.ClickException(f"{what} {path} does not exist".lstrip())
    return str(local)


def report_run(result: RunResult, reports: Mapping[str, dict], stats_table: bool) -> None:
    """The stats table (when asked for) and every arm's and gripper's clamped / rejected / timed-out commands."""
    if stats_table:
        click.echo(format_stats_table(result.stats), err=True)
    safety = format_safety(reports)
    if safety:
        click.echo(safety, err=True)


def echo_episode_results(results: Sequence[Mapping[str, Any]]) -> None:
    """The task node's episodes (seed, success, duration) and the success rate; nothing without episodes."""
    if results:
        click.echo(format_episode_table([{**r, "index": i} for i, r in enumerate(results)], EPISODE_RESULT_COLUMNS))
        click.echo(success_line(results))


def exit_for(result: RunResult) -> None:
    """How the run ended, as a line and the exit status."""
    if result.failed_node:
        click.echo(f"error: node {result.failed_node!r} failed: {result.error}", err=True)
    elif result.signal is not None:
        click.echo(f"stopped: {result.reason}", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)
