"""`convert_episodes(job)` / `append_episodes(job)`: what `robotflow convert` and `convert append` run.

On top of `robotflow.codecs.export` (which converts local episodes with a built codec), these take the codec by
name and parameters, and episodes and datasets that may be URLs (`robotflow.storage`). The `robotflow convert`
options are generated from the fields of `ConvertJob` and `AppendJob` (metadata: robotflow.scripts.options).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robotflow.codecs.codec import (
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    Codec,
    CodecChannels,
    available_codecs,
    canonical_name,
    get_codec,
)
from robotflow.codecs.export import ConvertError, ConvertOptions, ConvertSummary, SkippedEpisode, append, convert
from robotflow.recording.edits import EDITS_FILE, EditError
from robotflow.recording.reader import EpisodeError, episodes_left_out, find_episode_files
from robotflow.runtime.params import check_options
from robotflow.storage import dataset_output, local_input


def parse_image_size(value: str | None) -> tuple[int, int] | None:
    """`HxW` -> (height, width)."""
    if value is None:
        return None
    try:
        h, w = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"'{value}' is not HEIGHTxWIDTH (e.g. 240x320)") from None
    return h, w


def _bindings(values: tuple[str, ...], what: str, example: str) -> dict[str, str] | None:
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        name, sep, channel = v.partition("=")
        if not sep or not name or not channel:
            raise ValueError(f"'{v}' is not {what}=NODE/OUTPUT (e.g. {example})")
        out[name] = channel
    return out


def parse_cameras(values: tuple[str, ...]) -> dict[str, str] | None:
    """`NAME=NODE/OUTPUT` items -> {camera feature name: channel}; None when there are none."""
    return _bindings(values, "NAME", "wrist=wrist_camera/frame")


def parse_channels(values: tuple[str, ...]) -> dict[str, str] | None:
    """`CHANNEL=NODE/OUTPUT` items -> {codec channel: graph channel}; None when there are none."""
    return _bindings(values, "CHANNEL", "arm/state=robot/state")


_CODEC_HELP = "Codec name: " + ", ".join(available_codecs()) + "."
_CHANNEL_HELP = (
    "Where the codec reads a signal when the graph's nodes are named otherwise, e.g. arm/state=robot/state "
    "(repeatable; " + ", ".join(CodecChannels().to_json().values()) + "; cameras: --camera)."
)
_FPS_RANGE = (1, 1000)


def _cameras(help: str) -> Any:
    meta = {"flag": "--camera", "multiple": True, "metavar": "NAME=NODE/OUTPUT", "parse": parse_cameras, "help": help}
    return field(default=None, metadata=meta)


def _channels(help: str) -> Any:
    meta = {"flag": "--channel", "multiple": True, "metavar": "CHANNEL=NODE/OUTPUT", "parse": parse_channels}
    return field(default=None, metadata={**meta, "help": help})


@dataclass(frozen=True, kw_only=True)
class EpisodesJob:
    """What convert and append share: where episodes come from and go to, and which are kept."""

    input_path: str | None = field(
        default=None,
        metadata={
            "flag": "--input",
            "metavar": "PATH",
            "help": "Directory of episode files (episode_*.h5), searched recursively; or a URL (s3://...).",
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "metavar": "PATH",
            "path": "writable_dir",
            "help": "LeRobot dataset directory, or a URL it is uploaded to when done.",
        },
    )
    task: str | None = field(
        default=None, metadata={"help": "Task text for every episode (default: the episode's own task)."}
    )
    repo_id: str = field(default="robotflow/dataset", metadata={"help": "LeRobot repo id recorded in the dataset."})
    include_aborted: bool = field(default=False, metadata={"help": "Also convert episodes whose outcome is 'aborted'."})
    interventions: bool = field(
        default=False,
        metadata={
            "help": "Convert only the interventions (the stretches an operator drove after taking over from a "
            "policy), each with its --lead-in, as episodes of their own; episodes without one are skipped."
        },
    )
    lead_in_s: float = field(
        default=1.0,
        metadata={
            "flag": "--lead-in",
            "range": (0.0, 60.0),
            "metavar": "SECONDS",
            "help": "With --interventions: how long before each take-over its episode starts (the policy's "
            "approach that needed the correction).",
        },
    )
    workers: int = field(
        default=1,
        metadata={
            "range": (1, 64),
            "help": "Processes converting episode shards in parallel (merged with LeRobot's aggregate).",
        },
    )
    progress: bool = field(default=True, metadata={"cli": False})  # tqdm bars


@dataclass(frozen=True, kw_only=True)
class ConvertJob(EpisodesJob):
    """Episodes -> a new LeRobot dataset, with the codec `codec` and its parameters."""

    codec: str = field(default="eepose_absolute", metadata={"check": canonical_name, "help": _CODEC_HELP})
    fps: int = field(default=15, metadata={"range": _FPS_RANGE, "help": "Frame rate of the dataset grid."})
    image_size: tuple[int, int] | None = field(
        default=None,
        metadata={
            "metavar": "HxW",
            "parse": parse_image_size,
            "help": f"Stored image size (default {DEFAULT_IMAGE_SIZE[0]}x{DEFAULT_IMAGE_SIZE[1]}).",
        },
    )
    cameras: dict[str, str] | None = _cameras(
        "Camera feature -> channel (repeatable; default "
        + ", ".join(f"{k}={v}" for k, v in DEFAULT_CAMERAS.items())
        + ")."
    )
    channels: dict[str, str] | None = _channels(_CHANNEL_HELP)
    task_field: str = field(default="task", metadata={"help": "Episode field holding the task text."})
    vcodec: str = field(
        default="libsvtav1",
        metadata={
            "choices": ("libsvtav1", "h264", "hevc"),
            "help": "Video codec (LeRobot's default; SVT-AV1 was the fastest here, see docs/codecs.md).",
        },
    )


@dataclass(frozen=True, kw_only=True)
class AppendJob(EpisodesJob):
    """Episodes added to an existing dataset; codec parameters left None are the dataset's (given ones must match)."""

    codec: str = field(metadata={"check": canonical_name, "help": _CODEC_HELP + " Must match the dataset's codec."})
    fps: int | None = field(
        default=None, metadata={"range": _FPS_RANGE, "help": "Must match the dataset (default: the dataset's)."}
    )
    image_size: tuple[int, int] | None = field(
        default=None,
        metadata={
            "metavar": "HxW",
            "parse": parse_image_size,
            "help": "Must match the dataset (default: the dataset's).",
        },
    )
    cameras: dict[str, str] | None = _cameras(
        "Camera -> channel in the new episodes; the camera names must be the dataset's (default: the dataset's)."
    )
    channels: dict[str, str] | None = _channels(_CHANNEL_HELP.removesuffix(".") + "; default: the dataset's).")


