"""The chunk executor's inference thread: one forward pass (or remote request) at a time, on the latest job."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# infer(observation, observation_ns) -> (chunk, chunk_start_ns): `chunk` is an (n, action_dim) array of
# unnormalized actions, action i meant for chunk_start_ns + i / fps. Called on the executor's worker thread.
ChunkSource = Callable[[Mapping[str, Any], int], tuple[np.ndarray, int]]


@dataclass
class Job:
    generation: int
    observation: Mapping[str, Any]
    observation_ns: int


@dataclass
class ChunkResult:
    generation: int
    chunk: Any  # np.ndarray (n, D) unnormalized, or a normalized tensor (B, C, D) for sync ensembling
    start_ns: int  # timestamp action 0 is meant for
    infer_s: float
    error: BaseException | None = None


class InferenceWorker:
    """One thread that runs forward passes, one at a time, on the latest job it was given.

    A reset of the source (the policy's internal queues) runs here too, before the next job, so it never
    races a forward pass and never makes the control thread wait for one.
    """

    def __init__(self, source: ChunkSource, reset: Callable[[], None] | None, threads: int | None):
        self._source = source
        self._reset = reset
        self._threads = threads
        self._cv = threading.Condition()
        self._job: Job | None = None
        self._result: ChunkResult | None = None
        self._reset_pending = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="robotflow-chunk-inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._threads:
            # OpenMP's thread count is per calling thread: this limits the worker only.
            torch.set_num_threads(self._threads)
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job, self._job = self._job, None
                reset, self._reset_pending = self._reset_pending, False
            t = time.perf_counter()
            try:
                if reset and self._reset is not None:
                    self._reset()
                chunk, start_ns = self._source(job.observation, job.observation_ns)
                res = ChunkResult(job.generation, chunk, int(start_ns), time.perf_counter() - t)
            except BaseException as e:  # handed to the control thread, which re-raises it
                res = ChunkResult(job.generation, None, job.observation_ns, time.perf_counter() - t, e)
            with self._cv:
                self._result = res
                self._cv.notify_all()

    def submit(self, job: Job) -> None:
        with self._cv:
            self._job = job
            self._cv.notify_all()

    def request_reset(self) -> None:
        with self._cv:
            self._reset_pending = True

    def take(self, timeout: float) -> ChunkResult | None:
        """The finished result, waiting at most `timeout` seconds (0: do not wait)."""
        with self._cv:
            if timeout > 0:
                self._cv.wait_for(lambda: self._result is not None or self._closed, timeout)
            res, self._result = self._result, None
            return res

    def close(self) -> bool:
        """Stop the thread; False if a forward pass still holds it (and the policy) after 30 s."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=30)
        return not self._thread.is_alive()


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)
