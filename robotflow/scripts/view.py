"""`robotflow view`: open a recorded episode or one episode of a converted dataset in Rerun."""

from __future__ import annotations

from pathlib import Path

import click

from robotflow.scripts.common import local_path, user_errors


@click.command("view")
@click.argument("target", metavar="EPISODE|DATASET")
@click.option("--episode", "episode_index", type=int, default=0, show_default=True, help="Dataset episode to show.")
@click.option(
    "--save",
    "save_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a Rerun recording (.rrd) here instead of spawning a viewer.",
)
def view(target, episode_index, save_path):
    """Show EPISODE (a recorded .h5 file) or an episode of DATASET (a LeRobot dataset directory) in Rerun.

    Both may be URLs (s3://...). Cameras are images, `ee_pose` fields are also 3-D transforms, other numeric
    fields are plots, all on the recording's own timeline.
    """
    from robotflow.views.rerun import ViewError, show_recording  # rerun-sdk only for this command

    path = Path(local_path(target))
    try:
        with user_errors():
            what = show_recording(path, target, episode_index, save_path or "spawn")
    except ViewError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{what} -> {save_path or 'Rerun viewer'}")
