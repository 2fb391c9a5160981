"""`serve(opts)`: what `robotflow serve` runs; `ServeOptions`, its settings (the CLI's options come from its fields).

The server itself (FastAPI/uvicorn, torch) is `robotflow.serving.server`, imported only when serving starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def _directory(value: str) -> str:
    if Path(value).is_file():
        raise ValueError(f"Directory {value!r} is a file.")
    return value


def _tcp_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (1..65535)")
    return port


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be positive")
    return value


@dataclass(frozen=True)
class ServeOptions:
    """What `robotflow serve` serves and how (field metadata: robotflow.scripts.options)."""

    checkpoints_dir: str = field(
        metadata={
            "metavar": "DIRECTORY",
            "parse": _directory,
            "help": "A training run (OUTPUT_DIR/RUN_NAME from `robotflow train`), or one checkpoint's directory; "
            "either may be a URL (s3://...), of which the --checkpoint (default: newest) is downloaded and served.",
        }
    )
    checkpoint: str | None = field(default=None, metadata={"help": "Step of the default model (default: the newest)."})
    codec: str | None = field(
        default=None, metadata={"help": "Refuse to start unless every checkpoint was trained with this codec."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind (loopback by default)."})
    port: int = field(default=8000, metadata={"parse": _tcp_port})
    device: str = field(default="auto", metadata={"help": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1..."})
    token: str | None = field(
        default=None,
        metadata={
            "envvar": "ROBOTFLOW_TOKEN",
            "help": "Require `Authorization: Bearer TOKEN` on every request (or set ROBOTFLOW_TOKEN).",
        },
    )
    insecure: bool = field(default=False, metadata={"help": "Allow binding a non-loopback address without a token."})
    max_message_mb: float = field(
        default=16.0, metadata={"parse": _positive, "help": "Larger observations get an error reply."}
    )


def serve(opts: ServeOptions, say: Callable[[str], None]) -> None:
    """Serve the checkpoints of `opts` until Ctrl-C / SIGTERM; `say` gets the server's status lines.

    Refusals (bad checkpoints, codec, bind address, a missing remote run) raise `ServeError` with one line.
    """
    from robotflow.serving.server import InferenceServer, ServeConfig, ServeError  # fastapi/uvicorn, torch

    _tcp_port(opts.port)
    _positive(opts.max_message_mb)
    cfg = ServeConfig(  # a URL is resolved by the server's catalog: only the chosen checkpoint is downloaded
        checkpoints_dir=opts.checkpoints_dir,
        checkpoint=opts.checkpoint,
        codec=opts.codec,
        host=opts.host,
        port=opts.port,
        device=opts.device,
        token=opts.token or None,
        insecure=opts.insecure,
        max_message_bytes=int(opts.max_message_mb * 1024 * 1024),
    )
    try:
        server = InferenceServer(cfg, say=say)
        server.bind()
    except (FileNotFoundError, ValueError) as e:  # ServeError is a ValueError
        raise ServeError(str(e).splitlines()[0]) from None
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise ServeError(f"cannot serve on {opts.host}:{opts.port}: {e.strerror or e}") from None
    if os.environ.get("ROBOTFLOW_TOKEN") and opts.token == os.environ["ROBOTFLOW_TOKEN"]:
        say("bearer token taken from ROBOTFLOW_TOKEN")
    try:
        server.load_default()
    except (FileNotFoundError, ValueError) as e:
        raise ServeError(str(e).splitlines()[0]) from None
    server.run()
