"""`robotflow convert`: recorded episodes -> LeRobot v3.0 dataset through a codec.

The lead's CLI attaches this group with ``main.add_command(convert)``; both
``robotflow convert --input ...`` and ``robotflow convert append ...`` then work.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from robotflow.codecs.codec import (
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    Codec,
    CodecChannels,
    CodecError,
    available_codecs,
    get_codec,
)
from robotflow.codecs.export import (
    ConvertError,
    ConvertOptions,
    ConvertSummary,
)
from robotflow.codecs.export import (
    append as append_episodes,
)
from robotflow.codecs.export import (
    convert as convert_episodes,
)
from robotflow.storage import StorageError, dataset_output, local_input

__all__ = ["convert"]


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not HEIGHTxWIDTH (e.g. 240x320)") from None
    return h, w


def _parse_cameras(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        name, sep, channel = v.partition("=")
        if not sep or not name or not channel:
            raise click.BadParameter(f"'{v}' is not NAME=NODE/OUTPUT (e.g. wrist=wrist_camera/frame)")
        out[name] = channel
    return out


def _parse_channels(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        name, sep, channel = v.partition("=")
        if not sep or not name or not channel:
            raise click.BadParameter(f"'{v}' is not CHANNEL=NODE/OUTPUT (e.g. arm/state=robot/state)")
        out[name] = channel
    return out


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


def _build_codec(
    name: str,
    cameras: dict[str, str] | None,
    size: tuple[int, int] | None,
    task_field: str | None,
    fps: int | None,
    channels: dict[str, str] | None = None,
) -> Codec:
    try:
        return get_codec(
            name,
            cameras=cameras,
            image_size=size,
            task_field=task_field,
            fps=fps or 15,
            channels=channels,
        )
    except CodecError as exc:
        raise click.ClickException(str(exc)) from None


_CHANNEL_HELP = (
    "Where the codec reads a signal when the graph's nodes are named otherwise, e.g. arm/state=robot/state "
    "(repeatable; " + ", ".join(CodecChannels().to_json().values()) + "; cameras: --camera)."
)


_CODEC_HELP = "Codec name: " + ", ".join(available_codecs()) + "."


def _common(f: Any) -> Any:
    """Options shared by convert and append (declared once so they cannot drift apart)."""
    opts = [
        click.option(
            "--input",
            "input_path",
            type=click.Path(),
            help="Directory of episode files (episode_*.h5), searched recursively; or a URL (s3://...).",
        ),
        click.option(
            "--output-dir", type=click.Path(), help="LeRobot dataset directory, or a URL it is uploaded to when done."
        ),
        click.option("--task", default=None, help="Task text for every episode (default: the episode's own task)."),
        click.option(
            "--repo-id", default="robotflow/dataset", show_default=True, help="LeRobot repo id recorded in the dataset."
        ),
        click.option("--include-aborted", is_flag=True, help="Also convert episodes whose outcome is 'aborted'."),
        click.option(
            "--workers",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            help="Processes converting episode shards in parallel (merged with LeRobot's aggregate).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(invoke_without_command=True)
@_common
@click.option("--codec", "codec_name", default="eepose_absolute", show_default=True, help=_CODEC_HELP)
@click.option(
    "--fps", type=click.IntRange(1, 1000), default=15, show_default=True, help="Frame rate of the dataset grid."
)
@click.option(
    "--image-size",
    default=None,
    metavar="HxW",
    help=f"Stored image size (default {DEFAULT_IMAGE_SIZE[0]}x{DEFAULT_IMAGE_SIZE[1]}).",
)
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    metavar="NAME=NODE/OUTPUT",
    help="Camera feature -> channel (repeatable; default "
    + ", ".join(f"{k}={v}" for k, v in DEFAULT_CAMERAS.items())
    + ").",
)
@click.option("--channel", "channels", multiple=True, metavar="CHANNEL=NODE/OUTPUT", help=_CHANNEL_HELP)
@click.option("--task-field", default="task", show_default=True, help="Episode field holding the task text.")
@click.option(
    "--vcodec",
    type=click.Choice(["libsvtav1", "h264", "hevc"]),
    default="libsvtav1",
    show_default=True,
    help="Video codec (LeRobot's default; SVT-AV1 was the fastest here, see docs/codecs.md).",
)
@click.pass_context
def convert(
    ctx: click.Context,
    input_path,
    output_dir,
    task,
    repo_id,
    include_aborted,
    workers,
    quiet,
    as_json,
    codec_name,
    fps,
    image_size,
    cameras,
    channels,
    task_field,
    vcodec,
) -> None:
    """Convert recorded episodes (--input) into a new LeRobot v3.0 dataset (--output-dir) with a codec.

    Streams are resampled onto a uniform --fps grid by zero-order hold on their runtime timestamps.
    Episodes marked 'discarded' are skipped, 'aborted' ones unless --include-aborted. Use
    `robotflow convert append` to add episodes to an existing dataset.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not input_path or not output_dir:
        raise click.UsageError("--input and --output-dir are required (or use: robotflow convert append ...)")
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    codec = _build_codec(
        codec_name, _parse_cameras(cameras), _parse_size(image_size), task_field or None, fps, _parse_channels(channels)
    )
    opts = ConvertOptions(
        fps=fps,
        task=task,
        repo_id=repo_id,
        include_aborted=include_aborted,
        vcodec=vcodec,
        workers=workers,
        progress=not quiet and not as_json,
    )
    try:
        with dataset_output(output_dir, append=False) as local_out:
            summary = convert_episodes(local_input(input_path), local_out, codec, opts)
    except (ConvertError, CodecError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(summary, as_json, "converted")


@convert.command("append")
@_common
@click.option("--codec", "codec_name", required=True, help=_CODEC_HELP + " Must match the dataset's codec.")
@click.option(
    "--fps", type=click.IntRange(1, 1000), default=None, help="Must match the dataset (default: the dataset's)."
)
@click.option("--image-size", default=None, metavar="HxW", help="Must match the dataset (default: the dataset's).")
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    metavar="NAME=NODE/OUTPUT",
    help="Camera -> channel in the new episodes; the camera names must be the dataset's (default: the dataset's).",
)
@click.option(
    "--channel",
    "channels",
    multiple=True,
    metavar="CHANNEL=NODE/OUTPUT",
    help=_CHANNEL_HELP.removesuffix(".") + "; default: the dataset's).",
)
def append(
    input_path,
    output_dir,
    task,
    repo_id,
    include_aborted,
    workers,
    quiet,
    as_json,
    codec_name,
    fps,
    image_size,
    cameras,
    channels,
) -> None:
    """Add the episodes in --input to the existing dataset --output-dir.

    Refused, with the dataset untouched, when --codec (or an explicit --fps/--image-size/--camera)
    differs from the codec the dataset was converted with. New episodes are converted to a temp dir
    and merged with LeRobot's aggregate; the dataset is replaced only once the merge is complete.
    """
    if not input_path or not output_dir:
        raise click.UsageError("--input and --output-dir are required")
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    size = _parse_size(image_size)
    cams = _parse_cameras(cameras)
    chans = _parse_channels(channels)
    try:
        named = get_codec(codec_name)  # validates the name early
    except CodecError as exc:
        raise click.ClickException(str(exc)) from None

    def inherit(existing: dict[str, Any]) -> Codec:
        # Params not given on the command line come from the dataset; given ones must then match.
        params = existing.get("params", {})
        return _build_codec(
            named.name,
            cams if cams is not None else params.get("cameras"),
            size if size is not None else tuple(params.get("image_size", DEFAULT_IMAGE_SIZE)),
            params.get("task_field", "task"),
            fps if fps is not None else params.get("fps", 15),
            chans if chans is not None else params.get("channels"),
        )

    opts = ConvertOptions(
        fps=fps,
        task=task,
        repo_id=repo_id,
        include_aborted=include_aborted,
        workers=workers,
        progress=not quiet and not as_json,
    )
    try:
        with dataset_output(output_dir, append=True) as local_out:
            summary = append_episodes(local_input(input_path), local_out, named, opts, inherit=inherit)
    except (ConvertError, CodecError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    _report(summary, as_json, "appended")
