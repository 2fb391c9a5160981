"""Failure videos: an mp4 of a camera channel beside each failed episode's recording."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from robotflow.recording.reader import EpisodeFile

from .episodes import EpisodeOutcome


def write_failure_videos(
    outcomes: Sequence[EpisodeOutcome], channel: str = "front_camera/frame", fps: float | None = None
) -> list[Path]:
    """An mp4 of `channel` beside each failed episode's recording (`episode_000003.front_camera.mp4`).

    Episodes recorded without that channel (a camera-less low-dim graph) get none. The frame rate is the
    channel's measured rate unless `fps` is given.
    """
    written: list[Path] = []
    for o in outcomes:
        if o.success or not o.recording:
            continue
        path = Path(o.recording)
        with EpisodeFile(path) as ep:
            if not ep.has_channel(channel):
                continue
            ts = ep.timestamps(channel)
            if len(ts) == 0:
                continue
            rate = fps or ((len(ts) - 1) / ((ts[-1] - ts[0]) * 1e-9) if len(ts) > 1 and ts[-1] > ts[0] else 15.0)
            dest = path.with_name(f"{path.stem}.{channel.split('/')[0]}.mp4")
            _write_mp4(dest, ep, channel, len(ts), rate)
            written.append(dest)
    return written


def _write_mp4(dest: Path, ep, channel: str, n: int, fps: float) -> None:
    import av  # PyAV (FFmpeg) only when a failure video is written

    h, w, _ = ep.image_shape(channel)
    tmp = dest.with_suffix(".mp4.partial")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for start in range(0, n, 64):
            for img in ep.images(channel, list(range(start, min(n, start + 64)))):
                frame = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width], format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, dest)
