"""One small helper every layer may use: running a block of tiny-tensor work on one torch thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block, then as before. For loops over tiny tensors (the
    exact tabular bed, small MLPs), where extra threads only add overhead (tens of times slower on a
    busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
