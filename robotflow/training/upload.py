"""Runs whose --output-dir is a URL: the local mirror they train in, and the uploads of their checkpoints."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from dataclasses import replace
from pathlib import Path

from robotflow.policies.checkpoints import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    PRETRAINED_MODEL_DIR,
    remote_checkpoints,
)
from robotflow.storage import Cache, StorageError, join, list_dir
from robotflow.training.errors import TrainError
from robotflow.training.launch import rank
from robotflow.training.options import TrainOptions

log = logging.getLogger("robotflow.train")


class CheckpointUploader:
    """Uploads each checkpoint of a run to its remote run directory while training goes on.

    A background thread keeps the training loop (and, with several processes, the barrier after each save)
    from waiting for the network; `close()` waits for the queue and uploads whatever else the run wrote.
    """

    def __init__(self, cache: Cache, run_dir: Path, url: str):
        self.cache, self.run_dir, self.url = cache, run_dir, url
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="checkpoint-upload", daemon=True)
        self._thread.start()

    def submit(self, checkpoint_dir: Path) -> None:
        self._queue.put(Path(checkpoint_dir))

    def _run(self) -> None:
        while (ckpt := self._queue.get()) is not None:
            rel = ckpt.relative_to(self.run_dir).as_posix()
            try:
                self.cache.upload(ckpt, join(self.url, rel))
                self.uploaded.append(rel)
                log.info("uploaded %s to %s", rel, self.url)
            except StorageError as e:
                self.errors.append(str(e))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if not self.errors:
            try:
                self.cache.upload(self.run_dir, self.url)
            except StorageError as e:
                self.errors.append(str(e))
        if self.errors:
            raise TrainError(
                f"{self.errors[0]}; the run is kept in {self.run_dir} (not evicted from the cache), and "
                f"`robotflow train --resume` with the same --output-dir uploads it"
            )
        self.cache.finish_output(self.url)


def remote_output(opts: TrainOptions, cache: Cache) -> tuple[TrainOptions, str]:
    """Map a remote --output-dir onto its local mirror; returns the options with the local dir and the run URL.

    A resumed run gets its newest checkpoint downloaded first. Checks that touch the remote run only on rank 0.
    """
    out_url = str(opts.output_dir).rstrip("/")
    run_url = join(out_url, opts.run_name)
    local_out = cache.local_path(out_url)
    local_run = local_out / opts.run_name
    if rank() != 0:
        return replace(opts, output_dir=local_out), run_url
    if not opts.resume:
        _check_new_run(cache, run_url, local_run)
    else:
        _download_last_checkpoint(cache, run_url, local_run)
    cache.output_dir(run_url, create=False)  # LeRobot creates it (and refuses one that exists, unless resuming)
    return replace(opts, output_dir=local_out), run_url


def _check_new_run(cache: Cache, run_url: str, local_run: Path) -> None:
    if list_dir(join(run_url, CHECKPOINTS_DIR)):
        raise TrainError(f"run {run_url} already exists: pass --resume to continue it, or another --run-name")
    if local_run.exists():
        if cache.pinned(run_url):
            raise TrainError(
                f"{local_run} holds a run for {run_url} that was never uploaded: pass --resume to continue "
                "and upload it, or remove that directory"
            )
        shutil.rmtree(local_run)  # a cached copy of a run deleted remotely since


def _download_last_checkpoint(cache: Cache, run_url: str, local_run: Path) -> None:
    """The newest checkpoint whose upload finished (config.json goes last), unless the mirror has it."""
    complete = remote_checkpoints(run_url)
    if not complete:
        return
    step_dir = complete[-1][1].rsplit("/", 1)[0]
    local_step = local_run / CHECKPOINTS_DIR / step_dir.rsplit("/", 1)[-1]
    if not (local_step / PRETRAINED_MODEL_DIR / "config.json").is_file():
        cache.download(step_dir)
        last = local_run / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK
        last.unlink(missing_ok=True)
        last.symlink_to(local_step.name)
