"""Episode edits without deleting: an append-only log (`edits.jsonl`) beside the episode files it edits.

`robotflow episodes drop|undrop|label DIR EPISODE...` appends one JSON line per edited episode:
`{"time": "2026-12-04T18:00:00Z", "op": "drop", "episode": "episode_000003.h5", "label": ""}`. Episode files are
never rewritten or deleted: the log says what to leave out and which label replaces the recorded one, and
`info`, `convert` and `view` read it. Reading the log in order gives each episode's state: a later edit wins,
`undrop` reverses `drop`. A log governs the episode files of its own directory (where the recorder wrote them).

Each edit is one line appended with a single write and fsynced, so a crash leaves whole lines only; the log is
plain text, readable and diffable, and its history is the record of who changed what when (time is UTC).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .format import LABELS, episode_name

EDITS_FILE = "edits.jsonl"
OPS = ("drop", "undrop", "label")


class EditError(Exception):
    """An edit that cannot be made, or a log that cannot be read; one line saying what to fix."""


@dataclass(frozen=True)
class Edit:
    """One line of the log."""

    time: str  # UTC, ISO 8601
    op: str  # one of OPS
    episode: str  # the episode's file name in the log's directory
    label: str = ""  # with op `label`: one of format.LABELS


@dataclass
class EpisodeEdits:
    """The effective state of a directory's episodes after its log: which are dropped, which labels were edited."""

    directory: Path
    dropped: set[str] = field(default_factory=set)  # file names
    labels: dict[str, str] = field(default_factory=dict)  # file name -> edited label

    def is_dropped(self, name: str) -> bool:
        return name in self.dropped

    def label(self, name: str, recorded: str) -> str:
        """The episode's effective label: the last edited one, else `recorded` (the file's `label` attr)."""
        return self.labels.get(name, recorded)

    def left_out(self, name: str) -> str | None:
        """Why the log leaves episode `name` out of a dataset (dropped, or labelled discarded); None: it does not."""
        if name in self.dropped:
            return "dropped"
        if self.labels.get(name) == "discarded":
            return "labelled discarded"
        return None

    def apply(self, edit: Edit) -> None:
        if edit.op == "drop":
            self.dropped.add(edit.episode)
        elif edit.op == "undrop":
            self.dropped.discard(edit.episode)
        else:
            self.labels[edit.episode] = edit.label


def log_path(directory: str | Path) -> Path:
    return Path(directory) / EDITS_FILE


def load_edits(directory: str | Path) -> EpisodeEdits:
    """The state after `directory`'s log (no log: nothing edited). Raises EditError for a line that is not an edit."""
    edits = EpisodeEdits(Path(directory))
    path = log_path(directory)
    if not path.is_file():
        return edits
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            edits.apply(_parse(line, path, n))
    return edits


def _parse(line: str, path: Path, n: int) -> Edit:
    try:
        doc = json.loads(line)
        edit = Edit(str(doc["time"]), str(doc["op"]), str(doc["episode"]), str(doc.get("label", "")))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise EditError(f"{path} line {n} is not an edit ({type(e).__name__}): fix or remove that line") from None
    if edit.op not in OPS or (edit.op == "label" and edit.label not in LABELS):
        raise EditError(f"{path} line {n}: unknown edit {edit.op!r} {edit.label!r}: fix or remove that line")
    return edit


def episode_files(directory: str | Path) -> list[str]:
    """Names of the finished episode files directly in `directory`, sorted."""
    return sorted(p.name for p in Path(directory).glob("*.h5") if p.is_file())


def resolve_episode(directory: str | Path, episode: str, names: Sequence[str]) -> str:
    """The file name of EPISODE (an episode number, or a file name with or without `.h5`) among `names`."""
    name = episode_name(int(episode)) if episode.isdigit() else episode
    if not name.endswith(".h5"):
        name += ".h5"
    if name not in names:
        listed = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        raise EditError(f"{directory} has no episode {episode!r} (give a number or a file name: {listed})")
    return name


def edit_episodes(directory: str | Path, op: str, episodes: Sequence[str], label: str = "") -> list[Edit]:
    """Append one `op` edit per episode to `directory`'s log; the edits appended.

    Every argument is checked before anything is written: an unknown directory, episode or label raises EditError
    and leaves the log as it was. Episode files are never touched.
    """
    directory = Path(directory)
    if op not in OPS:
        raise EditError(f"unknown edit {op!r} (one of {', '.join(OPS)})")
    if op == "label" and label not in LABELS:
        raise EditError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if not directory.is_dir():
        raise EditError(f"{directory}: no such directory (give the directory the episode files are in)")
    names = episode_files(directory)
    if not names:
        raise EditError(f"{directory} holds no episode files (*.h5): give the directory the recorder wrote them to")
    if not episodes:
        raise EditError("give at least one EPISODE (a number or a file name)")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    edits = [Edit(stamp, op, resolve_episode(directory, e, names), label if op == "label" else "") for e in episodes]
    load_edits(directory)  # a damaged log is reported before a line is added to it
    for edit in edits:
        _append(log_path(directory), edit)
    return edits


def _append(path: Path, edit: Edit) -> None:
    """One whole line per write, on disk before returning: a crash can lose the edit, never half of it."""
    created = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(edit)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if created:  # the new file's directory entry must be durable too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
