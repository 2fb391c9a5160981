"""`robotflow convert` and `robotflow convert append`: parse `robotflow.codecs.conversion.ConvertJob`/`AppendJob`
and run `convert_episodes`/`append_episodes`; then print the summary."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from robotflow.codecs.codec import CodecError
from robotflow.codecs.conversion import AppendJob, ConvertJob, append_episodes, convert_episodes
from robotflow.codecs.export import ConvertError, ConvertSummary
from robotflow.scripts.options import build, dataclass_options
from robotflow.storage import StorageError

__all__ = ["convert"]

F = TypeVar("F", bound=Callable[..., Any])


def _output_options(f: F) -> F:
    f = click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")(f)
    return click.option("--quiet", is_flag=True, help="No progress bars.")(f)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def _report(summary: ConvertSummary, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json()))
        return
    for s in summary.skipped:
        click.echo(f"skipped {s.path.name}: {s.reason}", err=True)
    line = (
        f"{verb} {summary.episodes} episodes, {summary.frames} frames ({summary.duration_s:.1f} s at {summary.fps} fps) "
        f"with codec '{summary.codec}' in {summary.wall_s:.1f} s -> {summary.output_dir} ({_human_bytes(summary.size_bytes)})"
    )
    if verb == "appended":
        line += f"; dataset now {summary.total_episodes} episodes, {summary.total_frames} frames"
    click.echo(line)


def _run(run: Callable[[Any], ConvertSummary], job: Any, as_json: bool, verb: str) -> None:
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    try:
        summary = run(job)
    except (ConvertError, CodecError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(summary, as_json, verb)


@click.group(invoke_without_command=True)
@dataclass_options(ConvertJob)
@_output_options
@click.pass_context
def convert(ctx: click.Context, quiet: bool, as_json: bool, **params: Any) -> None:
    """Convert recorded episodes (--input) into a new LeRobot v3.0 dataset (--output-dir) with a codec.

    Streams are resampled onto a uniform --fps grid by zero-order hold on their runtime timestamps.
    Episodes marked 'discarded' are skipped, 'aborted' ones unless --include-aborted. Use
    `robotflow convert append` to add episodes to an existing dataset.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not params["input_path"] or not params["output_dir"]:
        raise click.UsageError("--input and --output-dir are required (or use: robotflow convert append ...)")
    job = build(ConvertJob, params, progress=not quiet and not as_json)
    _run(convert_episodes, job, as_json, "converted")


@convert.command("append")
@dataclass_options(AppendJob)
@_output_options
def append(quiet: bool, as_json: bool, **params: Any) -> None:
    """Add the episodes in --input to the existing dataset --output-dir.

    Refused, with the dataset untouched, when --codec (or an explicit --fps/--image-size/--camera)
    differs from the codec the dataset was converted with. New episodes are converted to a temp dir
    and merged with LeRobot's aggregate; the dataset is replaced only once the merge is complete.
    """
    if not params["input_path"] or not params["output_dir"]:
        raise click.UsageError("--input and --output-dir are required")
    job = build(AppendJob, params, progress=not quiet and not as_json)
    _run(append_episodes, job, as_json, "appended")
