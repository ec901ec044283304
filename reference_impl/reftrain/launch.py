"""How every reftrain process ends: `python -m reftrain.train`, `python -m reftrain.bench`, and the ranks
that `reftrain.testing.run_distributed` starts.

Why not a plain return: with gloo (seen with ep > 1) the interpreter's teardown after a finished run
sometimes aborts ("terminate called without an active exception") while the process group's threads are
torn down, so a rank that did all its work would exit non-zero and read as a failed run or a dead rank.
Once the work is done and the process group destroyed, nothing is left for that teardown to do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import torch.distributed as dist


def run_then_exit(main: Callable[..., object], *args) -> NoReturn:
    """Runs `main(*args)`, destroys the process group whatever happens, and after success ends the process
    with exit status 0, skipping the interpreter's teardown (output flushed first). An exception or
    `SystemExit` from `main` propagates as usual, so failures keep their message and exit status."""
    try:
        main(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
