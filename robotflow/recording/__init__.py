"""Recording: the episode file format, its writer (the `record.hdf5` node), reader, replay, recovery, summaries,
the graph edits that add a recorder (graph_transform) and a recording session (`robotflow record`: session).

Everything that knows the layout of an episode file lives in this package; codecs and the CLI read episodes
through `EpisodeFile`.
"""

from .format import EPISODE_FORMAT, OUTCOMES, episode_name
from .reader import EpisodeError, EpisodeFile, EpisodeInfo, find_episode_files

__all__ = [
    "EPISODE_FORMAT",
    "OUTCOMES",
    "EpisodeError",
    "EpisodeFile",
    "EpisodeInfo",
    "episode_name",
    "find_episode_files",
]
