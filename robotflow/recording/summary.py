"""Summaries of recorded episodes: a directory's (`robotflow info`), the one episode table every command prints,
and the JSON outcomes file of `launch --summary` and rollouts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .edits import EDITS_FILE, EpisodeEdits, load_edits
from .metrics import control_time, episode_metrics, format_metrics
from .reader import EpisodeError, EpisodeFile, find_episode_files


def episode_row(ep: EpisodeFile, edits: EpisodeEdits) -> dict[str, Any]:
    """One episode's line of `info`: its attrs, the label and drop its directory's edit log gives it, and who
    drove (interventions and human seconds: None without a recorded arbiter `control` channel)."""
    i = ep.info
    control = control_time(ep)
    return {
        "file": ep.name,
        "index": i.episode_index,
        "outcome": i.outcome,
        "label": edits.label(ep.name, i.label),
        "recorded_label": i.label,
        "dropped": edits.is_dropped(ep.name),
        "duration_s": i.duration_s,
        "task": i.task,
        "seed": i.seed,
        "gaps": int(sum(c.get("gaps", 0) for c in i.counts.values())),
        "interventions": None if control is None else control.interventions,
        "human_s": None if control is None else round(control.human_s, 3),
    }


def _add_streams(streams: dict[str, dict[str, Any]], ep: EpisodeFile) -> None:
    i = ep.info
    for ch in ep.channels():
        ts = ep.timestamps(ch)
        s = streams.setdefault(ch, {"messages": 0, "seconds": 0.0, "gaps": 0, "nominal_hz": i.rates.get(ch)})
        s["messages"] += len(ts)
        if len(ts) > 1:
            s["seconds"] += (ts[-1] - ts[0]) / 1e9
        s["gaps"] += int(i.counts.get(ch, {}).get("gaps", 0))


def summarize_episodes(directory: str | Path, warn=None) -> dict[str, Any]:
    """Episodes, per-stream measured and nominal rates, gaps, outcomes and metrics (episode_metrics) of every
    episode file under `directory`, after the edit log beside them (`robotflow episodes`).

    Dropped episodes are listed under `dropped` and count nowhere else; an edited label replaces the recorded
    one. Unreadable files are skipped and reported through `warn(message)`; unfinished `*.h5.partial` files are
    listed under `partial_files`. Raises EditError for a damaged edit log.
    """
    files = find_episode_files(directory, left_out=True)
    partials = sorted(Path(directory).rglob("*.h5.partial")) if Path(directory).is_dir() else []
    rows, dropped, streams, logs = [], [], {}, {}
    for path in files:
        if path.parent not in logs:
            logs[path.parent] = load_edits(path.parent)
        try:
            ep = EpisodeFile(path)
        except EpisodeError as e:
            if warn is not None:
                warn(str(e))
            continue
        with ep:
            row = episode_row(ep, logs[path.parent])
            (dropped if row["dropped"] else rows).append(row)
            if not row["dropped"]:
                _add_streams(streams, ep)
    for s in streams.values():
        s["rate_hz"] = round(s["messages"] / s["seconds"], 2) if s["seconds"] > 0 else None
    outcomes = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    total = float(np.nansum([r["duration_s"] for r in rows])) if rows else 0.0
    return {
        "episodes": rows,
        "dropped": dropped,
        "streams": streams,
        "outcomes": outcomes,
        "metrics": episode_metrics(rows),
        "total_duration_s": total,
        "partial_files": [str(p) for p in partials],
    }


def recorded_metrics(paths: Sequence[str | Path]) -> dict[str, Any]:
    """episode_metrics() of these episode files as recorded (a rollout's report of its own episodes, which an edit
    log left by an earlier run into the same directory must not change)."""
    rows = []
    for path in paths:
        with EpisodeFile(path) as ep:
            rows.append(episode_row(ep, EpisodeEdits(Path(path).parent)))
    return episode_metrics(rows)


# ---- episode tables: `launch`, `replay`, `record`, `info` and rollouts print episodes with this ------------

# column: (header, alignment, the cell of a row); rows are dicts of episode fields (`index` is the episode number)
_COLUMNS: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], Any]]] = {
    "episode": ("episode", ">7", lambda r: r["index"]),
    "seed": ("seed", ">6", lambda r: r["seed"]),
    "success": ("success", ">7", lambda r: bool(r["success"])),
    "outcome": ("outcome", "<9", lambda r: r["outcome"]),
    # an edited label (edits.jsonl) is marked with a `*`
    "label": ("label", "<10", lambda r: (r["label"] or "-") + ("*" if r["label"] != r["recorded_label"] else "")),
    "interventions": ("interventions", ">13", lambda r: "-" if r["interventions"] is None else r["interventions"]),
    "human": ("human s", ">7", lambda r: "-" if r["human_s"] is None else f"{r['human_s']:.1f}"),
    "dropped": ("dropped", "<7", lambda r: "dropped" if r["dropped"] else ""),
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


def format_summary(summary: Mapping[str, Any], show_dropped: bool = False) -> str:
    """`robotflow info`'s text of a summarize_episodes() result: totals, metrics, the episode table (dropped
    episodes named below it, or in it with `show_dropped`), the stream table."""
    rows, streams, outcomes, dropped = summary["episodes"], summary["streams"], summary["outcomes"], summary["dropped"]
    lines = [
        f"{len(rows)} episodes, {summary['total_duration_s']:.1f} s, outcomes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"),
        *format_metrics(summary["metrics"]),
    ]
    table = sorted([*rows, *dropped], key=lambda r: r["file"]) if show_dropped else rows
    if table:
        lines += ["", format_episode_table(table, _info_columns(table, show_dropped and bool(dropped)))]
        if any(r["label"] != r["recorded_label"] for r in table):
            lines.append(f"* label edited in {EDITS_FILE} (robotflow episodes label)")
    if dropped and not show_dropped:
        names = ", ".join(r["file"] for r in dropped)
        lines += ["", f"dropped in {EDITS_FILE} ({len(dropped)}; info --show-dropped lists them): {names}"]
    if streams:
        w = max(len("stream"), *(len(c) for c in streams))
        lines += ["", f"{'stream':<{w}}  {'messages':>9} {'rate Hz':>8} {'nominal':>8} {'gaps':>5}"]
        for ch, s in sorted(streams.items()):
            nominal = "-" if s["nominal_hz"] is None else f"{s['nominal_hz']:g}"
            rate = "-" if s["rate_hz"] is None else f"{s['rate_hz']:.1f}"
            lines.append(f"{ch:<{w}}  {s['messages']:>9} {rate:>8} {nominal:>8} {s['gaps']:>5}")
    return "\n".join(lines)


def _info_columns(rows: Sequence[Mapping[str, Any]], with_dropped: bool) -> tuple[str, ...]:
    """info's table: the control columns only where an episode recorded the arbiter, `dropped` when shown."""
    control = ("interventions", "human") if any(r["interventions"] is not None for r in rows) else ()
    dropped = ("dropped",) if with_dropped else ()
    return ("episode", "outcome", "label", "duration", "seed", "gaps", *control, *dropped, "task")
