"""The options of the Rerun views, kept apart from robotflow.views.rerun so that a command can list them
without importing rerun-sdk; the `robotflow view` and `launch --rerun-*` options are generated from the fields
(metadata: robotflow.scripts.options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robotflow.runtime.params import positive


@dataclass(frozen=True)
class LiveViewOptions:
    """What `launch --rerun` shows: `with_view(spec, target, opts.channels, opts.rate)`."""

    channels: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--rerun-channel",
            "multiple": True,
            "metavar": "NODE/OUTPUT",
            "help": "A channel for --rerun (repeatable; default: every channel but episode events).",
        },
    )
    rate: float = positive(
        10.0,
        metadata={"flag": "--rerun-rate", "metavar": "HZ"},
        help="The most messages a second --rerun shows of each channel (the newest one; full resolution).",
    )


@dataclass(frozen=True)
class ViewOptions:
    """`robotflow view`: which episode of a dataset, and where to (`show_recording(..., opts.episode, target)`)."""

    episode: int = field(
        default=0,
        metadata={
            "help": "Episode to show: of a dataset, its position; of a directory of recorded episodes, its number "
            "(episode_NNNNNN.h5; dropped ones are left out)."
        },
    )
    save: str | None = field(
        default=None,
        metadata={"metavar": "FILE", "help": "Write a Rerun recording (.rrd) here instead of spawning a viewer."},
    )
