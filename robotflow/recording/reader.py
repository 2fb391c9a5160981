"""Read recorded episode files (``episode_NNNNNN.h5``, format ``robotflow.episode/1``).

The recorder writes one HDF5 file per episode (see docs/contracts.md, "Episode files"). This module is
the read side used by the converter and by tests: it never loads a whole file, only the channels and
rows a codec asks for, so a converter touching two cameras of a ten-camera recording decodes two
cameras, and only at the resampled frames.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .edits import EpisodeEdits, load_edits
from .format import EPISODE_FORMAT, decode_jpeg

__all__ = [
    "EPISODE_FORMAT",
    "EpisodeError",
    "EpisodeInfo",
    "EpisodeFile",
    "find_episode_files",
    "episodes_left_out",
    "decode_jpeg",
]


class EpisodeError(Exception):
    """A problem with one episode file; the message is one line and names the file."""


@dataclass(frozen=True)
class EpisodeInfo:
    """Root attributes of an episode file."""

    path: Path
    format: str
    task: str
    episode_index: int
    seed: int
    outcome: str
    duration_s: float
    start_time_unix_ns: int
    robotflow_version: str = ""
    lerobot_version: str = ""
    graph_yaml: str = ""
    params_json: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    label: str = ""  # the operator's label at recording time (format.LABELS); '' when none or an older file


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value.item())
    return "" if value is None else str(value)


def _attr_json(value: Any, default: Any) -> Any:
    text = _attr_str(value)
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


class EpisodeFile:
    """An open episode file. Use as a context manager; reads are lazy.

    Channel names are ``node/output`` exactly as on the runtime bus (``arm/state``,
    ``wrist_camera/frame``); fields are the message field names (``ee_pose``, ``image``).
    """

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise EpisodeError(f"{self.name}: no such episode file ({self.path})")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise EpisodeError(f"{self.name}: not an HDF5 episode file ({exc.__class__.__name__})") from None
        try:
            fmt = _attr_str(self._h5.attrs.get("format"))
        except (OSError, RuntimeError) as exc:  # HDF5 metadata a failed write left half-updated
            self._h5.close()
            raise EpisodeError(f"{self.name}: damaged HDF5 file ({str(exc).splitlines()[0][:120]})") from None
        if fmt != EPISODE_FORMAT:
            self._h5.close()
            raise EpisodeError(
                f"{self.name}: not a robotflow episode file (format attr {fmt!r}, expected {EPISODE_FORMAT!r})"
            )
        if "channels" not in self._h5:
            self._h5.close()
            raise EpisodeError(f"{self.name}: episode file has no /channels group")
        self.info = self._read_info()

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> EpisodeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata --------------------------------------------------------------------------------
    def _read_info(self) -> EpisodeInfo:
        a = self._h5.attrs

        def num(key: str, cast: type, default: Any) -> Any:
            try:
                return cast(a[key]) if key in a else default
            except (TypeError, ValueError):
                return default

        return EpisodeInfo(
            path=self.path,
            format=_attr_str(a.get("format")),
            task=_attr_str(a.get("task")),
            episode_index=num("episode_index", int, -1),
            seed=num("seed", int, -1),
            outcome=_attr_str(a.get("outcome")) or "unknown",
            label=_attr_str(a.get("label")),
            duration_s=num("duration_s", float, float("nan")),
            start_time_unix_ns=num("start_time_unix_ns", int, 0),
            robotflow_version=_attr_str(a.get("robotflow_version")),
            lerobot_version=_attr_str(a.get("lerobot_version")),
            graph_yaml=_attr_str(a.get("graph_yaml")),
            params_json=_attr_str(a.get("params_json")),
            rates=_attr_json(a.get("rates_json"), {}),
            counts=_attr_json(a.get("counts_json"), {}),
        )

    def attr(self, name: str) -> str:
        """A root attribute as text ('' when absent), e.g. a custom task field written by a recorder."""
        return _attr_str(self._h5.attrs.get(name))

    def channels(self) -> list[str]:
        """All recorded channels as ``node/output``."""
        out: list[str] = []
        root = self._h5["channels"]
        for node in root:
            for output in root[node]:
                out.append(f"{node}/{output}")
        return sorted(out)

    def has_channel(self, channel: str) -> bool:
        return f"channels/{channel}/timestamp_ns" in self._h5

    def has_field(self, channel: str, name: str) -> bool:
        return self.has_channel(channel) and name in self._h5[f"channels/{channel}"]

    def fields(self, channel: str) -> list[str]:
        """Field names of a channel (without ``timestamp_ns`` and ``seq``)."""
        self._require(channel)
        return sorted(k for k in self._h5[f"channels/{channel}"] if k not in ("timestamp_ns", "seq"))

    def _require(self, channel: str, name: str | None = None) -> None:
        if not self.has_channel(channel):
            raise EpisodeError(f"{self.name}: missing channel '{channel}'")
        if name is not None and name not in self._h5[f"channels/{channel}"]:
            raise EpisodeError(f"{self.name}: channel '{channel}' has no field '{name}'")

    # -- data ------------------------------------------------------------------------------------
    def timestamps(self, channel: str) -> np.ndarray:
        """Runtime-clock timestamps (int64 ns) of every message on ``channel``."""
        self._require(channel)
        return np.asarray(self._h5[f"channels/{channel}/timestamp_ns"][()], dtype=np.int64)

    def seq(self, channel: str) -> np.ndarray:
        self._require(channel)
        return np.asarray(self._h5[f"channels/{channel}/seq"][()], dtype=np.int64)

    def field(self, channel: str, name: str) -> np.ndarray:
        """Every value of a numeric or string field, ``(N, *shape)``; strings come back as ``str``."""
        self._require(channel, name)
        ds = self._h5[f"channels/{channel}/{name}"]
        if ds.attrs.get("encoding") is not None:
            # Image datasets are decoded per row; loading all of them would defeat the lazy design.
            return self.images(channel, np.arange(ds.shape[0]), name=name)
        if ds.dtype.kind in ("O", "S", "U"):
            return np.asarray([_attr_str(v) for v in ds.asstr()[()]] if ds.dtype.kind == "O" else ds[()].astype(str))
        return np.asarray(ds[()])

    def image_shape(self, channel: str, name: str = "image") -> tuple[int, int, int]:
        """``(H, W, 3)`` of an image field, from its attrs (JPEG) or its dataset shape (raw)."""
        self._require(channel, name)
        ds = self._h5[f"channels/{channel}/{name}"]
        shape = ds.attrs.get("shape")
        if shape is not None:
            return tuple(int(s) for s in shape)  # type: ignore[return-value]
        return tuple(int(s) for s in ds.shape[1:])  # type: ignore[return-value]

    def images(self, channel: str, indices: Sequence[int] | np.ndarray, name: str = "image") -> np.ndarray:
        """Decode the images at ``indices`` (repeats allowed) to ``(len(indices), H, W, 3)`` uint8.

        A repeated index (zero-order hold of a slower camera) is decoded once.
        """
        self._require(channel, name)
        ds = self._h5[f"channels/{channel}/{name}"]
        encoding = _attr_str(ds.attrs.get("encoding")) or ("raw" if ds.ndim == 4 else "jpeg")
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.zeros((0, *self.image_shape(channel, name)), dtype=np.uint8)
        unique, inverse = np.unique(idx, return_inverse=True)
        if encoding == "raw":
            # h5py fancy indexing needs increasing indices, which np.unique guarantees.
            decoded = np.asarray(ds[unique], dtype=np.uint8)
        elif encoding == "jpeg":
            frames = []
            for i in unique:
                try:
                    frames.append(decode_jpeg(ds[int(i)]))
                except ValueError as exc:
                    raise EpisodeError(f"{self.name}: {channel} image {int(i)} is not a valid JPEG ({exc})") from None
            decoded = np.stack(frames)
        else:
            raise EpisodeError(f"{self.name}: {channel}/{name} has unknown image encoding '{encoding}'")
        return decoded[inverse]

    def iter_channel(self, channel: str) -> Iterator[dict[str, Any]]:
        """Messages of a small channel as dicts (for ``task/episode``-like event channels)."""
        names = self.fields(channel)
        ts = self.timestamps(channel)
        columns = {n: self.field(channel, n) for n in names}
        for i in range(ts.shape[0]):
            row: dict[str, Any] = {"timestamp_ns": int(ts[i])}
            for n in names:
                v = columns[n][i]
                row[n] = v.item() if isinstance(v, np.generic) else v
            yield row


def find_episode_files(path: str | Path, *, left_out: bool = False) -> list[Path]:
    """Episode files under ``path`` (a directory, searched recursively, or a single file), sorted.

    ``*.h5.partial`` files (an episode still being written, or a recorder that crashed) are not
    returned: they are incomplete by definition. Nor, unless ``left_out``, are the episodes their directory's
    edit log leaves out (episodes_left_out). Raises EditError for a damaged log.
    """
    p = Path(path)
    if p.is_file():
        found = [p]
    elif p.is_dir():
        found = sorted(x for x in p.rglob("*.h5") if x.is_file())
    else:
        raise EpisodeError(f"{p}: input directory does not exist")
    if left_out:
        return found
    out = _left_out(found)
    return [f for f in found if f not in out]


def episodes_left_out(path: str | Path) -> dict[Path, str]:
    """The episode files under ``path`` their directory's edit log (``robotflow episodes``, edits.py) leaves out of
    datasets, with why: dropped, or labelled discarded. Raises EpisodeError, EditError."""
    return _left_out(find_episode_files(path, left_out=True))


def _left_out(files: list[Path]) -> dict[Path, str]:
    logs: dict[Path, EpisodeEdits] = {}
    out = {}
    for f in files:
        if f.parent not in logs:
            logs[f.parent] = load_edits(f.parent)
        reason = logs[f.parent].left_out(f.name)
        if reason is not None:
            out[f] = reason
    return out
