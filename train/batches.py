"""The batches of a run's steps, in step order, optionally cut ahead of the model in
worker processes.

Each batch is a function of the sampler's seed and its step (:meth:`train.data.PatchSampler.batch`),
so a run gets the same batches with or without workers, and a resumed run gets the batches
the uninterrupted run would have had.
"""

from __future__ import annotations

import signal
from collections.abc import Generator

import torch

from train.data import PatchSampler


class _StepBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is the batch of step ``steps[i]``, so worker processes can cut it."""

    def __init__(self, sampler: PatchSampler, steps: range, batch_size: int) -> None:
        self.sampler = sampler
        self.steps = steps
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.sampler.batch(self.steps[index], self.batch_size)
        return torch.from_numpy(inputs), torch.from_numpy(targets)


def batch_stream(
    sampler: PatchSampler,
    steps: range,
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """The batches of ``steps`` in order, as float32 CPU tensors ``(batch, 1, P, P)``.

    With ``workers`` > 0 they are cut ahead of time in worker processes; the result is the
    same batches in the same order as with ``workers == 0``.
    """
    dataset = _StepBatches(sampler, steps, batch_size)
    if workers == 0:
        for index in range(len(dataset)):
            yield dataset[index]
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        worker_init_fn=_ignore_stop_signals,
    )
    yield from loader


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the training process, which stops cleanly and then
    shuts them down (a worker killed first would abort the run with DataLoader's error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
