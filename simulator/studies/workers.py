"""Worker processes for parallel simulations (sweeps, MoE-GPS) that do not fight over cores.

Each simulation is single-threaded Python plus small numpy kernels; BLAS thread pools in every
worker oversubscribe the cores and make runs several times slower. Workers are therefore fresh
(spawned) interpreters started with single-threaded BLAS/OpenMP.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Iterator

SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for child processes started inside the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool of spawned, single-threaded-BLAS workers."""
    with environment(SINGLE_THREADED), ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield pool
