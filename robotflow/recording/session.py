"""A recording session (`robotflow record`): run a graph with a recorder for N episodes, upload them when the
output is a URL. Callable from Python; the CLI prints what it returns."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robotflow.runtime.graph import SET_OPTION, load_graph
from robotflow.runtime.params import check_options, in_range, one_of, path_writable
from robotflow.runtime.scheduler import RunResult, Scheduler
from robotflow.storage import BackgroundUploader, Cache, StorageError, is_remote, list_dir, publish

from .graph_transform import RECORDER_TYPE, with_recorder

log = logging.getLogger("robotflow.recording")


class RecordError(Exception):
    """A recording session cannot start; one line."""


@dataclass(frozen=True)
class RecordOptions:
    """One recording session; `record(opts)` runs it. The `robotflow record` options are generated from the
    fields (metadata: robotflow.scripts.options)."""

    graph_file: str = field(metadata={"cli": False})  # the command's GRAPH argument
    episodes: int = in_range(1, None, help="Number of episodes to record.")
    output_dir: str = path_writable(
        help="Where episode files go: a directory, or a URL (s3://...) each is uploaded to once it closes."
    )
    task: str = field(
        default="", metadata={"help": "Task text stored with each episode (e.g. 'stack the green cube')."}
    )
    sets: tuple[str, ...] = field(default=(), metadata=SET_OPTION)
    image_encoding: str = one_of(("jpeg", "raw"), "jpeg")
    jpeg_quality: int = in_range(1, 100, 90)
    progress: bool = field(default=False, metadata={"cli": False})  # the recorder's live status line on stderr
    stats: bool = field(default=False, metadata={"help": "Print the runtime stats table at exit."})


@dataclass(frozen=True)
class Upload:
    """What uploading a directory of episodes to a URL did: the files uploaded, or a one-line error."""

    local_dir: str
    url: str
    files: list[str]
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def message(self) -> str:
        if self.error is not None:
            return f"error: {self.error}; the episodes are kept in {self.local_dir} and uploaded by the next run to {self.url}"
        return f"uploaded {len(self.files)} file(s) to {self.url}"


@dataclass
class RecordRun:
    result: RunResult
    reports: dict[str, dict]  # every node's report (the recorder's under `recorder`)
    recorder: str  # the recorder node's name
    upload: Upload | None = None  # None: the output was a local directory
    episodes: list[dict] = field(default_factory=list)  # the recorder's closed episodes


def upload_episodes(local_dir: str | Path, url: str) -> Upload:
    """Upload the closed episodes in `local_dir` (this run's and any left by an earlier failed upload) to `url`.

    On failure the episodes stay in `local_dir`, which the cache never evicts.
    """
    done, error = publish(Path(local_dir), url, overwrite=False)
    return Upload(str(local_dir), url, done, error)


def next_remote_index(url: str) -> int:
    """One past the highest episode number in a remote directory, so episodes never overwrite remote ones.
    Raises StorageError."""
    names = list_dir(url)
    indices = [int(n[len("episode_") :].split(".")[0]) for n in names if n.startswith("episode_") and n.endswith(".h5")]
    return max(indices, default=-1) + 1


def record(opts: RecordOptions, warn: Callable[[str], None] = log.warning) -> RecordRun:
    """Record `opts.episodes` episodes of the graph; `warn(message)` hears about a remote output that cannot be
    listed (recorded locally then, uploaded after the run). Raises RecordError, GraphError."""
    check_options(opts, RecordError)
    spec = load_graph(opts.graph_file, opts.sets)
    tasks = [n.name for n in spec.nodes if n.type_name != RECORDER_TYPE and n.has_param("episodes")]
    for name in tasks:
        spec = spec.set_params(name, {"episodes": opts.episodes})
    params = {
        "output_dir": opts.output_dir,
        "image_encoding": opts.image_encoding,
        "jpeg_quality": opts.jpeg_quality,
        "progress": opts.progress,
    }
    if opts.task:
        params["task"] = opts.task
    if not tasks:  # no task node counts episodes: the recorder ends the run after N
        params["max_episodes"] = opts.episodes
    url = opts.output_dir if is_remote(opts.output_dir) else None
    if url is not None:
        # Written locally, uploaded by a background process as each episode closes; the local copy stays until
        # its upload succeeded.
        params["output_dir"] = str(Cache().output_dir(url))
        try:
            params["first_index"] = next_remote_index(url)
        except StorageError as e:
            warn(f"{e}; recording locally, upload after the run")
            params["first_index"] = 0
    spec, name = with_recorder(spec, params)
    uploader = BackgroundUploader(Path(params["output_dir"]), url) if url is not None else None
    sched = Scheduler(spec, duration_s=None, stats_every_s=3.0 if opts.stats else None)
    try:
        result = sched.run()
    finally:
        done = uploader.finish() if uploader is not None else None
    upload = None if done is None else Upload(params["output_dir"], url, done[0], done[1])
    episodes = sched.reports.get(name, {}).get("episodes", [])
    return RecordRun(result, sched.reports, name, upload, episodes)
