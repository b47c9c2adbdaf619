"""Block averaging of a correlated time series (Flyvbjerg and Petersen, J. Chem. Phys. 91, 461 (1989)).

The series is repeatedly halved by averaging neighbouring pairs; the naive standard error of
the mean grows with the block length until the blocks are longer than the correlation time,
then levels off. :func:`block_average` reports the first level where it has stopped growing
(the next level's estimate lies within this level's statistical uncertainty), or the largest
estimate when no plateau shows within the levels that keep at least ``min_blocks`` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockAverage:
    """Mean, its standard error, and the block length / count the error was taken at."""

    mean: float
    sem: float
    block_size: int
    n_blocks: int
    plateau: bool


def _levels(x: np.ndarray, min_blocks: int):
    """(block size, number of blocks, sem, uncertainty of sem) for each halving level."""
    out, size = [], 1
    while len(x) >= min_blocks:
        n = len(x)
        sem = float(np.std(x, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        out.append((size, n, sem, sem / np.sqrt(2.0 * (n - 1)) if n > 1 else np.inf))
        if n % 2:
            x = x[:-1]
        x = 0.5 * (x[0::2] + x[1::2])
        size *= 2
    return out


def block_average(series, min_blocks: int = 4, n_blocks: int | None = None) -> BlockAverage:
    """Mean and standard error of ``series`` (1-D, equally spaced samples).

    With ``n_blocks`` the series is cut into that many equal blocks (the tail that does not
    fill a block is dropped) and the error is that of the block means; otherwise the
    Flyvbjerg-Petersen halving picks the block length (see the module docstring).
    """
    x = np.asarray(series, dtype=float).ravel()
    if len(x) == 0:
        raise ValueError("empty series")
    mean = float(x.mean())
    if len(x) == 1:
        return BlockAverage(mean, float("nan"), 1, 1, False)
    if n_blocks is not None:
        if not 2 <= n_blocks <= len(x):
            raise ValueError(f"n_blocks must be between 2 and {len(x)}")
        size = len(x) // n_blocks
        blocks = x[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
        return BlockAverage(mean, float(blocks.std(ddof=1) / np.sqrt(n_blocks)), size, n_blocks, False)
    levels = _levels(x, max(2, min_blocks))
    if not levels:
        levels = _levels(x, 2)
    for k in range(len(levels) - 1):
        size, n, sem, err = levels[k]
        if levels[k + 1][2] - sem <= err:
            return BlockAverage(mean, sem, size, n, True)
    size, n, sem, _ = max(levels, key=lambda level: level[2])
    return BlockAverage(mean, sem, size, n, False)
