"""Summaries of a directory of recorded episodes (`robotflow info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .reader import EpisodeError, EpisodeFile, find_episode_files


def summarize_episodes(directory: str | Path, warn=None) -> dict[str, Any]:
    """Episodes, per-stream measured and nominal rates, gaps and outcomes of every episode file under `directory`.

    Unreadable files are skipped and reported through `warn(message)`; unfinished `*.h5.partial` files are
    listed under `partial_files`.
    """
    files = find_episode_files(directory)
    partials = sorted(Path(directory).rglob("*.h5.partial")) if Path(directory).is_dir() else []
    rows, streams = [], {}
    for path in files:
        try:
            ep = EpisodeFile(path)
        except EpisodeError as e:
            if warn is not None:
                warn(str(e))
            continue
        with ep:
            i = ep.info
            rows.append(
                {
                    "file": path.name,
                    "index": i.episode_index,
                    "outcome": i.outcome,
                    "duration_s": i.duration_s,
                    "task": i.task,
                    "seed": i.seed,
                    "gaps": int(sum(c.get("gaps", 0) for c in i.counts.values())),
                }
            )
            for ch in ep.channels():
                ts = ep.timestamps(ch)
                s = streams.setdefault(ch, {"messages": 0, "seconds": 0.0, "gaps": 0, "nominal_hz": i.rates.get(ch)})
                s["messages"] += len(ts)
                if len(ts) > 1:
                    s["seconds"] += (ts[-1] - ts[0]) / 1e9
                s["gaps"] += int(i.counts.get(ch, {}).get("gaps", 0))
    for s in streams.values():
        s["rate_hz"] = round(s["messages"] / s["seconds"], 2) if s["seconds"] > 0 else None
    outcomes = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    total = float(np.nansum([r["duration_s"] for r in rows])) if rows else 0.0
    return {
        "episodes": rows,
        "streams": streams,
        "outcomes": outcomes,
        "total_duration_s": total,
        "partial_files": [str(p) for p in partials],
    }
