"""`robotflow train`: parses the options of `robotflow.training.TrainOptions` and runs `robotflow.training.train`.

Also the module `accelerate launch ... -m robotflow.scripts.train ...` runs on each machine (README).
"""

from __future__ import annotations

from typing import Any

import click

from robotflow.policies.checkpoints import list_checkpoints
from robotflow.scripts.options import build, dataclass_options
from robotflow.training import TrainError, TrainOptions, train


@click.command("train")
@dataclass_options(TrainOptions)
def train_command(**params: Any) -> None:
    """Train a LeRobot policy on a converted dataset with LeRobot's training loop.

    Checkpoints: OUTPUT_DIR/RUN_NAME/checkpoints/<step>/pretrained_model/ (+ robotflow_codec.json).
    W&B logging is on with --wandb or when WANDB_API_KEY is set. Nothing is pushed to the Hub.
    For several machines, run `accelerate launch --num_machines M --machine_rank R --main_process_ip IP
    --num_processes N --multi_gpu -m robotflow.scripts.train ...` on each (see the README).
    """
    try:
        run_dir = train(build(TrainOptions, params))
    except TrainError as e:
        raise click.ClickException(str(e)) from None
    ckpts = list_checkpoints(run_dir)
    last = ckpts[-1] if ckpts else None
    click.echo(
        f"run {run_dir}: {len(ckpts)} checkpoint(s)" + (f", latest step {last.step} at {last.path}" if last else "")
    )


if __name__ == "__main__":  # pragma: no cover
    train_command()
