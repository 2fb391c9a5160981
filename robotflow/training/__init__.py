"""Training policies with LeRobot's own loop on robotflow-converted datasets (what `robotflow train` runs).

- `options`: `TrainOptions`, one run's settings (the CLI's options are generated from its fields).
- `run`: `train(opts)`, the run itself.
- `lerobot_config`: the `TrainPipelineConfig` built from the options; `lerobot_patches`: the hooks in LeRobot's loop.
- `upload`: runs whose output is a URL; `launch`/`worker`: several processes through `accelerate launch`.
"""

from robotflow.training.errors import TrainError
from robotflow.training.options import TrainOptions
from robotflow.training.run import train

__all__ = ["TrainError", "TrainOptions", "train"]
