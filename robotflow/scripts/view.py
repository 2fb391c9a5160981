"""`robotflow view`: open a recorded episode (a file, or one of a directory) or one episode of a converted dataset in
Rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from robotflow.scripts.common import local_path, user_errors
from robotflow.scripts.options import build, dataclass_options
from robotflow.views.options import ViewOptions


@click.command("view")
@click.argument("target", metavar="EPISODE|DIR|DATASET")
@dataclass_options(ViewOptions)
def view(target: str, **params: Any) -> None:
    """Show EPISODE (a recorded .h5 file), episode --episode of DIR (a directory of recorded episodes; those dropped
    with `robotflow episodes drop` are left out) or of DATASET (a LeRobot dataset directory) in Rerun.

    Both may be URLs (s3://...). Cameras are images, `ee_pose` fields are also 3-D transforms, other numeric
    fields are plots, all on the recording's own timeline.
    """
    from robotflow.views.rerun import ViewError, show_recording  # rerun-sdk only for this command

    opts = build(ViewOptions, params)
    path = Path(local_path(target))
    try:
        with user_errors():
            what = show_recording(path, target, opts.episode, opts.save or "spawn")
    except ViewError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{what} -> {opts.save or 'Rerun viewer'}")
