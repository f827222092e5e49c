"""Training batches drawn in worker processes, so that a fast device never waits for the CPU.

A pre-training sampler synthesizes a fresh noisy volume every few steps (a randomized brain,
its contrast, bias and noise: about 1.5 s for a 96^3 cube on one CPU core). On one CPU thread
that is a small share of a training step; a GPU step takes tens of milliseconds, and the
sampler would starve it. :class:`WorkerSampler` runs independent copies of a sampler in
``workers`` processes, each with its own random stream and its own pool of volumes, and hands
the training loop whichever batch is ready next.

The batches' order then depends on the processes' timing, so a run with workers is not
bit-reproducible; each worker's random stream is fixed by the seed, the worker's index and the
step the run starts from (a resumed run draws new data rather than replaying the old).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

Batch = tuple[np.ndarray, ...]


class _Stream(IterableDataset):
    """An endless stream of a sampler's batches; in a worker, seeded by that worker's index."""

    def __init__(self, sampler: Callable[[np.random.Generator], Batch], seed: int,
                 start: int) -> None:
        self.sampler, self.seed, self.start = sampler, seed, start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.seed, worker, self.start])
        while True:
            # tensors travel between processes through shared memory; arrays would be pickled
            yield tuple(torch.from_numpy(a) for a in self.sampler(rng))


class WorkerSampler:
    """``sampler(rng)`` batches produced by ``workers`` processes (module docstring).

    Parameters
    ----------
    sampler
        Called as ``sampler(rng)`` for each batch; each process gets its own copy.
    workers
        Processes (at least 1).
    seed, start
        Seed of the run and the step it starts from: together with a worker's index they
        seed that worker's random stream.
    pin_memory
        Page-locked batches, for an asynchronous copy to a GPU.

    Calling the object returns the next ready batch and ignores the ``rng`` it is given
    (the training loop's own stream then only draws nothing).
    """

    def __init__(self, sampler: Callable[[np.random.Generator], Batch], workers: int,
                 seed: int = 0, start: int = 0, pin_memory: bool = False) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.loader = DataLoader(_Stream(sampler, seed, start), batch_size=None,
                                 num_workers=workers, pin_memory=pin_memory,
                                 prefetch_factor=4, persistent_workers=True)
        self._batches: Iterator | None = None

    def __call__(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        if self._batches is None:  # the processes start at the first batch asked for
            self._batches = iter(self.loader)
        return next(self._batches)

    def close(self) -> None:
        """Stop the worker processes."""
        self._batches = None
