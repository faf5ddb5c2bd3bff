"""One torch thread per process on CPU, unless OMP_NUM_THREADS says otherwise.

The CPU work here is the tiny model of the demo and the tests: matrices so small that a second thread
mostly spins. On a machine shared with other processes the spinning threads compete for the cores:
training steps were 50x slower with torch's default threads, answer generation 2.4x slower next to two
busy processes. Where the work is already parallel (torchrun processes, DataLoader workers, other jobs
on the machine), one thread per process is the parallelism there is. torchrun sets the same default.
"""

from __future__ import annotations

import contextlib
import os


def wants_one_thread(device_type: str) -> bool:
    return device_type == "cpu" and "OMP_NUM_THREADS" not in os.environ


@contextlib.contextmanager
def one_cpu_thread(device: str | None = None):
    """One torch thread inside the block when the work runs on the CPU; the previous count after it.

    ``device`` as torch names it; None: the CPU unless CUDA is available (where the model would go)."""
    import torch

    device_type = (device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]
    if not wants_one_thread(device_type):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
