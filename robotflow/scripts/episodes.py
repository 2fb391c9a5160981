"""`robotflow episodes drop|undrop|label`: edit recorded episodes without deleting them (robotflow.recording.edits)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from robotflow.recording.edits import EDITS_FILE, Edit, edit_episodes
from robotflow.recording.format import LABELS
from robotflow.scripts.common import user_errors

__all__ = ["episodes"]

_DIRECTORY = click.argument("directory")
_EPISODES = click.argument("episode_args", metavar="EPISODE...", nargs=-1, required=True)


@click.group()
def episodes() -> None:
    """Drop, restore or relabel recorded episodes; the episode files are never changed.

    Each edit is a line appended to DIRECTORY/edits.jsonl (the directory the recorder wrote the episodes to);
    `info`, `convert` and `view` read it. EPISODE is an episode number (3) or a file name (episode_000003.h5).
    """


def _edit(directory: str, op: str, episode_args: Sequence[str], label: str = "") -> None:
    with user_errors():
        edits = edit_episodes(directory, op, episode_args, label)
    for e in edits:
        click.echo(_line(e))
    click.echo(f"{len(edits)} edit{'s' * (len(edits) != 1)} appended to {directory}/{EDITS_FILE}")


def _line(e: Edit) -> str:
    return f"{e.op} {e.episode}" + (f" as {e.label}" if e.op == "label" else "")


@episodes.command()
@_DIRECTORY
@_EPISODES
def drop(directory: str, episode_args: tuple[str, ...]) -> None:
    """Leave EPISODE... out of `info` totals, `convert` and `view DIRECTORY` (`undrop` brings them back)."""
    _edit(directory, "drop", episode_args)


@episodes.command()
@_DIRECTORY
@_EPISODES
def undrop(directory: str, episode_args: tuple[str, ...]) -> None:
    """Take EPISODE... back after a `drop`."""
    _edit(directory, "undrop", episode_args)


@episodes.command()
@_DIRECTORY
@_EPISODES
@click.option(
    "--as",
    "label",
    type=click.Choice(LABELS),
    required=True,
    help="The label replacing the recorded one; `convert` leaves discarded episodes out.",
)
def label(directory: str, episode_args: tuple[str, ...], label: str) -> None:
    """Label EPISODE... success, failure or discarded (the latest label wins)."""
    _edit(directory, "label", episode_args, label)
