"""Recovery of episodes a crash left unfinished (`robotflow recover`).

A partial file that HDF5 can still read keeps everything flushed before the crash and becomes an episode
marked `aborted`; one that cannot be read is moved to `unrecoverable/` beside it, never deleted; one that
another process holds open (HDF5's file lock: a recording still running, or a killed one's recorder process
not gone yet) is left as it is.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reader import EpisodeError, EpisodeFile


@dataclass
class Recovered:
    source: Path
    path: Path  # the finished episode, or where an unreadable file was moved
    ok: bool
    messages: int = 0
    error: str = ""
    in_use: bool = False  # another process holds the file (a recording still running): left as it is


def recover_partials(directory: str | Path) -> list[Recovered]:
    """Finish every `*.h5.partial` under `directory`; one result per file."""
    import h5py

    out: list[Recovered] = []
    for p in sorted(Path(directory).rglob("*.h5.partial")):
        final = p.with_name(p.name[: -len(".partial")])
        try:
            with h5py.File(p, "r+") as f:
                counts, t_first, t_last = {}, None, None
                chans = f.get("channels")
                if chans is not None:
                    for node in chans:
                        for o in chans[node]:
                            ts = chans[node][o].get("timestamp_ns")
                            seq = chans[node][o].get("seq")
                            n = 0 if ts is None else ts.shape[0]
                            gaps = int(np.sum(np.diff(seq[()]) - 1)) if seq is not None and seq.shape[0] > 1 else 0
                            counts[f"{node}/{o}"] = {"received": n, "gaps": gaps}
                            if n:
                                t_first = ts[0] if t_first is None else min(t_first, ts[0])
                                t_last = ts[-1] if t_last is None else max(t_last, ts[-1])
                f.attrs["outcome"] = "aborted"
                f.attrs["recovered"] = True
                f.attrs["counts_json"] = json.dumps(counts)
                f.attrs["duration_s"] = float((t_last - t_first) / 1e9) if t_first is not None else 0.0
            if final.exists():
                raise OSError(f"{final.name} already exists")
            with EpisodeFile(p) as ep:  # what readers will do with it: a file HDF5 half-wrote can fail here
                for channel in ep.channels():
                    ep.timestamps(channel)
            p.rename(final)
            out.append(Recovered(p, final, True, sum(c["received"] for c in counts.values())))
        except OSError as e:
            if e.errno == errno.EAGAIN or "unable to lock file" in str(e):  # HDF5's lock: a live writer
                out.append(Recovered(p, p, False, error="in use by another process", in_use=True))
                continue
            out.append(_move_aside(p, directory, e))
        except (RuntimeError, KeyError, ValueError, EpisodeError) as e:  # h5py's errors on a damaged file
            out.append(_move_aside(p, directory, e))
    return out


def _move_aside(p: Path, directory: str | Path, e: BaseException) -> Recovered:
    dest = Path(directory) / "unrecoverable"
    dest.mkdir(exist_ok=True)
    shutil.move(str(p), dest / p.name)
    return Recovered(p, dest / p.name, False, error=str(e).splitlines()[0])
