"""One rank of `launch_processes`: `python -m robotflow.training.worker OPTIONS_JSON` (run by `accelerate launch`)."""

from __future__ import annotations

import logging
import sys

from robotflow.training.errors import TrainError
from robotflow.training.launch import options_from_json
from robotflow.training.run import train


def main(argv: list[str]) -> int:
    """Train the options in argv[0] (JSON, from `options_to_json`); a TrainError is one line and exit status 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        train(options_from_json(argv[0]))
    except TrainError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run by `accelerate launch`
    sys.exit(main(sys.argv[1:]))
