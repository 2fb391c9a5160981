"""Several training processes on one machine through `accelerate launch` (LeRobot's own multi-GPU path).

`launch_processes(opts)` starts `num_processes` copies of `python -m robotflow.training.worker OPTIONS_JSON`;
each trains the same options as one rank of the group. `rank()`/`world_size()` say which process this is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from robotflow.storage import Cache, is_remote
from robotflow.training.errors import TrainError
from robotflow.training.options import TrainOptions

log = logging.getLogger("robotflow.train")


def rank() -> int:
    """This process's global rank under `accelerate launch`/torchrun (0 when training alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def options_to_json(opts: TrainOptions) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(opts).items()})


def options_from_json(text: str) -> TrainOptions:
    return TrainOptions(**json.loads(text))


def launch_processes(opts: TrainOptions) -> Path:
    """Run `opts` in `num_processes` processes with `accelerate launch`; returns the (local) run dir.

    The processes find each other through torch.distributed: NCCL on GPUs, gloo on CPU (`--device cpu`).
    The remote dataset, if any, was downloaded here once; the run's remote upload happens on rank 0.
    """
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        f"--num_processes={opts.num_processes}",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        # accelerate's multi-process launcher; with `--device cpu` LeRobot's Accelerator(cpu=True) then uses gloo.
        "--multi_gpu",
        f"--main_process_port={_free_port()}",
        "-m",
        "robotflow.training.worker",
        options_to_json(dataclasses.replace(opts, num_processes=1)),
    ]
    log.info("launching: %s", " ".join(cmd))
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise TrainError(f"training with {opts.num_processes} processes failed (exit status {res.returncode})")
    out = str(opts.output_dir)
    return (Cache().local_path(out) if is_remote(out) else Path(out).expanduser()) / opts.run_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
