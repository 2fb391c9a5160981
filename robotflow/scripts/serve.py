"""`robotflow serve`: parses `robotflow.serving.run.ServeOptions` and runs `robotflow.serving.run.serve`."""

from __future__ import annotations

import sys
from typing import Any

import click

from robotflow.scripts.options import build, dataclass_options
from robotflow.serving.run import ServeOptions
from robotflow.serving.run import serve as serve_checkpoints


def _say(message: str) -> None:
    click.echo(f"robotflow serve: {message}")
    sys.stdout.flush()


@click.command()
@dataclass_options(ServeOptions)
def serve(**params: Any) -> None:
    """Serve a run's checkpoints to Protocol v1 clients (policy.remote, Positronic's RemotePolicy).

    GET /api/v1/models lists the model ids (checkpoint steps); WS /api/v1/session uses the default model,
    WS /api/v1/session/STEP a given one. Each request returns the whole predicted action chunk.
    """
    from robotflow.serving.server import ServeError  # fastapi/uvicorn, torch: imported only to serve

    try:
        serve_checkpoints(build(ServeOptions, params), say=_say)
    except ServeError as e:
        raise click.ClickException(str(e)) from None
