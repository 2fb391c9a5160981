"""Summaries of recorded episodes: a directory's (`robotflow info`), the one episode table every command prints,
and the JSON outcomes file of `launch --summary` and rollouts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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


# ---- episode tables: `launch`, `replay`, `record`, `info` and rollouts print episodes with this ------------

# column: (header, alignment, the cell of a row); rows are dicts of episode fields (`index` is the episode number)
_COLUMNS: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], Any]]] = {
    "episode": ("episode", ">7", lambda r: r["index"]),
    "seed": ("seed", ">6", lambda r: r["seed"]),
    "success": ("success", ">7", lambda r: bool(r["success"])),
    "outcome": ("outcome", "<9", lambda r: r["outcome"]),
    "duration": ("duration s", ">10", lambda r: f"{r['duration_s']:.2f}"),
    "gaps": ("gaps", ">5", lambda r: r["gaps"]),
    "frames": ("frames", "", lambda r: " ".join(f"{ch}={n}" for ch, n in sorted(r["frames"].items()))),
    "task": ("task", "", lambda r: r["task"]),
}
EPISODE_COLUMNS = tuple(_COLUMNS)


def format_episode_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A header and one line per episode, with the named columns (of EPISODE_COLUMNS) two spaces apart."""
    cols = [_COLUMNS[c] for c in columns]
    lines = ["  ".join(format(header, align) for header, align, _ in cols).rstrip()]
    for r in rows:
        lines.append("  ".join(format(str(cell(r)), align) for _, align, cell in cols).rstrip())
    return "\n".join(lines)


def success_line(results: Sequence[Mapping[str, Any]]) -> str:
    """`success rate: 67% (2/3)` of task-node episode results."""
    k = sum(bool(r["success"]) for r in results)
    return f"success rate: {k / len(results):.0%} ({k}/{len(results)})"


def write_outcomes(path: str | Path, results: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> dict:
    """Write episode outcomes (seed, success, duration) with their success rate and `extra` keys as JSON."""
    doc = {
        "episodes": [
            {"seed": int(r["seed"]), "success": bool(r["success"]), "duration_s": float(r["duration_s"])}
            for r in results
        ],
        "success_rate": (sum(bool(r["success"]) for r in results) / len(results)) if results else 0.0,
        **extra,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def format_summary(summary: Mapping[str, Any]) -> str:
    """`robotflow info`'s text of a summarize_episodes() result: totals, the episode table, the stream table."""
    rows, streams, outcomes = summary["episodes"], summary["streams"], summary["outcomes"]
    lines = [
        f"{len(rows)} episodes, {summary['total_duration_s']:.1f} s, outcomes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none")
    ]
    if rows:
        lines += ["", format_episode_table(rows, ("episode", "outcome", "duration", "seed", "gaps", "task"))]
    if streams:
        w = max(len("stream"), *(len(c) for c in streams))
        lines += ["", f"{'stream':<{w}}  {'messages':>9} {'rate Hz':>8} {'nominal':>8} {'gaps':>5}"]
        for ch, s in sorted(streams.items()):
            nominal = "-" if s["nominal_hz"] is None else f"{s['nominal_hz']:g}"
            rate = "-" if s["rate_hz"] is None else f"{s['rate_hz']:.1f}"
            lines.append(f"{ch:<{w}}  {s['messages']:>9} {rate:>8} {nominal:>8} {s['gaps']:>5}")
    return "\n".join(lines)