def _paths(job: EpisodesJob) -> tuple[str, str]:
    if not job.input_path or not job.output_dir:
        raise ConvertError("--input and --output-dir are required")
    check_options(job, ConvertError)
    return job.input_path, job.output_dir


def _writer_options(job: EpisodesJob) -> ConvertOptions:
    """The writer's settings both jobs share (an append keeps the dataset's own video codec)."""
    return ConvertOptions(
        fps=job.fps,
        task=job.task,
        repo_id=job.repo_id,
        include_aborted=job.include_aborted,
        interventions_lead_in_s=job.lead_in_s if job.interventions else None,
        workers=job.workers,
        progress=job.progress,
    )


def _left_out_by_edits(local_input: Path) -> list[SkippedEpisode]:
    """The episodes the edit log beside them leaves out (`robotflow episodes drop`, or labelled discarded), as
    skipped episodes. export finds episode files without them; this reports them, and refuses an input that has
    nothing else, saying so (export would only find no episode files)."""
    try:
        left = episodes_left_out(local_input)
        if left and len(left) == len(find_episode_files(local_input, left_out=True)):
            raise ConvertError(
                f"{local_input}: every episode is dropped or labelled discarded in {EDITS_FILE} "
                "(robotflow episodes undrop / label to keep some)"
            )
    except (EpisodeError, EditError) as e:
        raise ConvertError(str(e)) from None
    return [SkippedEpisode(path, f"{why} in {EDITS_FILE}") for path, why in left.items()]


def convert_episodes(job: ConvertJob) -> ConvertSummary:
    """Convert the episodes of `job.input_path` into a new dataset at `job.output_dir` (either may be a URL)."""
    input_path, output_dir = _paths(job)
    codec = get_codec(
        job.codec,
        cameras=job.cameras,
        image_size=job.image_size,
        task_field=job.task_field or None,
        fps=job.fps or 15,
        channels=job.channels,
    )
    opts = dataclasses.replace(_writer_options(job), vcodec=job.vcodec)
    with dataset_output(output_dir, append=False) as local_out:
        local_in = local_input(input_path)
        edited_out = _left_out_by_edits(local_in)
        summary = convert(local_in, local_out, codec, opts)
    summary.skipped = [*edited_out, *summary.skipped]
    return summary


def append_episodes(job: AppendJob) -> ConvertSummary:
    """Add the episodes of `job.input_path` to the dataset at `job.output_dir` (either may be a URL).

    Refused, with the dataset untouched, when the codec or an explicit parameter differs from the dataset's.
    """
    input_path, output_dir = _paths(job)
    named = get_codec(job.codec)  # validates the name before anything is downloaded

    def inherit(existing: dict[str, Any]) -> Codec:
        params = existing.get("params", {})
        return get_codec(
            named.name,
            cameras=job.cameras if job.cameras is not None else params.get("cameras"),
            image_size=job.image_size
            if job.image_size is not None
            else tuple(params.get("image_size", DEFAULT_IMAGE_SIZE)),
            task_field=params.get("task_field", "task"),
            fps=(job.fps if job.fps is not None else params.get("fps", 15)) or 15,
            channels=job.channels if job.channels is not None else params.get("channels"),
        )

    with dataset_output(output_dir, append=True) as local_out:
        local_in = local_input(input_path)
        edited_out = _left_out_by_edits(local_in)
        summary = append(local_in, local_out, named, _writer_options(job), inherit=inherit)
    summary.skipped = [*edited_out, *summary.skipped]
    return summary
