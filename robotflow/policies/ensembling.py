"""ACT's temporal ensembling (Algorithm 2 of the ACT paper), the one ensembler of every chunk executor."""

from __future__ import annotations

import torch


class TemporalEnsembler:
    """ACT's temporal ensembling (Algorithm 2 of the ACT paper), for chunks that may arrive late.

    Same online weighted average and the same tensor operations as LeRobot's `ACTTemporalEnsembler`,
    so with one chunk per tick and no delay it gives identical results; `update(chunk, skip)` also
    accepts a chunk predicted `skip` ticks ago (async inference), whose first `skip` actions are for
    ticks already executed and are dropped. Between updates, `pop()` keeps consuming the ensemble.

    The synchronous local executor ensembles normalized chunks, as LeRobot does (bit-equal results); the
    asynchronous one and remote sources ensemble unnormalized float64 chunks, so a control tick never runs
    the postprocessor pipeline. Unnormalizing is affine and the weights sum to one, so both orders agree up
    to float rounding.
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.chunk_size = chunk_size
        self.weights = torch.exp(-coeff * torch.arange(chunk_size))
        self.weights_cumsum = torch.cumsum(self.weights, dim=0)
        self.reset()

    def reset(self) -> None:
        self.actions: torch.Tensor | None = None  # (batch, n, action_dim); index 0 is the current tick
        self.count: torch.Tensor | None = None  # (n, 1) predictions averaged into each entry

    def __len__(self) -> int:
        return 0 if self.actions is None else int(self.actions.shape[1])

    def update(self, chunk: torch.Tensor, skip: int = 0) -> None:
        """Average a (batch, chunk_size, action_dim) chunk, predicted `skip` ticks ago, into the ensemble."""
        self.weights = self.weights.to(device=chunk.device)
        self.weights_cumsum = self.weights_cumsum.to(device=chunk.device)
        new = chunk[:, skip:] if skip else chunk
        n_new = int(new.shape[1])
        if len(self) == 0:
            self.actions = new.clone()
            self.count = torch.ones((n_new, 1), dtype=torch.long, device=new.device)
            return
        k = min(len(self), n_new)
        head, cnt = self.actions[:, :k], self.count[:k]
        # In-place on views, in LeRobot's order of operations (bitwise-equal results).
        head *= self.weights_cumsum[cnt - 1]
        head += new[:, :k] * self.weights[cnt]
        head /= self.weights_cumsum[cnt]
        self.count[:k] = torch.clamp(cnt + 1, max=self.chunk_size)
        if n_new > k:
            self.actions = torch.cat([self.actions, new[:, k:]], dim=1)
            self.count = torch.cat([self.count, torch.ones((n_new - k, 1), dtype=torch.long, device=new.device)])

    def peek(self) -> torch.Tensor:
        """The (batch, action_dim) action of the current slot."""
        return self.actions[:, 0]

    def drop(self, n: int = 1) -> None:
        """Move on by n slots (their actions were executed or their time has passed)."""
        if self.actions is not None:
            self.actions, self.count = self.actions[:, n:], self.count[n:]

    def pop(self) -> torch.Tensor:
        """The (batch, action_dim) action of the current tick, then move on one slot."""
        action = self.peek()
        self.drop(1)
        return action
