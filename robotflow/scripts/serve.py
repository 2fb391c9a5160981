"""`robotflow serve`: serve a run's checkpoints over Protocol v1 (docs/serving.md)."""

from __future__ import annotations

import os
import sys

import click

from robotflow.storage import StorageError, fetch_checkpoint, is_remote


def _say(message: str) -> None:
    click.echo(f"robotflow serve: {message}")
    sys.stdout.flush()


@click.command()
@click.option(
    "--checkpoints-dir",
    type=click.Path(file_okay=False),
    required=True,
    help="A training run (OUTPUT_DIR/RUN_NAME from `robotflow train`), or one checkpoint's directory; either may "
    "be a URL (s3://...), of which the --checkpoint (default: newest) is downloaded and served.",
)
@click.option("--checkpoint", default=None, help="Step of the default model (default: the newest).")
@click.option("--codec", default=None, help="Refuse to start unless every checkpoint was trained with this codec.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1..."
)
@click.option(
    "--token",
    default=None,
    envvar="ROBOTFLOW_TOKEN",
    help="Require `Authorization: Bearer TOKEN` on every request (or set ROBOTFLOW_TOKEN).",
)
@click.option("--insecure", is_flag=True, help="Allow binding a non-loopback address without a token.")
@click.option(
    "--max-message-mb", type=float, default=16.0, show_default=True, help="Larger observations get an error reply."
)
def serve(checkpoints_dir, checkpoint, codec, host, port, device, token, insecure, max_message_mb):
    """Serve a run's checkpoints to Protocol v1 clients (policy.remote, Positronic's RemotePolicy).

    GET /api/v1/models lists the model ids (checkpoint steps); WS /api/v1/session uses the default model,
    WS /api/v1/session/STEP a given one. Each request returns the whole predicted action chunk.
    """
    from robotflow.serving.server import InferenceServer, ServeConfig, ServeError

    if not 1 <= port <= 65535:
        raise click.BadParameter(f"{port} is not a TCP port (1..65535)", param_hint="--port")
    if max_message_mb <= 0:
        raise click.BadParameter("must be positive", param_hint="--max-message-mb")
    if is_remote(checkpoints_dir):
        try:  # one checkpoint from object storage, not every step of the run
            checkpoints_dir, checkpoint = str(fetch_checkpoint(checkpoints_dir, checkpoint)), None
        except StorageError as e:
            raise click.ClickException(str(e)) from None
    cfg = ServeConfig(
        checkpoints_dir=checkpoints_dir,
        checkpoint=checkpoint,
        codec=codec,
        host=host,
        port=port,
        device=device,
        token=token or None,
        insecure=insecure,
        max_message_bytes=int(max_message_mb * 1024 * 1024),
    )
    try:
        server = InferenceServer(cfg, say=_say)
        server.bind()
    except (ServeError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    if os.environ.get("ROBOTFLOW_TOKEN") and token == os.environ["ROBOTFLOW_TOKEN"]:
        _say("bearer token taken from ROBOTFLOW_TOKEN")
    try:
        server.load_default()
    except (ServeError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    server.run()
