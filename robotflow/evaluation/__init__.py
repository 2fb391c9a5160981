"""Policy evaluation in simulation: seeded episodes in parallel workers (episodes), Wilson intervals and the
per-seed table (scoring), failure videos (videos), and rollouts of a checkpoint or a served policy (rollout)."""

from .episodes import EpisodeJob, EpisodeOutcome, EvalError, EvalPlan, run_episode, run_episodes
from .rollout import RolloutOptions, RolloutUsageError, list_run_checkpoints, rollout, with_realtime
from .scoring import Z_95, format_table, summary_line, wilson_interval
from .videos import write_failure_videos

__all__ = [
    "Z_95",
    "EpisodeJob",
    "EpisodeOutcome",
    "EvalError",
    "EvalPlan",
    "RolloutOptions",
    "RolloutUsageError",
    "format_table",
    "list_run_checkpoints",
    "rollout",
    "run_episode",
    "run_episodes",
    "summary_line",
    "wilson_interval",
    "with_realtime",
    "write_failure_videos",
]
