"""`robotflow view`: open a recorded episode or one episode of a converted dataset in Rerun."""

from __future__ import annotations

import json
from pathlib import Path

import click

from robotflow.storage import StorageError, local_input


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
    from robotflow.recording.reader import EpisodeError
    from robotflow.views.rerun import log_dataset_episode, log_episode, open_stream

    try:
        path = local_input(target)
    except StorageError as e:
        raise click.ClickException(str(e)) from None
    if not path.exists():
        raise click.ClickException(f"{target} does not exist")
    is_dataset = (path / "meta" / "info.json").is_file()
    if not is_dataset and not (path.is_file() and path.suffix == ".h5"):
        raise click.ClickException(
            f"{target} is neither an episode file (.h5) nor a LeRobot dataset (a directory with meta/info.json)"
        )
    if is_dataset:
        total = json.loads((path / "meta" / "info.json").read_text()).get("total_episodes", 0)
        if not 0 <= episode_index < total:
            raise click.ClickException(f"--episode {episode_index}: {target} has episodes 0..{total - 1}")
    try:
        rec = open_stream(save_path or "spawn", "robotflow-view")
    except RuntimeError as e:
        raise click.ClickException(f"{e} with --save") from None
    try:
        if is_dataset:
            n = log_dataset_episode(rec, path, episode_index)
            what = f"episode {episode_index} of {target}: {n} frames"
        else:
            try:
                n = log_episode(rec, Path(path))
            except EpisodeError as e:
                raise click.ClickException(str(e)) from None
            what = f"{target}: {n} messages"
    finally:
        rec.flush(timeout_sec=30.0)
        rec.disconnect()
    click.echo(f"{what} -> {save_path or 'Rerun viewer'}")
