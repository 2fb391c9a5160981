"""`robotflow rollout`: run a trained policy in a graph for N seeded episodes, recording every one."""

from __future__ import annotations

from typing import Any

import click

from robotflow.evaluation import RolloutOptions, list_run_checkpoints
from robotflow.evaluation import rollout as run_rollout
from robotflow.scripts.common import user_errors
from robotflow.scripts.options import build, dataclass_options


@click.command()
@dataclass_options(RolloutOptions)
@click.option("--list", "list_only", is_flag=True, help="List the run's checkpoints and exit.")
def rollout(list_only: bool, **params: Any) -> None:
    """Roll out a policy checkpoint (or a served policy, --server) for N seeded episodes; print a success table."""
    if params["server"] is not None and list_only:
        raise click.UsageError("--server replaces --checkpoints-dir / --checkpoint / --list: give one or the other")
    if list_only and params["checkpoints_dir"] is not None:
        with user_errors():
            for s, where in list_run_checkpoints(params["checkpoints_dir"]):
                click.echo(f"{s:>10}  {where}")
        return
    opts = build(RolloutOptions, params)
    with user_errors():
        run_rollout(opts, echo=click.echo)
